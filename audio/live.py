"""Live framing: any live source in, paced frames that each decode on their own out.

    async with LiveFramer("http://radio.example/vov1.m3u", codec="mp3") as framer:
        async for frame, packet in stamped_frames(framer, HmacKey(key), stream_no, 1500):
            publish(packet)

Sources: a local file played as live, an HTTP/Icecast stream URL, an m3u/pls playlist or an
HLS m3u8 URL (the first entry or variant is taken), or a pipe: a ``PushSource`` fed with the
browser's MediaRecorder WebM/Opus chunks, any async iterable of bytes, or a binary file object.

ffmpeg transcodes the source to the target codec with the renditions' settings
(``audio.settings``): MP3 mono CBR without bit reservoir (so each MPEG frame decodes without
its predecessor), or IMA-ADPCM blocks that carry their own predictor state (ffmpeg's encoder,
as ``audio.adpcm`` uses it for renditions: ~2,000x real time, where a Python encoder would
hold up the pacing loop). The output is cut into live frames of about ``frame_ms`` made of
whole MPEG frames (``audio.mp3``) or whole ADPCM blocks.

Pacing: frame k is released at ``start + samples_before_k / rate`` on the monotonic clock, so
sleeping late once never shifts the frames after it (no drift accumulation). Its capture time
(``captured_at_ms``, wall clock) follows the same timeline, less the decoder's delay
(``audio.decode.decoded_delay``: an MP3 decoder gives LAME's 1,105 samples before the first
source sample, so an MP3 frame holds audio captured 69 ms, at 16 kHz, before its place on the
timeline): the first source sample of a stream is heard at capture + play delay in either
codec. ``stamped_frames`` puts ``captured_at_ms + play delay`` in the protocol frame header.

Resilience: every read from ffmpeg has a timeout. No data for ``stall_timeout_s`` is reported
(``on_event`` callback, ``events`` list and the log) and then, for URLs, ffmpeg is killed and
the source reconnected with a backoff; a file or pipe source ends with ``LiveSourceStalled``.
A URL that keeps failing ends with ``LiveSourceError`` after ``max_reconnects`` attempts in a
row. After a reconnect the timeline is re-anchored at the first new frame (the receivers hear
a gap, not a burst of late frames). Closing the framer kills ffmpeg.
"""

import asyncio
import collections
import logging
import os
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from audio import mp3
from audio.adpcm import ffmpeg_encoder_args
from audio.decode import decoded_delay
from audio.ffmpeg import ffmpeg_exe
from audio.settings import DEFAULT_SETTINGS
from protocol.frames import CODEC_IDS, FLAG_LAST, pack_frame
from protocol.media import ADPCM_BLOCK_BYTES, adpcm_samples_per_block

log = logging.getLogger("audio.live")

CODECS = ("mp3", "adpcm")
DEFAULT_FRAME_MS = 120
DEFAULT_STALL_TIMEOUT_S = 3.0
DEFAULT_PREBUFFER_MS = 500  # network and pipe sources; a file needs none
DEFAULT_MAX_BUFFER_MS = 10_000  # ffmpeg is held back (pipe backpressure) beyond this
DEFAULT_RESYNC_AFTER_MS = 500
DEFAULT_MAX_RECONNECTS = 5
_READ_BYTES = 16384
_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)
_PLAYLIST_SUFFIXES = (".m3u", ".m3u8", ".pls")
_PLAYLIST_MAX_BYTES = 1 << 20


class LiveSourceError(Exception):
    """The source broke and could not be recovered; the message says what happened."""


class LiveSourceStalled(LiveSourceError):
    """The source sent nothing for ``stall_timeout_s`` and cannot be reconnected."""


@dataclass(frozen=True)
class LiveFrame:
    """One live frame: whole MPEG frames or ADPCM blocks, and where it sits in time."""

    seq: int
    offset_ms: float  # position of its first sample on the stream timeline (by samples)
    # Wall clock, ms since the Unix epoch, at which the source sample its first decoded sample
    # holds was due (its due time less the decoder's delay).
    captured_at_ms: int
    due: float  # monotonic time at which it was due
    samples: int
    payload: bytes
    last: bool = False


