"""Relay (tiếp sóng): a stream URL pulled once, decoded to PCM, fed to live sessions in time.

    url = relay_url(body["source"]["url"])              # http/https only, else Invalid
    hub = RelayHub(settings)                            # one per head-end
    sub = hub.subscribe(url)                            # starts the pull, or joins it
    async for pcm in relay_feed(sub, detector, fallback, ...):   # 20 ms chunks, paced
        ...                                             # the session's encoders
    hub.unsubscribe(sub)                                # the last one stops ffmpeg

``RelayPull`` runs one ffmpeg per URL (HTTP/Icecast MP3 or AAC, HLS m3u8; m3u/pls playlists
are read for their first entry by audio/live.py ``resolve_url``) that decodes to 16 kHz mono
16-bit PCM on a pipe, with ffmpeg's own reconnect options and a read timeout. Two sessions
relaying the same URL share it: each gets its own buffer of the same PCM from the moment it
joined. ffmpeg that ends, fails or sends nothing for ``relay_read_timeout_s`` is started again
with a backoff (0.5 s up to 4 s) for as long as someone listens. A source faster than real time
(an HLS playlist's first segments, a burst after a stall) is read ahead up to
``relay_max_buffer_s``, then held back (ffmpeg blocks on its pipe).

``relay_feed`` paces a subscription at real time on the monotonic clock: after
``relay_prebuffer_ms`` of audio, one tick's PCM every tick; a tick without audio (an underrun)
is silence and the buffer fills again before audio resumes. The dead-air detector
(headend/live/deadair.py) sees every tick; while dead, the fallback goes out instead. The feed
never stops on its own, so the session's timeline runs on the wall clock whatever the source
does; it gives its first chunk with the source's first audio, or with the fallback if the
source gives none within the dead-air time.
"""

import asyncio
import collections
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable

from audio.ffmpeg import ffmpeg_exe
from audio.live import LiveSourceError, resolve_url
from headend.errors import Invalid
from headend.live.deadair import DeadAirChange, DeadAirDetector, FallbackLoop
from headend.settings import Settings

log = logging.getLogger(__name__)

RATE = 16000
TICK_MS = 20
MAX_URL = 2000
_READ_BYTES = 8192
_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)
_MAX_BEHIND_S = 0.3  # a feed this late (a busy loop) skips ahead rather than burst

CONNECTING = "connecting"
PLAYING = "playing"
RECONNECTING = "reconnecting"


def relay_url(value) -> str:
    """The URL of a relay source, checked: http or https, a host, no spaces; else Invalid."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid("bad-url", "source.url must be an http:// or https:// URL",
                      "Địa chỉ luồng tiếp sóng phải là một địa chỉ http:// hoặc https://")
    url = value.strip()
    if len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise Invalid("bad-url", "source.url is too long or has spaces",
                      "Địa chỉ luồng tiếp sóng quá dài hoặc có khoảng trắng")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise Invalid("bad-url-scheme", "a relay source must be http:// or https://, not %r"
                      % url[:80], "Chỉ tiếp sóng được từ địa chỉ http:// hoặc https://")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise Invalid("bad-url", "source.url %r has a bad port" % url[:80],
                      "Địa chỉ luồng tiếp sóng có cổng không hợp lệ") from None
    if not parts.hostname:
        raise Invalid("bad-url", "source.url %r has no host" % url[:80],
                      "Địa chỉ luồng tiếp sóng thiếu tên máy chủ")
    return url


class Subscription:
    """One session's share of a pull: the PCM since it joined, and when bytes last came."""

    def __init__(self, pull: "RelayPull"):
        self.pull = pull
        self._buffer = bytearray()
        self.arrived: float | None = None  # monotonic time the source last delivered bytes
        self.closed = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def _feed(self, pcm: bytes, now: float) -> None:
        self._buffer += pcm
        self.arrived = now

    def take(self, nbytes: int) -> bytes | None:
        """``nbytes`` of PCM, or None if fewer are buffered."""
        if len(self._buffer) < nbytes:
            return None
        out = bytes(self._buffer[:nbytes])
        del self._buffer[:nbytes]
        return out

    def drop(self, nbytes: int) -> None:
        del self._buffer[:nbytes]


