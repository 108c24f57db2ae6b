"""The firmware's HTTP media download and its flash cache, against a real HTTP server on 127.0.0.1.

The server is a few lines of asyncio that speak enough HTTP/1.1 to exercise what receivers meet
in the field: Range requests (206), servers that ignore Range (200), chunked bodies, a server
whose file changed (416), connections that die mid-body.
"""

import asyncio
import hashlib
import os

import pytest
from local_server import LocalServer

from firmware.cache import MediaCache
from firmware.http import HttpError, download, parse_url, sha256_hex

BODY = bytes(range(256)) * 40  # 10,240 bytes


class MediaServer(LocalServer):
    """Serves ``BODY`` at any path. ``mode``: "range" | "no-range" | "chunked" | "cut" | "416"."""

    def __init__(self, mode="range"):
        self.mode = mode
        self.requests = []

    def url(self, path="/media/a.adpcm"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    async def _handle(self, reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.requests.append(head)
        start = 0
        for line in head.split("\r\n"):
            if line.lower().startswith("range: bytes="):
                start = int(line.split("=")[1].split("-")[0])
        if self.mode == "416" and start:
            writer.write(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n")
        elif self.mode == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(BODY), 3000):
                part = BODY[i:i + 3000]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            writer.write(b"0\r\n\r\n")
        elif start and self.mode == "range":
            rest = BODY[start:]
            writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n"
                         b"Content-Range: bytes %d-%d/%d\r\n\r\n%s"
                         % (len(rest), start, len(BODY) - 1, len(BODY), rest))
        else:
            body = BODY[:4000] if self.mode == "cut" else BODY
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), body))
        await writer.drain()
        writer.close()


async def open_connection(host, port, ssl=None):
    return await asyncio.open_connection(host, port)


def test_parse_url():
    assert parse_url("http://10.0.0.1:8080/media/x.mp3") == (False, "10.0.0.1", 8080, "/media/x.mp3")
    assert parse_url("https://h.example/a?b=1") == (True, "h.example", 443, "/a?b=1")
    assert parse_url("http://[::1]:81/") == (False, "::1", 81, "/")
    with pytest.raises(HttpError):
        parse_url("ftp://x/y")


@pytest.mark.parametrize("mode", ["range", "no-range", "chunked"])
async def test_download_resumes_a_partial_file(tmp_path, mode):
    part = str(tmp_path / "x.part")
    with open(part, "wb") as f:
        f.write(BODY[:3000])  # what an earlier, cut download left
    async with MediaServer(mode) as server:
        assert await download(open_connection, server.url(), part, len(BODY), 1000) == len(BODY)
    assert open(part, "rb").read() == BODY
    assert "Range: bytes=3000-" in server.requests[0]
    assert await sha256_hex(part, bytearray(512)) == hashlib.sha256(BODY).hexdigest()


async def test_cut_connection_leaves_a_resumable_part(tmp_path):
    part = str(tmp_path / "x.part")
    async with MediaServer("cut") as server:
        with pytest.raises(HttpError):
            await download(open_connection, server.url(), part, len(BODY))
        assert os.path.getsize(part) == 4000
        server.mode = "range"
        await download(open_connection, server.url(), part, len(BODY))
    assert open(part, "rb").read() == BODY


async def test_changed_file_on_the_server_restarts_from_zero(tmp_path):
    part = str(tmp_path / "x.part")
    with open(part, "wb") as f:
        f.write(b"stale")
    async with MediaServer("416") as server:
        with pytest.raises(HttpError, match="range"):
            await download(open_connection, server.url(), part, len(BODY))
        assert not os.path.exists(part)
        await download(open_connection, server.url(), part, len(BODY))
    assert open(part, "rb").read() == BODY


async def test_http_errors_are_short_and_name_no_url(tmp_path):
    async def refuse(host, port, ssl=None):
        raise OSError("connection refused")

    part = str(tmp_path / "x.part")
    async with MediaServer() as server:
        with pytest.raises(OSError):
            await download(refuse, server.url(), part, len(BODY))
        with pytest.raises(HttpError, match="size 10240, expected 99"):
            await download(open_connection, server.url(), part, 99)


def _cached(cache, sha, size):
    with open(cache.part_path(sha), "wb") as f:
        f.write(b"\0" * size)
    cache.add(sha, size, "mp3")


def test_cache_evicts_oldest_unneeded_first_and_survives_restart(tmp_path):
    cache = MediaCache(str(tmp_path / "cache"), 1000)
    for sha in ("a" * 64, "b" * 64, "c" * 64):
        _cached(cache, sha, 300)
    assert cache.used() == 900 and cache.free() == 100
    # "a" is still scheduled: "b" goes first, even though "a" is older.
    assert cache.make_room(300, keep={"a" * 64}) == ["b" * 64]
    assert cache.make_room(2000, keep=set()) is None  # can never fit: nothing evicted
    assert cache.make_room(1000, keep={"a" * 64}) is None
    assert sorted(cache.shas()) == ["a" * 64, "c" * 64]
    again = MediaCache(str(tmp_path / "cache"), 1000)
    assert again.shas() == ["a" * 64, "c" * 64] and again.path("a" * 64).endswith(".mp3")
    os.remove(again.path("c" * 64))  # flash lost a file: it is not in the index any more
    assert MediaCache(str(tmp_path / "cache"), 1000).shas() == ["a" * 64]