@dataclass(frozen=True)
class LiveEvent:
    """Something the operator should know about the source ("stalled", "reconnecting", ...)."""

    kind: str
    message: str
    at: float = field(default_factory=time.monotonic)


# --- sources ---------------------------------------------------------------------------------

class PushSource:
    """A pipe fed by a producer, e.g. the browser's WebM/Opus chunks arriving on a websocket.

    ``await push(chunk)`` for each chunk, then ``end()``. Iterates once, as an async iterator.
    """

    def __init__(self, max_chunks=256):
        self._queue = asyncio.Queue(max_chunks)

    async def push(self, chunk):
        await self._queue.put(bytes(chunk))

    def end(self):
        self._queue.put_nowait(None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        chunk = await self._queue.get()
        if chunk is None:
            raise StopAsyncIteration
        return chunk


async def _chunks_of(source):
    """Async iterator over the bytes of a pipe source (async iterable or binary file object)."""
    if hasattr(source, "__aiter__"):
        async for chunk in source:
            yield chunk
        return
    while True:
        # A blocking file read runs in a thread; the framer's stall timeout still bounds us.
        chunk = await asyncio.to_thread(source.read, _READ_BYTES)
        if not chunk:
            return
        yield chunk


def is_url(source):
    return isinstance(source, str) and source.split("://", 1)[0].lower() in ("http", "https")


def _fetch_text(url, timeout):
    request = urllib.request.Request(url, headers={"User-Agent": "Loaxa live relay"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read(_PLAYLIST_MAX_BYTES).decode("utf-8", "replace")


def playlist_entry(text, base_url):
    """The stream a playlist points to: the first variant of an HLS master playlist, the first
    URL of an m3u or pls; None for an HLS media playlist (ffmpeg plays that URL itself)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith("#EXT-X-TARGETDURATION") for line in lines):
        return None
    if lines and lines[0].lower() == "[playlist]":
        for line in lines:
            key, _, value = line.partition("=")
            if key.lower().startswith("file") and value.strip():
                return urllib.parse.urljoin(base_url, value.strip())
        return ""
    after_variant = False
    for line in lines:
        if line.startswith("#EXT-X-STREAM-INF"):
            after_variant = True
        elif not line.startswith("#"):
            return urllib.parse.urljoin(base_url, line)
        elif after_variant:
            continue
    return ""


async def resolve_url(url, timeout):
    """The URL ffmpeg should open for ``url``: playlists are read and their first entry taken."""
    path = urllib.parse.urlsplit(url).path.lower()
    if not path.endswith(_PLAYLIST_SUFFIXES):
        return url
    try:
        text = await asyncio.wait_for(asyncio.to_thread(_fetch_text, url, timeout), timeout)
    except Exception as exc:  # network errors come in many classes; all mean "try again later"
        raise LiveSourceError("cannot read playlist %s: %s" % (url, exc)) from exc
    entry = playlist_entry(text, url)
    if entry == "":
        raise LiveSourceError("playlist %s lists no stream" % url)
    return url if entry is None else entry


# --- cutting ffmpeg's output into live frames ---------------------------------------------------

class Mp3Cutter:
    """Cuts an MP3 byte stream into packets of ``frames_per_packet`` whole MPEG frames."""

    def __init__(self, frames_per_packet):
        self.frames_per_packet = frames_per_packet
        self._buffer = bytearray()
        self._packet = bytearray()
        self._packet_frames = 0
        self._packet_samples = 0

    def feed(self, data):
        """Add bytes; return the packets completed, as (payload, samples)."""
        self._buffer += data
        packets = []
        pos = 0
        while len(self._buffer) - pos >= 4:
            header = mp3.parse_header(self._buffer, pos)
            if header is None:
                pos += 1  # not a frame start (junk or a tag): resynchronise byte by byte
                continue
            if pos + header.frame_bytes > len(self._buffer):
                break
            self._packet += self._buffer[pos:pos + header.frame_bytes]
            self._packet_frames += 1
            self._packet_samples += header.samples
            pos += header.frame_bytes
            if self._packet_frames == self.frames_per_packet:
                packets.append(self._take())
        del self._buffer[:pos]
        return packets

    def _take(self):
        packet = (bytes(self._packet), self._packet_samples)
        self._packet = bytearray()
        self._packet_frames = self._packet_samples = 0
        return packet

    def flush(self):
        """At the end of the source: the whole frames left over, as a shorter packet."""
        return [self._take()] if self._packet_frames else []


class AdpcmCutter:
    """Cuts a stream of IMA-ADPCM blocks (ffmpeg's encoder, see ``audio.adpcm``) into packets
    of ``blocks_per_packet`` whole blocks."""

    def __init__(self, blocks_per_packet, block_bytes=ADPCM_BLOCK_BYTES):
        self.block_bytes = block_bytes
        self.samples_per_block = adpcm_samples_per_block(block_bytes)
        self.blocks_per_packet = blocks_per_packet
        self._buffer = bytearray()

    def _cut(self, blocks):
        size = blocks * self.block_bytes
        packet = (bytes(self._buffer[:size]), blocks * self.samples_per_block)
        del self._buffer[:size]
        return packet

    def feed(self, data):
        self._buffer += data
        packets = []
        while len(self._buffer) >= self.blocks_per_packet * self.block_bytes:
            packets.append(self._cut(self.blocks_per_packet))
        return packets

    def flush(self):
        """At the end: the whole blocks left over (ffmpeg pads the last block with silence)."""
        blocks = len(self._buffer) // self.block_bytes
        return [self._cut(blocks)] if blocks else []


# --- the framer --------------------------------------------------------------------------------

_END = object()
_RESUMED = object()


class LiveFramer:
    """Async iterator of ``LiveFrame`` paced at real time from a live source (see module doc).

    Use as ``async with LiveFramer(...) as framer: async for frame in framer: ...``; leaving
    the block (or ``aclose()``) stops ffmpeg. ``paced=False`` releases frames as soon as they
    are cut, on the same timeline (to cut a file into frames ahead of time, or in tests).
    """

    def __init__(self, source, codec="mp3", frame_ms=DEFAULT_FRAME_MS, settings=DEFAULT_SETTINGS,
                 stall_timeout_s=DEFAULT_STALL_TIMEOUT_S, prebuffer_ms=None,
                 max_buffer_ms=DEFAULT_MAX_BUFFER_MS, resync_after_ms=DEFAULT_RESYNC_AFTER_MS,
                 reconnect=None, max_reconnects=DEFAULT_MAX_RECONNECTS, on_event=None,
                 paced=True, wall_clock=time.time, pcm_rate=None, hold_last=None):
        if codec not in CODECS:
            raise ValueError("codec must be one of %s, not %r" % (", ".join(CODECS), codec))
        if not 20 <= frame_ms <= 1000:
            raise ValueError("frame_ms must be between 20 and 1000")
        self.source = source
        self.codec = codec
        # Rates, bitrate and block size are the renditions' (audio.settings), so a receiver
        # plays live frames with the same decoder set-up as its cached items.
        self.rate = settings.rate_for(codec)
        self.bitrate_kbps = settings.mp3_bitrate_kbps
        self.adpcm_block_bytes = settings.adpcm_block_bytes
        self.stall_timeout_s = stall_timeout_s
        self.kind = "url" if is_url(source) else "file" if isinstance(source, (str, os.PathLike)) \
            else "pipe"
        if self.kind == "file" and not os.path.isfile(source):
            raise LiveSourceError("no such file: %s" % source)
        self.reconnect = self.kind == "url" if reconnect is None else reconnect
        if self.reconnect and self.kind != "url":
            raise ValueError("only URL sources can be reconnected")
        self.max_reconnects = max_reconnects
        if pcm_rate is not None and self.kind != "pipe":
            raise ValueError("pcm_rate is for pipe sources (raw PCM in), not %s" % self.kind)
        if pcm_rate is not None and not 8000 <= pcm_rate <= 48000:
            raise ValueError("pcm_rate must be between 8000 and 48000 Hz")
        self.pcm_rate = pcm_rate
        # A source that can end holds one packet back to flag the last; a live capture passes
        # False, as that would cost a frame of latency (its end is signalled by a command).
        self.hold_last = not self.reconnect if hold_last is None else hold_last
        if prebuffer_ms is None:
            prebuffer_ms = 0 if self.kind == "file" else DEFAULT_PREBUFFER_MS
        self._prebuffer_samples = prebuffer_ms * self.rate // 1000
        self._max_buffer_samples = max(max_buffer_ms, 2 * prebuffer_ms) * self.rate // 1000
        self._resync_after_s = resync_after_ms / 1000
        self._on_event = on_event
        self.paced = paced
        self._wall_clock = wall_clock
        self.events = []
        target = frame_ms * self.rate / 1000
        if codec == "mp3":
            per_frame = 1152 if self.rate > 24000 else 576  # MPEG-1 or MPEG-2 Layer III
        else:
            per_frame = adpcm_samples_per_block(self.adpcm_block_bytes)
        self._units_per_packet = max(1, round(target / per_frame))
        # Output samples that come before input sample 0 (to stamp codecs on one timeline).
        self.priming_samples = decoded_delay(codec)
        self._buffer = collections.deque()
        self._buffered_samples = 0
        self._data_added = asyncio.Event()
        self._space_freed = asyncio.Event()
        self._producer = None
        self._process = None
        self._finished = False
        self._seq = 0
        self._samples_out = 0
        self._anchor = None  # (samples_out, monotonic, wall ms) the timeline is counted from
        self._decoder_delay_ms = 1000.0 * self.priming_samples / self.rate

    # -- public API --

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.aclose()

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._finished:
            raise StopAsyncIteration
        if self._producer is None:
            self._producer = asyncio.create_task(self._produce())
        while True:
            if self._anchor is None:
                await self._wait_for_prebuffer()
            item = await self._take()
            if item is _RESUMED:
                self._anchor = None  # re-anchor after a reconnect, once prebuffered again
                continue
            if item is _END:
                self._finished = True
                raise StopAsyncIteration
            if isinstance(item, BaseException):
                self._finished = True
                await self.aclose()
                raise item
            return await self._release(*item)

    @property
    def ffmpeg_pid(self):
        """Process id of the running ffmpeg, or None (for diagnostics and tests)."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def aclose(self):
        """Stop ffmpeg and the reader; safe to call more than once."""
        self._finished = True
        producer = self._producer
        # Cancel until it is really done: on Python 3.11 asyncio.wait_for can swallow a
        # cancellation that lands as its inner read completes, and the producer would then
        # wait forever for buffer space nobody frees (seen once as a hung test).
        while producer is not None and not producer.done():
            producer.cancel()
            await asyncio.wait({producer}, timeout=0.5)
        if producer is not None and not producer.cancelled():
            producer.exception()  # retrieved, so asyncio does not log it as never retrieved
        await self._kill_process()

    # -- consumer side: pacing --

    async def _wait_for_prebuffer(self):
        # Enough audio buffered, or the source already ended or failed.
        while not (self._buffered_samples >= self._prebuffer_samples
                   or any(not isinstance(item, tuple) for item in self._buffer)):
            self._data_added.clear()
            await self._data_added.wait()

    async def _take(self):
        while not self._buffer:
            self._data_added.clear()
            await self._data_added.wait()
        item = self._buffer.popleft()
        if isinstance(item, tuple):
            self._buffered_samples -= item[1]
            self._space_freed.set()
        return item

    async def _release(self, payload, samples, last):
        now = time.monotonic()
        if self._anchor is None:
            self._anchor = (self._samples_out, now, self._wall_clock() * 1000)
        anchor_samples, anchor_mono, anchor_wall = self._anchor
        since_anchor = (self._samples_out - anchor_samples) / self.rate
        due = anchor_mono + since_anchor
        if due > now:
            if self.paced:
                await asyncio.sleep(due - now)
        elif now - due > self._resync_after_s:
            # The source fell behind (a slow network, a long reconnect): start the timeline
            # again here rather than send a run of frames that are already too late.
            self._emit("resync", "source %.0f ms late; timeline re-anchored" % (1000 * (now - due)))
            self._anchor = (self._samples_out, now, self._wall_clock() * 1000)
            anchor_samples, anchor_mono, anchor_wall = self._anchor
            since_anchor, due = 0.0, now
        frame = LiveFrame(seq=self._seq, offset_ms=1000 * self._samples_out / self.rate,
                          captured_at_ms=round(anchor_wall + 1000 * since_anchor
                                               - self._decoder_delay_ms), due=due,
                          samples=samples, payload=payload, last=last)
        self._seq += 1
        self._samples_out += samples
        return frame

    # -- producer side: ffmpeg and the source --

    def _emit(self, kind, message):
        event = LiveEvent(kind, message)
        self.events.append(event)
        level = logging.WARNING if kind in ("stalled", "reconnecting", "failed") else logging.INFO
        log.log(level, "live source %s: %s", kind, message)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken callback must not stop the stream
                log.exception("live event callback failed")

    def _put(self, item):
        """Queue a packet (payload, samples, last), _RESUMED, _END or an exception."""
        self._buffer.append(item)
        if isinstance(item, tuple):
            self._buffered_samples += item[1]
        self._data_added.set()

    async def _wait_for_space(self):
        # Not reading makes ffmpeg block on its output pipe: a file is never read far ahead.
        while self._buffered_samples > self._max_buffer_samples:
            self._space_freed.clear()
            await self._space_freed.wait()

    def _cutter(self):
        if self.codec == "mp3":
            return Mp3Cutter(self._units_per_packet)
        return AdpcmCutter(self._units_per_packet, self.adpcm_block_bytes)

    def _output_args(self):
        args = ["-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(self.rate)]
        if self.codec == "mp3":
            # No bit reservoir: a frame never borrows bits from the frames before it, so every
            # frame decodes alone even when the previous one was lost.
            args += ["-c:a", "libmp3lame", "-b:a", "%dk" % self.bitrate_kbps, "-reservoir", "0",
                     "-write_xing", "0", "-id3v2_version", "0", "-f", "mp3"]
        else:
            args += ffmpeg_encoder_args(self.adpcm_block_bytes)
        return args + ["-flush_packets", "1", "pipe:1"]

    async def _input_args(self):
        if self.kind == "file":
            return ["-nostdin", "-i", os.fspath(self.source)]
        if self.kind == "url":
            url = await resolve_url(self.source, self.stall_timeout_s)
            # ffmpeg gives up on a silent socket by itself too (microseconds).
            timeout_us = str(int(self.stall_timeout_s * 2e6))
            return ["-nostdin", "-rw_timeout", timeout_us, "-user_agent", "Loaxa live relay",
                    "-i", url]
        if self.pcm_rate is not None:
            # Raw 16-bit mono PCM (a microphone): nothing to probe, so ffmpeg starts at once.
            return ["-f", "s16le", "-ar", str(self.pcm_rate), "-ac", "1", "-probesize", "32",
                    "-analyzeduration", "0", "-i", "pipe:0"]
        # Small probe so the first browser chunks start the stream at once.
        return ["-probesize", "32768", "-analyzeduration", "0", "-i", "pipe:0"]

    async def _produce(self):
        failures = 0
        attempt = 0
        try:
            while True:
                outcome, message, got_data = await self._run_ffmpeg(attempt)
                attempt += 1
                if outcome == "eof" and not self.reconnect:
                    self._emit("ended", "source ended")
                    self._put(_END)
                    return
                if not self.reconnect:
                    error_class = LiveSourceStalled if outcome == "stalled" else LiveSourceError
                    raise error_class(message)
                failures = 0 if got_data else failures + 1
                if failures > self.max_reconnects:
                    raise LiveSourceError("gave up after %d failed reconnects: %s"
                                          % (self.max_reconnects, message))
                delay = _BACKOFF_S[min(failures, len(_BACKOFF_S)) - 1] if failures else 0.2
                self._emit("reconnecting", "%s; reconnecting in %.1f s" % (message, delay))
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc if isinstance(exc, LiveSourceError) else LiveSourceError(str(exc))
            self._emit("failed", str(error))
            self._put(error)
        finally:
            await self._kill_process()

    async def _start_ffmpeg(self):
        command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error"]
        command += await self._input_args() + self._output_args()
        stdin = asyncio.subprocess.PIPE if self.kind == "pipe" else asyncio.subprocess.DEVNULL
        self._process = await asyncio.create_subprocess_exec(
            *command, stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return self._process

    async def _run_ffmpeg(self, attempt):
        """One ffmpeg run, until the source ends, stalls or fails.

        Returns (outcome: "eof" | "stalled" | "failed", message, whether it produced frames).
        For sources that can end (files, pipes) one packet is held back so that the last one
        goes out flagged as last.
        """
        try:
            process = await self._start_ffmpeg()
        except LiveSourceError as exc:
            return "failed", str(exc), False
        stderr_tail = collections.deque(maxlen=5)
        helpers = [asyncio.create_task(self._drain_stderr(process, stderr_tail))]
        if self.kind == "pipe":
            helpers.append(asyncio.create_task(self._feed(process)))
        cutter = self._cutter()
        pending = None
        outcome = None
        got_data = False
        try:
            while outcome is None:
                await self._wait_for_space()
                try:
                    chunk = await asyncio.wait_for(process.stdout.read(_READ_BYTES),
                                                   self.stall_timeout_s)
                except TimeoutError:
                    outcome = ("stalled", "no data for %.1f s" % self.stall_timeout_s)
                    self._emit(*outcome)
                    break
                for packet in cutter.feed(chunk) if chunk else cutter.flush():
                    if not got_data:
                        got_data = True
                        self._source_started(attempt)
                    if not self.hold_last:  # a live URL never ends: nothing to flag as last
                        self._put(packet + (False,))
                        continue
                    if pending is not None:
                        self._put(pending + (False,))
                    pending = packet
                if not chunk:
                    code = await asyncio.wait_for(process.wait(), self.stall_timeout_s)
                    detail = " ".join(stderr_tail) or "exit code %d" % code
                    outcome = ("eof", "source ended") if code == 0 else (
                        "failed", "ffmpeg failed: %s" % detail)
        finally:
            for task in helpers:
                task.cancel()
            await self._kill_process()
            # The held-back packet goes out flagged at a clean end; when the source broke it
            # is dropped, as it would be too late to play anyway.
            if pending is not None and outcome is not None and outcome[0] == "eof":
                self._put(pending + (True,))
        return outcome + (got_data,)

    def _source_started(self, attempt):
        if attempt:
            self._put(_RESUMED)  # the consumer re-anchors its timeline here
            self._emit("recovered", "source is back after %d reconnect(s)" % attempt)
        else:
            self._emit("started", "first frame from the source")

    async def _drain_stderr(self, process, tail):
        async for line in process.stderr:
            text = line.decode("utf-8", "replace").strip()
            if text:
                tail.append(text)
                log.debug("ffmpeg: %s", text)

    async def _feed(self, process):
        try:
            async for chunk in _chunks_of(self.source):
                process.stdin.write(chunk)
                await asyncio.wait_for(process.stdin.drain(), self.stall_timeout_s)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass  # ffmpeg is gone or stuck: the reader side reports it
        finally:
            try:
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass

    async def _kill_process(self):
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        try:
            process.kill()
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            log.error("ffmpeg (pid %d) did not exit after kill", process.pid)


async def stamped_frames(framer, hkey, stream_no, play_delay_ms, first_seq=0):
    """Yield (LiveFrame, protocol frame bytes) for each frame of ``framer``, signed with
    ``hkey`` (a protocol.signing.HmacKey of the stream key), play_at = capture time + delay."""
    codec = CODEC_IDS[framer.codec]
    async for frame in framer:
        packet = pack_frame(hkey, codec, stream_no, first_seq + frame.seq,
                            frame.captured_at_ms + play_delay_ms, frame.samples, frame.payload,
                            FLAG_LAST if frame.last else 0)
        yield frame, packet
