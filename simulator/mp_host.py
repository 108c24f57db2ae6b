"""The board of a receiver that runs as its own MicroPython process (``loaxa sim --runtime
micropython``): firmware/platform.py's ``Platform`` written for MicroPython.

It runs inside the unix port built with the ESP32's numbers (tools/mpbuild.py), next to the
same firmware/ and protocol/ (source or .mpy) that go onto a pole, so the receiver computes with
float32 and 31-bit small ints, on a heap capped like the board's, with MicroPython's own asyncio,
sockets and filesystem. What a real board would have but this process cannot (pins, DAC, radio)
is modelled here, and reported to the parent process (simulator/mp_runtime.py) as JSON lines on
stdout, each starting with ``@``:

- the clock: a crystal ``drift_ppm`` fast or slow and an RTC ``offset_ms`` wrong, counted in
  integer ms from the host's true time (``time.time_ns``), with ``ticks_ms`` wrapping at 2**30
  and starting ``NEAR_WRAP_MS`` before the wrap, as the CPython host does;
- the link: every connection goes through the parent's ``LinkPath`` relay (one line naming the
  destination, one byte of answer), so cuts, black holes, latency and loss apply as for an
  in-process receiver;
- the sink: ``MpRecordingSink`` keeps time like a DMA-fed DAC and reports each playback (start
  and end by true time, samples, SHA-256 of what was written, gaps, volumes);
- sensors (supply, temperature, amplifier fault, RSSI) are plain attributes the parent may set.

Report lines (``k`` names the kind; true times ``t`` in µs since the epoch)::

    {"k": "open", "n", "codec", "rate", "skip", "t", "local", "ctx"}   a playback opened
    {"k": "start", "n", "t", "local"}                            its first sample heard
    {"k": "gap", "n", "t", "us"}                                 an underrun
    {"k": "vol", "n", "t", "v"}                                  a volume change
    {"k": "end", "n", "t", "local", "how", "bytes", "writes", "samples", "sha"}
    {"k": "amp", "t", "on"} · {"k": "mute", "t", "on"} · {"k": "led", "t", "p"} · {"k": "reboot", "t"}
"""

import errno
import gc
import json
import random
import time

try:
    import asyncio
except ImportError:
    import uasyncio as asyncio

from firmware.platform import Platform, Sink
from simulator.sink_count import counter_for

TICKS_PERIOD = 1 << 30
TICKS_MASK = TICKS_PERIOD - 1
TICKS_HALF = TICKS_PERIOD >> 1
NEAR_WRAP_MS = 3000
DEFAULT_BUFFER_MS = 120


def true_us():
    """The host's clock, µs since the Unix epoch: the simulator's true time."""
    return time.time_ns() // 1000


def report(obj):
    print("@" + json.dumps(obj))


