"""The receiver's fetcher: HTTP downloads into the media cache, one attempt per FETCH action.

One ``Fetcher`` per receiver (no module-level state). The core (firmware/core.py, with
firmware/fetch_policy.py) decides when to fetch, when to try again and when to give up; this
only makes each attempt: room in the cache (firmware/cache.py: the budget follows the flash,
and eviction spares what the schedule needs), the download with Range resume into the item's
``.part`` (firmware/http.py), the sha256 check, the index entry. One download at a time, in the
order asked. ``on_done(sha, error)``: error None, or a short reason for the ``fetch_failed``
event ("cache-full", "no-space", "sha mismatch", "connect failed", "http 404", ...), never
the URL (it may carry a token).
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

from firmware.http import HttpError, download, sha256_hex
from firmware.player import IO_BYTES
from firmware.reasons import CACHE_FULL, REFUSED_NO_SPACE
from firmware.store import is_no_space, remove


class Fetcher:
    """``platform``: the board (its ``open_connection``); ``cache``: MediaCache; ``needed()``: the sha set the
    cache must keep (the core's ``needed_media``); ``evicted(sha)``: the cache dropped one;
    ``no_space()``: the flash is full (the shell counts it and lets the cache give space
    back)."""

    def __init__(self, platform, cache, needed, evicted, no_space, on_done):
        self._platform = platform
        self._cache = cache
        self._needed = needed
        self._evicted = evicted
        self._no_space = no_space
        self._on_done = on_done
        self._queue = []
        self._wake = asyncio.Event()
        self._buf = bytearray(IO_BYTES)

    @property
    def busy(self):
        """Something is being fetched or waits to be."""
        return bool(self._queue)

    def add(self, media):
        """Queue one attempt at ``media`` (the FETCH action's dict), once."""
        for queued in self._queue:
            if queued["sha"] == media["sha"]:
                return
        self._queue.append(media)
        self._wake.set()

    async def run(self):
        """Make the queued attempts, in order, until cancelled."""
        while True:
            self._wake.clear()
            if not self._queue:
                await self._wake.wait()
                continue
            media = self._queue[0]
            try:
                error = await self.attempt(media)
            except Exception as e:
                if is_no_space(e):
                    self._no_space()
                    error = REFUSED_NO_SPACE
                else:
                    error = "fetch: %s" % type(e).__name__
            self._queue.pop(0)
            self._on_done(media["sha"], error)

    async def attempt(self, media):
        """Download one item into the cache; return None or a short error for the event."""
        cache = self._cache
        sha = media["sha"]
        if cache.has(sha):
            return None
        # The budget follows the flash (statvfs), and this item's .part already counts as held.
        evicted = cache.make_room(media["size"], self._needed(), sha)
        if evicted is None:
            return CACHE_FULL
        for old in evicted:
            self._evicted(old)
        part = cache.part_path(sha)
        try:
            await download(self._platform.open_connection, media["url"], part, media["size"], IO_BYTES)
        except HttpError as e:
            return str(e)
        except OSError as e:
            if is_no_space(e):
                return self._out_of_space(sha)
            return "connect failed"  # never the URL: it may carry a token
        if await sha256_hex(part, self._buf) != sha:
            remove(part)
            return "sha mismatch"
        try:
            cache.add(sha, media["size"], media["codec"])
        except OSError as e:
            if is_no_space(e):
                return self._out_of_space(sha)
            raise
        return None

    def _out_of_space(self, sha):
        """The flash filled up under a download (the budget is an estimate: other writes,
        filesystem overhead): the partial file goes at once, so the state and the outbox can
        still be written, the cache gives space back, and the attempt fails "no-space" (the
        core tries again later against the budget the flash has then)."""
        self._cache.drop_part(sha)
        self._no_space()
        return REFUSED_NO_SPACE
