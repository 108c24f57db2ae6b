"""Test media: both renditions exist and the HTTP server honours ranges as receivers use them."""

import hashlib
import struct
import urllib.error
import urllib.request

import pytest

from protocol.media import ADPCM_BLOCK_BYTES
from simulator.media import MediaServer, adpcm_blocks_from_wav, make_test_item


@pytest.fixture(scope="module")
def item(tmp_path_factory):
    return make_test_item(str(tmp_path_factory.mktemp("media")), "tone", seconds=1.0)


def get(url, range_header=None):
    headers = {"Range": range_header} if range_header else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return r.status, r.headers, r.read()


def test_renditions_describe_themselves(item):
    mp3, adpcm = item.renditions["mp3"], item.renditions["adpcm"]
    assert mp3.data()[:2] == b"\xff\xf3" or mp3.data()[:2] == b"\xff\xfb"  # an MPEG frame first
    assert adpcm.size % ADPCM_BLOCK_BYTES == 0
    assert adpcm.sha == hashlib.sha256(adpcm.data()).hexdigest()
    assert 900 <= adpcm.dur_ms <= 1100 and 900 <= mp3.dur_ms <= 1200
    assert mp3.sha != adpcm.sha


def test_server_serves_whole_files_and_ranges(item):
    with MediaServer() as server:
        server.add(item)
        args = item.args_for("adpcm")
        data = item.renditions["adpcm"].data()
        assert get(args["url"])[2] == data
        status, headers, body = get(args["url"], "bytes=100-")
        assert status == 206 and body == data[100:]
        assert headers["Content-Range"] == "bytes 100-%d/%d" % (len(data) - 1, len(data))
        assert get(args["url"], "bytes=0-9")[2] == data[:10]
        with pytest.raises(urllib.error.HTTPError) as err:
            get(args["url"], "bytes=%d-" % len(data))
        assert err.value.code == 416
        assert len(server.requests_for(item)) == 4


def test_items_with_different_ids_never_share_content(tmp_path):
    one = make_test_item(str(tmp_path), "mot", seconds=0.5)
    two = make_test_item(str(tmp_path), "hai", seconds=0.5)
    assert one.renditions["adpcm"].sha != two.renditions["adpcm"].sha


def test_adpcm_blocks_come_out_of_an_ima_wav_file():
    fmt = struct.pack("<HHIIHH", 0x11, 1, 16000, 8110, 256, 4) + b"\x02\x00\xf9\x01"
    blocks = bytes(range(256)) * 2
    wav = (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(blocks)) + b"WAVE"
           + b"fmt " + struct.pack("<I", len(fmt)) + fmt
           + b"data" + struct.pack("<I", len(blocks)) + blocks)
    assert adpcm_blocks_from_wav(wav) == blocks
