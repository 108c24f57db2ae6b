"""One bounded HTTP GET for what CAP brings from elsewhere: a feed, the CAP document an entry
links to, an alert's audio resource. http and https only; a whole-download deadline (not just
per read: a server dripping a byte a second is cut off), a size limit checked against the
declared length before reading and against the bytes as they come; conditional GET.
Every failure is a FetchError with a reason fit for a log line.
"""

import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

USER_AGENT = "Loaxa-headend (CAP)"
_CHUNK = 64 * 1024


class FetchError(Exception):
    """Why a fetch failed: ``reason`` is short and safe to log; ``too_large`` when the answer
    was over the limit (trying again will not help)."""

    def __init__(self, reason: str, too_large: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int  # 200, or 304 (not modified: ``body`` is empty)
    body: bytes
    etag: str | None
    last_modified: str | None


def http_get(url: str, *, limit: int, timeout_s: float, etag: str | None = None,
             last_modified: str | None = None) -> Fetched:
    """GET ``url`` (at most ``limit`` bytes, within ``timeout_s`` in all). Raises FetchError."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise FetchError("not an http(s) URL")
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + timeout_s
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise FetchError("too large: %s bytes declared, at most %d" % (declared, limit),
                                 too_large=True)
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError("timed out after %g s" % timeout_s)
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise FetchError("too large: more than %d bytes" % limit, too_large=True)
                chunks.append(chunk)
            return Fetched(response.status, b"".join(chunks), response.headers.get("ETag"),
                           response.headers.get("Last-Modified"))
    except urllib.error.HTTPError as error:
        if error.code == 304:
            return Fetched(304, b"", error.headers.get("ETag") or etag,
                           error.headers.get("Last-Modified") or last_modified)
        raise FetchError("HTTP %d %s" % (error.code, error.reason)) from None
    except urllib.error.URLError as error:
        raise FetchError("cannot connect: %s" % (error.reason,)) from None
    except TimeoutError:
        raise FetchError("timed out after %g s" % timeout_s) from None
    except (OSError, http.client.HTTPException, ValueError) as error:  # reset, cut short
        raise FetchError("%s: %s" % (type(error).__name__, error)) from None
