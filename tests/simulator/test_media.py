"""Test media: both renditions exist and the HTTP server honours ranges as receivers use them."""

import hashlib
import urllib.error
import urllib.request

import pytest

from protocol.media import ADPCM_BLOCK_BYTES
from simulator.media import MediaServer, make_test_item


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
    assert 900 <= adpcm.dur_ms <= 1100 and mp3.dur_ms == 1000


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
