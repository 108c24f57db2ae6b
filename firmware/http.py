"""A small HTTP/1.1 client for media downloads: GET with Range resume into a file, then sha256.

Written for MicroPython's asyncio streams and run unchanged on CPython: the stream pair comes
from ``open_connection(host, port, ssl)`` (the board's Platform). The body is streamed to the
file in chunks, never held in memory; content-length and chunked bodies are both understood.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

import hashlib

from firmware.store import file_size, remove

READ_TIMEOUT_S = 15
_HEADER_LIMIT = 8192


class HttpError(Exception):
    """A download that did not work; ``str(e)`` is a short detail for the fetch_failed event."""


def parse_url(url):
    """``(tls, host, port, path)`` of an http:// or https:// URL."""
    if url.startswith("http://"):
        tls, rest, port = False, url[7:], 80
    elif url.startswith("https://"):
        tls, rest, port = True, url[8:], 443
    else:
        raise HttpError("unsupported url")
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if hostport.startswith("["):  # [v6]:port
        end = hostport.find("]")
        host, tail = hostport[1:end], hostport[end + 1:]
        if tail.startswith(":"):
            port = int(tail[1:])
    elif ":" in hostport:
        host, port_text = hostport.rsplit(":", 1)
        port = int(port_text)
    else:
        host = hostport
    if not host:
        raise HttpError("no host in url")
    return tls, host, port, path


async def _read(coro):
    try:
        return await asyncio.wait_for(coro, READ_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise HttpError("timeout")


async def _read_head(reader):
    """Status code and a dict of lower-cased headers."""
    line = await _read(reader.readline())
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError("bad status line")
    try:
        status = int(parts[1])
    except ValueError:
        raise HttpError("bad status line")
    headers = {}
    seen = 0
    while True:
        line = await _read(reader.readline())
        seen += len(line)
        if seen > _HEADER_LIMIT:
            raise HttpError("headers too long")
        if not line:
            raise HttpError("connection closed in headers")
        if line in (b"\r\n", b"\n"):
            return status, headers
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()


async def _copy(reader, f, count, chunk):
    """Copy exactly ``count`` body bytes (or until EOF if ``count`` is None) into ``f``."""
    copied = 0
    while count is None or copied < count:
        want = chunk if count is None else min(chunk, count - copied)
        data = await _read(reader.read(want))
        if not data:
            if count is None:
                return copied
            raise HttpError("connection closed in body")
        f.write(data)
        copied += len(data)
    return copied


async def _copy_chunked(reader, f, chunk):
    copied = 0
    while True:
        line = await _read(reader.readline())
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise HttpError("bad chunk size")
        if size == 0:
            while (await _read(reader.readline())) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return copied
        copied += await _copy(reader, f, size, chunk)
        await _read(reader.readline())  # CRLF after the chunk


async def download(open_connection, url, path, size, chunk=2048):
    """Bring ``path`` to the full ``size`` bytes of ``url``, resuming what is already there.

    Returns the file size. Raises HttpError on anything short of that.
    """
    have = max(0, file_size(path))
    if have > size:
        remove(path)
        have = 0
    if have == size:
        return have
    tls, host, port, target = parse_url(url)
    reader, writer = await open_connection(host, port, ssl=True if tls else None)
    try:
        request = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: loaxa-rx\r\n" % (
            target, host)
        if have:
            request += "Range: bytes=%d-\r\n" % have
        writer.write((request + "\r\n").encode())
        await writer.drain()
        status, headers = await _read_head(reader)
        if status == 416:  # our partial file is not a prefix of theirs any more
            remove(path)
            raise HttpError("range not satisfiable")
        if status == 200:
            have = 0  # the server ignored Range: start over
        elif status != 206:
            raise HttpError("http %d" % status)
        with open(path, "ab" if have else "wb") as f:
            if headers.get("transfer-encoding", "").lower() == "chunked":
                await _copy_chunked(reader, f, chunk)
            elif "content-length" in headers:
                await _copy(reader, f, int(headers["content-length"]), chunk)
            else:
                await _copy(reader, f, None, chunk)
    finally:
        try:
            writer.close()
            await writer.wait_closed()
        except Exception:
            pass
    got = file_size(path)
    if got != size:
        raise HttpError("size %d, expected %d" % (got, size))
    return got


async def sha256_hex(path, buf):
    """Hash a file through the preallocated ``buf`` (no whole-file read), yielding to the event
    loop between chunks so a long hash never starves the audio player."""
    h = hashlib.sha256()
    view = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            await asyncio.sleep(0)
    return "".join("%02x" % b for b in h.digest())
