"""Test media: both renditions exist and the head-end's media route, as the simulator serves
it, honours ranges as receivers use them."""

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
    assert adpcm.sha256 == hashlib.sha256(adpcm.data()).hexdigest()
    assert adpcm.size == len(adpcm.data())
    assert 900 <= adpcm.duration_ms <= 1100 and 900 <= mp3.duration_ms <= 1200
    assert mp3.sha256 != adpcm.sha256


def test_server_serves_whole_files_and_ranges(item):
    with MediaServer() as server:
        server.add(item)
        url = server.url_of(item.renditions["adpcm"])
        data = item.renditions["adpcm"].data()
        assert get(url)[2] == data
        status, headers, body = get(url, "bytes=100-")
        assert status == 206 and body == data[100:]
        assert headers["Content-Range"] == "bytes 100-%d/%d" % (len(data) - 1, len(data))
        assert get(url, "bytes=0-9")[2] == data[:10]
        with pytest.raises(urllib.error.HTTPError) as err:
            get(url, "bytes=%d-" % len(data))
        assert err.value.code == 416
        assert server.requests_for(item) == [
            (url[len(server.base_url):], r) for r in (None, "bytes=100-", "bytes=0-9",
                                                      "bytes=%d-" % len(data))]


def test_server_knows_only_the_items_it_was_given(item, tmp_path):
    other = make_test_item(str(tmp_path), "khac", seconds=0.5)
    with MediaServer() as server:
        server.add(item)
        with pytest.raises(urllib.error.HTTPError) as err:
            get(server.url_of(other.renditions["mp3"]))
        assert err.value.code == 404
        assert server.requests_for(item) == []


def test_items_with_different_ids_never_share_content(tmp_path):
    one = make_test_item(str(tmp_path), "mot", seconds=0.5)
    two = make_test_item(str(tmp_path), "hai", seconds=0.5)
    assert one.renditions["adpcm"].sha256 != two.renditions["adpcm"].sha256
