"""The receiver's player: what the core starts, played to the sink at the exact time.

One ``Player`` per receiver (no module-level state: many share a CPython process in the
simulator). ``start(item, skip_ms, volume, first_at, ...)`` runs one task per START action of
the core (firmware/core.py): media from the cache, or live frames from the core's jitter buffer.
It prepares (file, seek), waits for ``first_at`` by the synced clock (the item's start, or the
moment the amplifier relay has settled: the core's decision), measures how late it is and skips
that much audio (whole blocks or frames by seeking, the rest as the sink's ``skip_samples``),
so it is sample-accurate in step with its neighbours however late this receiver got there.
It tells ``on_done(item, error)`` when it finished (error None) or failed (a short detail).
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

from firmware.core import DETAIL_NOT_CACHED
from firmware.live_entry import samples_past, units_past
from firmware.mp3 import MAX_FRAME_BYTES, FrameReader
from firmware.platform import SinkError
from firmware.schedule import KIND_STREAM
from protocol.media import ADPCM_BLOCK_BYTES, adpcm_samples_per_block

IO_BYTES = 2048           # file read and HTTP chunk; a multiple of the 256-byte ADPCM block
_STREAM_POLL_MS = 20      # the stream player's longest sleep while its buffer is empty
_ANCHOR_MS = 1000         # how often the stream player re-reads the clock (drift, new syncs)
# A write into a sink that ran dry up to this late is heard as it is: after a lost frame the
# player sleeps until the next is due, and the wake-up is often a few ms late on a busy board
# (10 ms seen with MicroPython receivers on a loaded machine); entering by units would cost a
# whole ADPCM block or MPEG frame (32-36 ms) of audio for it. Later than this, the frame is
# entered at its next whole unit.
_LATE_OK_MS = 15

if hasattr(asyncio, "sleep_ms"):
    # MicroPython's: an int argument and a singleton generator, so a sleep allocates nothing
    # (``ms / 1000`` would box a float on the board, in the audio loop above all).
    sleep_ms = asyncio.sleep_ms
else:
    async def sleep_ms(ms):
        await asyncio.sleep(ms / 1000 if ms > 0 else 0)


class Player:
    """``platform``: its sink and ticks; ``clock`` (firmware.clock.ClockEstimator) and
    ``ticks`` (TickExtender): the synced clock; ``cache``: where media files are;
    ``stream_lead_ms``: how early live frames queue in the sink. ``item`` is what plays."""

    def __init__(self, platform, clock, ticks, cache, stream_lead_ms, on_done):
        self._platform = platform
        self._sink = platform.sink
        self._clock = clock
        self._ticks = ticks
        self._cache = cache
        self._lead = stream_lead_ms
        self._on_done = on_done
        self._task = None
        self.item = None
        self._buf = bytearray(max(IO_BYTES, MAX_FRAME_BYTES))

    def _now(self):
        return self._clock.network_ms(self._ticks.now())

    def start(self, item, skip_ms, volume, first_at, jitter=None):
        """Play ``item`` (schedule.Item): a file ``skip_ms`` in, or a live stream from
        ``jitter``; the first sample at ``first_at``. ADPCM files are in the protocol's
        ``ADPCM_BLOCK_BYTES`` blocks: the only layout the head-end encodes."""
        self.stop()
        self.item = item
        if item.kind == KIND_STREAM:
            coro = self._play_stream(item, volume, first_at, jitter)
        else:
            coro = self._play_media(item, skip_ms, volume, first_at)
        self._task = asyncio.create_task(coro)

    def stop(self):
        """Cut what plays short (the sink goes quiet at once)."""
        task = self._task
        self._task = None
        if self.item is not None:
            self.item = None
            self._sink.stop()
        if task is not None and not task.done():
            task.cancel()

    def _done(self, item, error):
        if self.item is not item:
            return
        self.item = None
        self._task = None
        self._on_done(item, error)

    async def _wait_until(self, network_ms):
        wait = self._clock.local_ms(network_ms) - self._ticks.now()
        if wait > 0:
            await sleep_ms(wait)

    async def _play_media(self, item, skip_ms, volume, first_at):
        args = item.args
        codec = args["codec"]
        rate = args["rate"]
        path = self._cache.path(item.sha)
        if path is None:
            self._done(item, DETAIL_NOT_CACHED)
            return
        sink = self._sink
        try:
            with open(path, "rb") as f:
                reader = FrameReader(f, self._buf) if codec == "mp3" else None
                await self._wait_until(first_at)
                if item.at is not None and not item.waited:
                    # Measured at the last moment: sample-accurate in step with the
                    # neighbours however late this receiver got here.
                    skip_ms = max(0, self._now() - item.at)
                skip = skip_ms * rate // 1000
                if reader is not None:
                    await self._stream_mp3(reader, skip, rate, volume)
                else:
                    await self._stream_adpcm(f, skip, rate, volume, ADPCM_BLOCK_BYTES)
                await sink.drain()
                sink.close()
        except asyncio.CancelledError:
            raise
        except SinkError as e:  # the sink's own reason ("vs1053: DREQ stuck low") is the detail
            self._done(item, str(e))
            return
        except Exception as e:
            self._done(item, "player: %s" % type(e).__name__)
            return
        self._done(item, None)

    # The two file loops allocate nothing per frame (gc.mem_alloc() in tests/mpy/test_sinks.py):
    # FrameReader reads into views it keeps, the ADPCM loop reads into one view made per play,
    # and a hardware sink's write returns a preallocated awaitable (firmware/hw/paced.py).

    async def _stream_mp3(self, reader, skip, rate, volume):
        sink = self._sink
        remainder = reader.skip_samples(skip)
        sink.set_volume(volume)
        sink.open("mp3", rate, remainder)
        while True:
            frame = reader.read_frame()
            if frame is None:
                return
            await sink.write(frame)

    async def _stream_adpcm(self, f, skip, rate, volume, block):
        sink = self._sink
        per_block = adpcm_samples_per_block(block)
        blocks = skip // per_block
        f.seek(blocks * block)
        sink.set_volume(volume)
        sink.open("adpcm", rate, skip - blocks * per_block)
        view = memoryview(self._buf)
        chunk = (len(self._buf) // block) * block
        chunk_view = view[:chunk]  # a slice allocates: one per play, not one per read
        while True:
            n = f.readinto(chunk_view)
            if not n:
                return
            await sink.write(chunk_view if n == chunk else view[:n])

    def _ticks_at(self, network_ms):
        """The ``ticks_ms`` value at which the synced clock reads ``network_ms`` (near now)."""
        p = self._platform
        return p.ticks_add(p.ticks_ms(), self._clock.local_ms(network_ms) - self._ticks.now())

    async def _end_stream(self, item):
        await self._sink.drain()
        self._sink.close()
        self._done(item, None)

    async def _play_stream(self, item, volume, first_at, jitter):
        """Live frames from the jitter buffer to the sink, each heard at its play time.

        Per frame only small ints: stream time is ``ticks_diff(ticks_ms(), anchor)``, where
        ``anchor`` is the tick at which the stream's base time comes by the synced clock,
        recomputed every ``_ANCHOR_MS`` (that allocates; a frame does not). The first frame,
        and the first after lost ones, is written at its own time into an empty sink, so it is
        heard then (firmware/live_entry.py: a first frame written late is entered at the
        sample due, one late into a sink that ran dry at its next whole block or MPEG frame);
        every other frame is taken ``stream_lead_ms`` early and queues behind the
        one playing, so nothing is heard between frames. A lost frame is silence of its own
        length: the stream stays on its timeline.
        """
        info = item.stream
        p = self._platform
        sink = self._sink
        lead = self._lead
        rate = info.rate
        opened = False
        anchor = anchored = 0
        base = None
        # Stream time at which everything written has been heard, kept exactly: whole ms plus
        # a remainder in (samples x 1000) units, since a frame is rarely a whole number of ms
        # (an ADPCM block is 31.5625 ms at 16 kHz) and rounding would drift by frames.
        heard_until = 0
        heard_rem = 0
        try:
            await self._wait_until(first_at)
            while self.item is item:
                if jitter.base is None:
                    await sleep_ms(_STREAM_POLL_MS)
                    continue
                t = p.ticks_ms()
                if base is not jitter.base or p.ticks_diff(t, anchored) >= _ANCHOR_MS:
                    base = jitter.base
                    anchor = self._ticks_at(base)
                    anchored = t
                now = p.ticks_diff(t, anchor)
                queued = opened and heard_until > now
                frame = jitter.pop_at(now, lead if queued else 0)
                if frame is None:
                    nxt = jitter.next_at()
                    wait = _STREAM_POLL_MS
                    if nxt is not None and nxt - now - (lead if queued else 0) < wait:
                        wait = nxt - now - (lead if queued else 0)
                    await sleep_ms(wait if wait > 0 else 1)
                    continue
                if queued and frame.at > heard_until + frame.duration_ms // 2:
                    # Frames were lost before this one: let the sink run dry, and write this
                    # one when it is due, so it is heard at its own time, not early.
                    wait = frame.at - p.ticks_diff(p.ticks_ms(), anchor)
                    if wait > 0:
                        await sleep_ms(wait)
                    queued = False
                payload = frame.payload
                if not opened:
                    # The first frame is often written after its start (the amplifier's
                    # settling, a first decode, a busy loop): the samples whose time has
                    # passed are dropped, so the first one heard is heard at its own time.
                    # Written whole, it would be late, and every frame queued behind it,
                    # for the whole stream.
                    skip = samples_past(frame, p.ticks_diff(p.ticks_ms(), anchor), rate)
                    sink.set_volume(volume)
                    sink.open(info.codec, rate, skip)
                    opened = True
                    heard_until = frame.at
                    heard_rem = 0
                elif not queued:
                    late = p.ticks_diff(p.ticks_ms(), anchor) - frame.at
                    if late > _LATE_OK_MS:
                        # The sink ran dry and this frame came after its time: written whole
                        # it would be heard late, and every frame after it. Its units whose
                        # time has passed are dropped, the rest written at its own time.
                        off, dropped = units_past(payload, info.codec,
                                                  samples_past(frame, frame.at + late, rate))
                        if off >= len(payload):  # none of it is still to come
                            if not frame.last:
                                continue
                            await self._end_stream(item)
                            return
                        wait = (frame.at + (dropped * 1000 + rate - 1) // rate
                                - p.ticks_diff(p.ticks_ms(), anchor))
                        if wait > 0:
                            await sleep_ms(wait)
                        payload = payload[off:]  # a slice allocates: only for a late frame
                        heard_until = frame.at  # then heard to its end at its own time
                    else:  # heard from now on (a late write is heard late, not early)
                        heard_until = frame.at if frame.at > now else now
                    heard_rem = 0
                await sink.write(payload)
                heard_rem += frame.samples * 1000
                if heard_rem >= rate:
                    whole = heard_rem // rate
                    heard_until += whole
                    heard_rem -= whole * rate
                if frame.last:
                    await self._end_stream(item)
                    return
        except asyncio.CancelledError:
            raise
        except SinkError as e:
            self._done(item, str(e))
        except Exception as e:
            self._done(item, "player: %s" % type(e).__name__)
