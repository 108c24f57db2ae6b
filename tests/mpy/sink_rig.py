"""The audio sinks on a fake board, and what their play paths allocate per frame.

Shared by tests/mpy/test_sinks.py (asserts) and bench/mp_sink_alloc.py (prints the figures).
Not a test module. Runs under CPython (where ``gc.mem_alloc`` does not exist and allocation is
not measured), the WebAssembly MicroPython and the ESP32-model MicroPython.

Allocation per frame is measured as a difference: the bytes a play of ``2n`` frames allocated
minus those of a play of ``n`` frames, over ``n``, with the collector off. What every play costs
once (the coroutine of the loop, the views a FrameReader makes for each frame length, a short
last read) cancels out; what remains is what each frame costs.
"""

import gc
import sys

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

try:
    import fake_machine
except ImportError:  # CPython: pytest imports tests/mpy as a package
    from . import fake_machine

SINK_MODULES = ("firmware.hw.vs1053", "firmware.hw.i2s_adpcm")
# MPEG-2 Layer III, 32 kbit/s, 16 kHz, mono, no padding: 144-byte frames of 576 samples.
MP3_HEADER = b"\xff\xf3\x48\xc4"
MP3_FRAME_BYTES = 144
MP3_RATE = 16000
ADPCM_BLOCK = 256  # 505 samples
ADPCM_RATE = 16000
# The default pins (firmware/config.py DEFAULT_PINS).
VS_PINS = (18, 23, 19, 5, 32, 4, 33)  # sck, mosi, miso, xcs, xdcs, dreq, reset
I2S_PINS = (26, 27, 22)               # sck, ws, sd

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


def measures_allocation():
    """Whether ``gc.mem_alloc()`` deltas say what the board would allocate: under the
    ESP32-model MicroPython, yes. Not under CPython (no ``mem_alloc``) nor the WebAssembly
    port: its asyncio runs on JavaScript timers that allocate at every sleep, and its build
    allocates a slice object for ``buf[a:b] = x`` (measured), which the ESP32 port does not."""
    return hasattr(gc, "mem_alloc") and sys.platform != "webassembly"


def load_sinks():
    """``(vs1053, i2s_adpcm)``: the sink modules imported against fake_machine. The fake is
    ``sys.modules["machine"]`` only during the import, so it leaks into no other test."""
    saved = sys.modules.get("machine")
    sys.modules["machine"] = fake_machine
    try:
        for name in SINK_MODULES:
            if name in sys.modules:
                del sys.modules[name]
        for name in SINK_MODULES:
            __import__(name)
        return sys.modules[SINK_MODULES[0]], sys.modules[SINK_MODULES[1]]
    finally:
        if saved is None:
            del sys.modules["machine"]
        else:
            sys.modules["machine"] = saved


def new_vs1053(vs1053, **chip_options):
    """A fresh board with a VS1053 chip (``fake_machine.VS1053Chip`` options) and the sink on
    it; ``(sink, chip)``."""
    fake_machine.reset_board()
    chip = fake_machine.VS1053Chip(xcs=VS_PINS[3], xdcs=VS_PINS[4], dreq=VS_PINS[5],
                                   reset=VS_PINS[6], **chip_options)
    return vs1053.VS1053Sink(2, *VS_PINS), chip


def new_i2s(i2s_adpcm):
    fake_machine.reset_board()
    return i2s_adpcm.I2SAdpcmSink(0, *I2S_PINS)


def mp3_frames(count):
    """``count`` frames of the test stream, each with its own fill byte."""
    out = bytearray(count * MP3_FRAME_BYTES)  # made in place: it fits a board's small heap
    for i in range(count):
        at = i * MP3_FRAME_BYTES
        out[at:at + 4] = MP3_HEADER
        for j in range(at + 4, at + MP3_FRAME_BYTES):
            out[j] = i & 0xFF
    return out


def adpcm_blocks(count):
    """``count`` blocks of a tone-ish code pattern (the decoder does real work)."""
    out = bytearray(count * ADPCM_BLOCK)
    for i in range(count):
        at = i * ADPCM_BLOCK
        out[at:at + 4] = b"\x10\x00\x14\x00"  # first sample 16, step index 20
        for j in range(4, ADPCM_BLOCK):
            out[at + j] = ((j - 4) * 37 + i) & 0xFF
    return out


def views(data, size):
    """Memoryviews of each ``size`` bytes of ``data``, made before any measuring."""
    mv = memoryview(data)
    return [mv[i:i + size] for i in range(0, len(data), size)]