class RelayPull:
    """One ffmpeg decoding one URL to PCM, for every subscription (see module doc)."""

    def __init__(self, url: str, *, read_timeout_s: float, max_buffer_s: float):
        self.url = url
        self.read_timeout_s = read_timeout_s
        self._max_buffer = int(max_buffer_s * RATE * 2)
        self.subscriptions: list[Subscription] = []
        self.state = CONNECTING
        self.error: str | None = None
        self.starts = 0  # ffmpeg runs so far
        self._task: asyncio.Task | None = None
        self._process: asyncio.subprocess.Process | None = None

    def summary(self) -> dict:
        return {"url": self.url, "state": self.state, "error": self.error,
                "listeners": len(self.subscriptions)}

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._kill()

    async def _run(self) -> None:
        failures = 0
        while self.subscriptions:
            got_data = False
            try:
                got_data = await self._run_ffmpeg()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed start is one more failure, never the end
                self.error = str(exc)[:200]
            finally:
                await self._kill()
            failures = 0 if got_data else failures + 1
            self.state = RECONNECTING
            delay = _BACKOFF_S[min(failures, len(_BACKOFF_S)) - 1] if failures else 0.2
            log.warning("relay %s: %s; again in %.1f s", self.url, self.error, delay)
            await asyncio.sleep(delay)

    async def _run_ffmpeg(self) -> bool:
        """One ffmpeg run, until it ends, fails or stalls; whether it gave audio."""
        try:
            url = await resolve_url(self.url, self.read_timeout_s)
        except LiveSourceError as exc:
            self.error = str(exc)[:200]
            return False
        self.starts += 1
        command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
                   # ffmpeg's own retries for a dropped connection, kept short: ours follow.
                   "-reconnect", "1", "-reconnect_streamed", "1",
                   "-reconnect_on_network_error", "1", "-reconnect_delay_max", "2",
                   "-rw_timeout", str(int(self.read_timeout_s * 1e6)),
                   "-user_agent", "Loaxa relay", "-probesize", "4096", "-analyzeduration", "0",
                   "-i", url,
                   "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(RATE), "-f", "s16le",
                   "-flush_packets", "1", "pipe:1"]
        self._process = process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        tail: collections.deque[str] = collections.deque(maxlen=3)
        drain = asyncio.create_task(self._drain(process, tail))
        got_data = False
        carry = b""
        try:
            while self.subscriptions:
                await self._wait_for_room()
                try:
                    chunk = await asyncio.wait_for(process.stdout.read(_READ_BYTES),
                                                   self.read_timeout_s)
                except TimeoutError:
                    self.error = "no data for %.0f s" % self.read_timeout_s
                    return got_data
                if not chunk:
                    code = await asyncio.wait_for(process.wait(), 5)
                    await asyncio.wait({drain}, timeout=1)
                    self.error = " ".join(tail) or ("source ended" if code == 0
                                                    else "ffmpeg exit code %d" % code)
                    return got_data
                if not got_data:
                    got_data = True
                    self.state, self.error = PLAYING, None
                    log.info("relay %s: audio from the source", self.url)
                data = carry + chunk
                cut = len(data) - len(data) % 2  # whole samples only
                carry = data[cut:]
                now = time.monotonic()
                for sub in self.subscriptions:
                    sub._feed(data[:cut], now)
            return got_data
        finally:
            drain.cancel()

    async def _wait_for_room(self) -> None:
        # Read ahead no further than the fullest listener can hold; while held back the source
        # is not stalled (it is us), so the listeners' arrival times move on.
        while self.subscriptions and max(s.buffered_bytes for s in self.subscriptions) \
                > self._max_buffer:
            now = time.monotonic()
            for sub in self.subscriptions:
                sub.arrived = now
            await asyncio.sleep(TICK_MS / 1000)

    async def _drain(self, process, tail) -> None:
        async for line in process.stderr:
            text = line.decode("utf-8", "replace").strip()
            if text:
                tail.append(text[:120])

    async def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        try:
            process.kill()
            await asyncio.wait_for(process.wait(), 5)
        except (ProcessLookupError, TimeoutError):
            pass


class RelayHub:
    """The head-end's pulls, one per URL, each running while someone listens."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pulls: dict[str, RelayPull] = {}

    def subscribe(self, url: str) -> Subscription:
        pull = self.pulls.get(url)
        if pull is None:
            pull = self.pulls[url] = RelayPull(url,
                                               read_timeout_s=self.settings.relay_read_timeout_s,
                                               max_buffer_s=self.settings.relay_max_buffer_s)
        sub = Subscription(pull)
        pull.subscriptions.append(sub)
        pull.start()
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        if sub.closed:
            return
        sub.closed = True
        pull = sub.pull
        if sub in pull.subscriptions:
            pull.subscriptions.remove(sub)
        if not pull.subscriptions:
            if self.pulls.get(pull.url) is pull:
                del self.pulls[pull.url]
            await pull.stop()


async def relay_feed(sub: Subscription, detector: DeadAirDetector,
                     fallback: Callable[[], Awaitable[FallbackLoop]], *, prebuffer_ms: int,
                     on_change: Callable[[DeadAirChange], Awaitable[None]],
                     clock: Callable[[], float] = time.monotonic) -> AsyncIterator[bytes]:
    """20 ms PCM chunks of the source at real time, the fallback during dead air (see module
    doc). ``fallback()`` gives the loop to play (made once, when first needed)."""
    samples = RATE * TICK_MS // 1000
    nbytes = 2 * samples
    prebuffer = 2 * RATE * prebuffer_ms // 1000
    tick_s = TICK_MS / 1000
    silence = bytes(nbytes)
    loop: FallbackLoop | None = None
    primed = begun = False
    start = clock()
    k = 0
    while True:
        if not primed and sub.buffered_bytes >= max(prebuffer, nbytes):
            primed = True
        pcm = sub.take(nbytes) if primed else None
        if pcm is None:
            primed = False  # an underrun: fill the buffer again before audio resumes
        now = clock()
        change = detector.feed(now, pcm, sub.arrived)
        if change is not None:
            if change.dead:
                loop = await fallback()
                loop.rewind()
            await on_change(change)
        if detector.dead and loop is not None:
            out = loop.take(samples)
        else:
            out = pcm or silence
        if begun or pcm is not None or detector.dead:
            begun = True
            yield out
        k += 1
        due = start + k * tick_s
        now = clock()
        if now - due > _MAX_BEHIND_S:
            # The loop fell behind (a busy machine): skip the missed ticks, source included, so
            # the relay's delay stays what it was (the session's timeline fills the gap).
            missed = int((now - due) / tick_s)
            sub.drop(missed * nbytes)
            k += missed
            due = start + k * tick_s
        await asyncio.sleep(max(0.0, due - clock()))
