"""A sink that records what a receiver would have played, and when.

It keeps time like a DMA-fed DAC: once opened, the first ``write`` starts the audio (that true
time is the start a listener under the horn would hear) and every write adds its audio duration
to the play cursor. ``write`` returns while less than ``buffer_ms`` of audio is queued, so the
firmware is paced at real time as on the board. A write that arrives after the cursor ran out is
an underrun: a gap a listener would hear, recorded as such. The ``skip_samples`` of ``open``
are dropped from the start, as the Sink interface says: the first sample heard is sample
``skip_samples`` of what was written (decode, then drop them, to get what was heard).

Each playback is one ``Playback`` record: codec, rate, skipped samples, start and end by true
time and by the receiver's own clock, a running SHA-256 and byte count of what was written
(plus the bytes themselves when ``keep_bytes``, for tests that decode them), volume changes,
gaps and how it ended ("closed" after the last write, or "stopped" when cut short).
"""

import asyncio
import hashlib
import time

from firmware.platform import Sink, SinkError
from simulator.sink_count import counter_for

DEFAULT_BUFFER_MS = 120.0


class Playback:
    """What one open..close/stop of the sink played."""

    def __init__(self, codec, rate, skip_samples, opened_true, opened_local, context):
        self.codec = codec
        self.rate = rate
        self.skip_samples = skip_samples
        self.opened_true = opened_true        # seconds, host time.time()
        self.opened_local = opened_local      # ms, the receiver's clock
        self.context = dict(context or {})    # what the firmware was playing (item, bid, ...)
        self.started_true = None              # first sample heard, true time (s)
        self.started_local = None             # ... by the receiver's own clock (ms)
        self.ended_true = None
        self.ended_local = None
        self.how = None                       # "closed" | "stopped"
        self.bytes = 0
        self.writes = 0
        self.samples = 0
        self.sha = hashlib.sha256()
        self.data = None                      # bytearray when the sink keeps bytes
        self.gaps = []                        # (true time s, gap s): underruns
        self.volumes = []                     # (true time s, volume)

    @property
    def item(self):
        return self.context.get("item")

    @property
    def bid(self):
        return self.context.get("bid")

    @property
    def duration_s(self):
        return self.samples / float(self.rate) if self.rate else 0.0

    @property
    def finished(self):
        return self.ended_true is not None

    def __repr__(self):
        return "<Playback %s %s %s %.3f..%s %s>" % (
            self.item or "?", self.codec, self.rate, self.started_true or 0.0,
            "%.3f" % self.ended_true if self.ended_true else "-", self.how)


class PlaybackLog:
    """Queries over ``playbacks`` (Playback records) and ``current``, for tests and reports;
    shared by this sink and simulator/mp_runtime.py's view of a MicroPython receiver's."""

    playbacks = ()
    current = None

    def playbacks_of(self, item=None, bid=None):
        return [p for p in self.playbacks
                if (item is None or p.item == item) and (bid is None or p.bid == bid)]

    @property
    def playing(self):
        return self.current is not None


class RecordingSink(PlaybackLog, Sink):
    """Records playbacks instead of making sound. ``clock`` is the board's DriftingClock.

    ``context`` is an optional callable returning a dict describing what the firmware is
    playing (the fleet points it at the receiver's core), stored with each playback.
    """

    name = "recorder"

    def __init__(self, codecs=("mp3", "adpcm"), clock=None, buffer_ms=DEFAULT_BUFFER_MS,
                 keep_bytes=False, context=None, now=time.time):
        self.codecs = tuple(codecs)
        self.clock = clock
        self.buffer_s = buffer_ms / 1000.0
        self.keep_bytes = keep_bytes
        self.context = context
        self.volume = 100
        self.playbacks = []
        self.current = None
        self.selftests = []         # the periodic test's tones: (true time s, dBFS, ms)
        self.selftest_error = None  # set: the sink fails its self-test with this message
        self._now = now
        self._counter = None
        self._cursor = 0.0  # true time (s) when everything written so far has been heard

    def _local_ms(self):
        return self.clock.local_ms() if self.clock is not None else self._now() * 1000.0

    # -- Sink interface ----------------------------------------------------------------------

    def open(self, codec, rate, skip_samples=0):
        if codec not in self.codecs:
            raise ValueError("this sink does not decode %s" % codec)
        if self.current is not None:
            self.stop()
        context = None
        if self.context is not None:
            try:
                context = self.context()
            except Exception:  # a description is nice to have; never break playback for it
                context = None
        self.current = Playback(codec, rate, skip_samples, self._now(), self._local_ms(), context)
        if self.keep_bytes:
            self.current.data = bytearray()
        self.current.volumes.append((self._now(), self.volume))
        self._counter = counter_for(codec)
        self.playbacks.append(self.current)

    async def write(self, buf):
        playback = self.current
        if playback is None:
            raise ValueError("write on a closed sink")
        data = bytes(buf)
        now = self._now()
        if playback.started_true is None:
            playback.started_true = now
            playback.started_local = self._local_ms()
            # The skipped samples are not heard: they take no time (a late start in step).
            self._cursor = now - playback.skip_samples / float(playback.rate or 1)
        elif now > self._cursor + 0.001:
            playback.gaps.append((self._cursor, now - self._cursor))
            self._cursor = now
        playback.bytes += len(data)
        playback.writes += 1
        playback.sha.update(data)
        if playback.data is not None:
            playback.data += data
        samples = self._counter.samples_in(data)
        playback.samples += samples
        if playback.rate:
            self._cursor += samples / float(playback.rate)
        ahead = self._cursor - self._now() - self.buffer_s
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def drain(self):
        if self.current is None:
            return
        self._flush_counter()  # a short last block is heard before the drain returns
        wait = self._cursor - self._now()
        while wait > 0:  # drained means the last sample has been heard, even if a sleep wakes early
            await asyncio.sleep(wait)
            wait = self._cursor - self._now()

    def close(self):
        """The end of what was written: the last sample is heard when the cursor runs out."""
        playback = self.current
        if playback is None:
            return
        self._flush_counter()
        self._finish(playback, "closed", max(self._now(), self._cursor))

    def _flush_counter(self):
        extra = self._counter.flush()
        self.current.samples += extra
        if self.current.rate:
            self._cursor += extra / float(self.current.rate)

    def stop(self):
        playback = self.current
        if playback is None:
            return
        self._finish(playback, "stopped", self._now())

    def set_volume(self, volume):
        self.volume = volume
        if self.current is not None:
            self.current.volumes.append((self._now(), volume))

    async def self_test(self, level_dbfs, ms):
        """The periodic test: waits the tone's length and records it in ``selftests``
        (true time s, dBFS, ms); fails with ``selftest_error`` when a test sets it (a
        simulated broken sink)."""
        self.selftests.append((self._now(), level_dbfs, ms))
        if self.selftest_error:
            raise SinkError(self.selftest_error)
        await asyncio.sleep(ms / 1000)

    def _finish(self, playback, how, ended_true):
        playback.how = how
        playback.ended_true = ended_true
        if self.clock is not None:
            playback.ended_local = self._local_ms() + (ended_true - self._now()) * 1000.0
        else:
            playback.ended_local = ended_true * 1000.0
        self.current = None
        self._counter = None