class MpClock:
    """One board's oscillator, in integer ms (the drift in parts per billion)."""

    def __init__(self, offset_ms=0, drift_ppm=0, ticks_start=0):
        self.offset_ms = int(offset_ms)
        self.drift_ppb = int(drift_ppm * 1000)
        self._created_us = true_us()
        self._ticks_start = ticks_start & TICKS_MASK

    def elapsed_local_ms(self):
        elapsed_us = true_us() - self._created_us
        return (elapsed_us + elapsed_us * self.drift_ppb // 1000000000) // 1000

    def ticks_ms(self):
        return (self._ticks_start + self.elapsed_local_ms()) & TICKS_MASK

    def rtc_ms(self):
        return self._created_us // 1000 + self.offset_ms + self.elapsed_local_ms()


class MpRecordingSink(Sink):
    """Records playbacks instead of making sound; writes are paced at real time."""

    name = "recorder"

    def __init__(self, codecs, clock, keep_dir=None, buffer_ms=DEFAULT_BUFFER_MS):
        self.codecs = tuple(codecs)
        self.clock = clock
        self.keep_dir = keep_dir   # write what was played to keep_dir/play-N.bin
        self.buffer_us = buffer_ms * 1000
        self.context = None        # callable: what the firmware says it plays
        self.volume = 100
        self.count = 0
        self.current = None        # number of the open playback
        self._counter = None
        self._rate = 0
        self._skip = 0
        self._started = False
        self._cursor = 0           # true µs when everything written so far has been heard
        self._samples = 0
        self._bytes = 0
        self._writes = 0
        self._sha = None
        self._keep = None

    async def self_test(self, level_dbfs, ms):
        """The periodic test: the tone's length, reported."""
        report({"k": "selftest", "t": true_us(), "lvl": level_dbfs, "ms": ms})
        await asyncio.sleep(ms / 1000)

    def open(self, codec, rate, skip_samples=0):
        if codec not in self.codecs:
            raise ValueError("this sink does not decode %s" % codec)
        if self.current is not None:
            self.stop()
        import hashlib

        self.count += 1
        self.current = self.count
        self._counter = counter_for(codec)
        self._rate = rate
        self._skip = skip_samples
        self._started = False
        self._samples = self._bytes = self._writes = 0
        self._sha = hashlib.sha256()
        if self.keep_dir:
            self._keep = open("%s/play-%d.bin" % (self.keep_dir, self.count), "wb")
        context = None
        if self.context is not None:
            try:
                context = self.context()
            except Exception:
                context = None
        report({"k": "open", "n": self.count, "codec": codec, "rate": rate,
                "skip": skip_samples, "t": true_us(), "local": self.clock.rtc_ms(),
                "ctx": context})
        report({"k": "vol", "n": self.count, "t": true_us(), "v": self.volume})

    async def write(self, buf):
        if self.current is None:
            raise ValueError("write on a closed sink")
        now = true_us()
        if not self._started:
            self._started = True
            self._cursor = now - self._skip * 1000000 // self._rate  # skipped: not heard
            report({"k": "start", "n": self.current, "t": now, "local": self.clock.rtc_ms()})
        elif now > self._cursor + 1000:
            report({"k": "gap", "n": self.current, "t": self._cursor, "us": now - self._cursor})
            self._cursor = now
        self._bytes += len(buf)
        self._writes += 1
        self._sha.update(buf)
        if self._keep is not None:
            self._keep.write(buf)
        samples = self._counter.samples_in(buf)
        self._samples += samples
        self._cursor += samples * 1000000 // self._rate
        ahead = self._cursor - true_us() - self.buffer_us
        if ahead > 0:
            await asyncio.sleep_ms(ahead // 1000)

    async def drain(self):
        if self.current is not None:
            self._flush_counter()  # a short last block is heard before the drain returns
            # Drained means the last sample has been heard. A loop, not one sleep: sleep_ms
            # counts whole ticks of ticks_ms, so one sleep can wake up to a ms early.
            wait = self._cursor - true_us()
            while wait > 0:
                await asyncio.sleep_ms((wait + 999) // 1000)
                wait = self._cursor - true_us()

    def close(self):
        if self.current is None:
            return
        self._flush_counter()
        now = true_us()
        self._finish("closed", now if now > self._cursor else self._cursor)

    def stop(self):
        if self.current is not None:
            self._finish("stopped", true_us())

    def _flush_counter(self):
        extra = self._counter.flush()
        self._samples += extra
        self._cursor += extra * 1000000 // self._rate

    def set_volume(self, volume):
        self.volume = volume
        if self.current is not None:
            report({"k": "vol", "n": self.current, "t": true_us(), "v": volume})

    def _finish(self, how, ended_us):
        import binascii

        if self._keep is not None:
            self._keep.close()
            self._keep = None
        report({"k": "end", "n": self.current, "t": ended_us,
                "local": self.clock.rtc_ms() + (ended_us - true_us()) // 1000, "how": how,
                "bytes": self._bytes, "writes": self._writes, "samples": self._samples,
                "sha": binascii.hexlify(self._sha.digest()).decode()})
        self.current = None
        self._counter = None
        self._sha = None


class MpHostPlatform(Platform):
    """A simulated board inside a MicroPython process. ``sim``: the parent's settings."""

    def __init__(self, sim):
        self.device_id = sim["id"]
        self.storage_dir = sim["storage_dir"]
        ticks_start = TICKS_PERIOD - NEAR_WRAP_MS if sim.get("ticks_near_wrap", True) else 0
        self.clock = MpClock(sim.get("offset_ms", 0), sim.get("drift_ppm", 0), ticks_start)
        self.relay_port = sim.get("relay_port")
        self.sink = MpRecordingSink(sim["codecs"], self.clock,
                                    keep_dir=self.storage_dir if sim.get("keep_bytes") else None)
        random.seed(sim.get("seed", 0))
        self.link_type = sim.get("link_type", "wifi")
        # Settable by the parent ({"do": "set", ...}): what the sensors read.
        self.rssi = -61
        self.mains = 1
        self.dc_volts = 13.6
        self.temperature_c = 38.5
        self.amp_fault = False
        self.amp_on = False
        self.led_pattern = "off"
        self.watchdog_feeds = 0
        self.link_refusals = 0
        for name in sim.get("sensors") or {}:
            setattr(self, name, sim["sensors"][name])

    def ticks_ms(self):
        return self.clock.ticks_ms()

    def ticks_diff(self, a, b):
        return ((a - b + TICKS_HALF) & TICKS_MASK) - TICKS_HALF

    def ticks_add(self, a, delta):
        return (a + delta) & TICKS_MASK

    def rtc_ms(self):
        return self.clock.rtc_ms()

    def set_rtc_ms(self, ms):
        self.clock.offset_ms += ms - self.clock.rtc_ms()

    async def open_connection(self, host, port, ssl=None):
        if self.relay_port is None:
            return await asyncio.open_connection(host, port)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.relay_port)
        writer.write(("%s %d\n" % (host, port)).encode())
        await writer.drain()
        answer = await reader.read(1)
        if answer != b"+":
            writer.close()
            self.link_refusals += 1
            raise OSError(errno.ECONNREFUSED)
        return reader, writer

    async def link_up(self):
        return True

    def link_info(self):
        return {"type": self.link_type, "rssi": self.rssi}


    def amplifier(self, on):
        on = bool(on)
        if on != self.amp_on:
            self.amp_on = on
            report({"k": "amp", "t": true_us(), "on": on})

    def amplifier_mute(self, on):
        report({"k": "mute", "t": true_us(), "on": bool(on)})

    def amplifier_fault(self):
        return self.amp_fault

    def amplifier_state(self):
        return self.amp_on

    def led(self, pattern):
        if pattern != self.led_pattern:
            self.led_pattern = pattern
            report({"k": "led", "t": true_us(), "p": pattern})

    def supply(self):
        return {"mains": self.mains, "dc": self.dc_volts}

    def temperature(self):
        return self.temperature_c

    def mem_free(self):
        return gc.mem_free()

    def random_below(self, n):
        return random.randrange(n) if n > 0 else 0

    def feed_watchdog(self):
        self.watchdog_feeds += 1

    def reboot(self):
        report({"k": "reboot", "t": true_us()})
        raise SystemExit(3)  # the parent starts this board again on the same flash