class LatenessProbe:
    """A task that sleeps ``period_ms`` again and again and notes how late it wakes: what a
    blocked event loop does to everything else on the board."""

    def __init__(self, period_ms=5):
        self.period_ms = period_ms
        self.max_late_ms = 0
        self.wakeups = 0

    async def run(self):
        sleep = getattr(asyncio, "sleep_ms", None)
        while True:
            start = ticks_ms()
            if sleep is not None:
                await sleep(self.period_ms)
            else:
                await asyncio.sleep(self.period_ms / 1000)
            late = ticks_diff(ticks_ms(), start) - self.period_ms
            if late > self.max_late_ms:
                self.max_late_ms = late
            self.wakeups += 1


async def with_hardware(coro):
    """Run ``coro`` while the fake board's background work (the I2S driver's task) runs."""
    hardware = asyncio.create_task(fake_machine.run_hardware())
    try:
        return await coro
    finally:
        hardware.cancel()
        try:
            await hardware
        except asyncio.CancelledError:
            pass


async def _allocated(coro):
    """Bytes allocated while awaiting ``coro``, the collector off (the coroutine itself made
    before, so its own frame is not counted)."""
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        await coro
        return gc.mem_alloc() - before
    finally:
        gc.enable()


async def _write_all(sink, frames):
    for frame in frames:
        await sink.write(frame)


async def _per_frame(play, n):
    """``play(count)`` returns a coroutine playing ``count`` frames; bytes allocated per
    frame, from a play of ``n`` frames and one of ``2 n`` (after a warm-up play)."""
    await play(n)  # warm-up: first imports, dict growth, the asyncio machinery
    once = await _allocated(play(n))
    twice = await _allocated(play(2 * n))
    return (twice - once) / n


async def vs1053_write_per_frame(vs1053, n=40):
    sink, chip = new_vs1053(vs1053, speed=20, log=False)
    frames = views(mp3_frames(2 * n), MP3_FRAME_BYTES)

    def play(count):
        sink.open("mp3", MP3_RATE, 0)
        return _write_all(sink, frames[:count])

    return await _per_frame(play, n)


async def i2s_write_per_frame(i2s_adpcm, n=40):
    sink = new_i2s(i2s_adpcm)
    sink.set_volume(60)  # the I2S.shift path too
    blocks = views(adpcm_blocks(2 * n), ADPCM_BLOCK)

    def play(count):
        sink.open("adpcm", ADPCM_RATE, 0)
        return _write_all(sink, blocks[:count])

    return await with_hardware(_per_frame(play, n))


class _Board:
    """What ``Player``'s file loops use of the board: its sink."""

    def __init__(self, sink):
        self.sink = sink


def new_player(sink):
    """The receiver's player (firmware/player.py) around ``sink``, with its own play buffer."""
    from firmware.player import Player

    return Player(_Board(sink), None, None, None, 0, None)


def _write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


async def shell_mp3_per_frame(vs1053, path, n=40):
    """The player's MP3 file loop (FrameReader, then the VS1053 sink), per frame."""
    from firmware.mp3 import FrameReader

    sink, chip = new_vs1053(vs1053, speed=20, log=False)
    player = new_player(sink)
    files = {}
    for count in (n, 2 * n):
        files[count] = "%s-%d.mp3" % (path, count)
        _write_file(files[count], mp3_frames(count))
    opened = []

    def play(count):
        f = open(files[count], "rb")
        opened.append(f)
        return player._stream_mp3(FrameReader(f, player._buf), 0, MP3_RATE, 100)

    try:
        return await _per_frame(play, n)
    finally:
        for f in opened:
            f.close()
        _remove(files)


async def shell_adpcm_per_frame(i2s_adpcm, path, n=48):
    """The player's ADPCM file loop (2 KB reads, then the I2S sink), per block. Both files end
    with the same short read (a tail of 3 blocks), which is per play."""
    sink = new_i2s(i2s_adpcm)
    player = new_player(sink)
    files = {}
    for count in (n, 2 * n):
        files[count] = "%s-%d.adpcm" % (path, count)
        _write_file(files[count], adpcm_blocks(count + 3))
    opened = []

    def play(count):
        f = open(files[count], "rb")
        opened.append(f)
        return player._stream_adpcm(f, 0, ADPCM_RATE, 100, ADPCM_BLOCK)

    try:
        return await with_hardware(_per_frame(play, n))
    finally:
        for f in opened:
            f.close()
        _remove(files)


def _remove(files):
    import os

    for name in files.values():
        try:
            os.remove(name)
        except OSError:
            pass


def preallocated(make):
    """Bytes of heap an object keeps from its construction (``make()``), after a collection."""
    gc.collect()
    before = gc.mem_alloc()
    kept = make()
    gc.collect()
    after = gc.mem_alloc()
    return after - before, kept
