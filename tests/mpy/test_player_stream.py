"""The player's live path (firmware/player.py ``_play_stream``): where its first sample falls.

A receiver that reaches a stream late (the amplifier's settling after the ``stream`` command,
a busy loop) writes its first frame after that frame's start. It must be heard from the sample
due at that moment, so it is in step with its neighbours; played whole, it is late by that much
for the whole stream, since every later frame queues behind it (the bench saw poles 11 ms, and
up to a frame, off the others all session).

The board's ticks stand still here (the stream time is what the test says it is); the network
clock is the ticks. Plain functions and asserts, CPython and MicroPython (make test-micropython).
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

from firmware.jitter import JitterBuffer
from firmware.live_entry import samples_past, units_past
from firmware.player import Player, sleep_ms
from firmware.schedule import KIND_STREAM, Item, StreamInfo

try:
    from test_core_shell import MemorySink  # MicroPython: tests/mpy is on the path
except ImportError:  # CPython: tests/mpy is a package
    from .test_core_shell import MemorySink

RATE = 16000
SAMPLES = 2020          # four ADPCM blocks: a live ADPCM frame, 126.25 ms
FRAME_MS = 126
NOW = 100000            # the board's ticks (and network time) while the test runs
PAYLOAD = bytes(1024)


class StillBoard:
    """Ticks that only move when the test moves them; a sink that logs what it was told."""

    def __init__(self):
        self.t = NOW
        self.sink = LogSink(self)

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, delta):
        return a + delta


class LogSink(MemorySink):
    """test_core_shell's sink, logging the tick of each write; ``stall_ms``: per write, how
    far the ticks move on while it is written."""

    def __init__(self, board):
        super().__init__()
        self.board = board
        self.stall_ms = []

    def open(self, codec, rate, skip_samples=0):
        self.log.append(("open", codec, rate, skip_samples))

    async def write(self, buf):
        self.log.append(("write", self.board.t, len(buf)))
        if self.stall_ms:
            self.board.t += self.stall_ms.pop(0)
        await asyncio.sleep(0)


class SameClock:
    """Network time is the ticks (a synced clock with no error)."""

    def __init__(self, board):
        self.board = board

    def now(self):
        return self.board.t

    def local_ms(self, network_ms):
        return network_ms

    def network_ms(self, local_ms):
        return local_ms


async def play_frames(first_play_at, count=2, stall_ms=()):
    """A stream of ``count`` frames, the first due at ``first_play_at``, played from ``NOW``
    (the ticks move on by ``stall_ms[i]`` during write i): the sink's log."""
    board = StillBoard()
    board.sink.stall_ms = list(stall_ms)
    clock = SameClock(board)
    done = []
    player = Player(board, clock, clock, None, 500, lambda item, error: done.append(error))
    jitter = JitterBuffer(4, len(PAYLOAD))
    jitter.reset(RATE)
    for seq in range(count):
        assert jitter.push(seq, first_play_at + seq * FRAME_MS, SAMPLES, seq == count - 1,
                           PAYLOAD, NOW)
    info = StreamInfo("s1", 1, None, "adpcm", RATE, None, "t", NOW)
    item = Item("live", KIND_STREAM, None, None, 3, None, {}, NOW, 1, info)
    player.start(item, 0, 100, NOW, jitter)
    for _ in range(200):
        if done:
            break
        await sleep_ms(1)
    assert done == [None], done
    return [e for e in board.sink.log if e[0] != "volume"]


async def test_a_first_frame_written_late_is_heard_from_the_sample_due_now():
    late_ms = 50  # the first frame began 50 ms before the player could write it
    log = await play_frames(NOW - late_ms)
    opened = log[0]
    assert opened[:3] == ("open", "adpcm", RATE), log
    skip = opened[3]
    # Written at NOW, its first sample heard is the one due at NOW, not the frame's first.
    assert log[1] == ("write", NOW, len(PAYLOAD)), log
    assert skip == late_ms * RATE // 1000, log
    # The second frame queues behind the first as ever: the whole stream is in step.
    assert [e[0] for e in log] == ["open", "write", "write", "close"], log


async def test_a_first_frame_written_on_time_is_heard_whole():
    log = await play_frames(NOW)
    assert log[0] == ("open", "adpcm", RATE, 0), log
    assert [e[0] for e in log] == ["open", "write", "write", "close"], log


async def test_a_frame_late_into_a_dry_sink_is_entered_at_its_next_block():
    # The first frame plays on time; then the loop (or the network) stalls 60 ms past its
    # end: the sink has run dry when the second frame is written. The blocks of it whose time
    # has passed (two ADPCM blocks cover 60 ms) are not played, the rest is written at its own
    # time, and the third frame queues behind it: the stream stays in step.
    log = await play_frames(NOW, count=3, stall_ms=(FRAME_MS + 60,))
    assert log[0] == ("open", "adpcm", RATE, 0), log
    writes = [e[2] for e in log if e[0] == "write"]
    assert writes == [len(PAYLOAD), len(PAYLOAD) - 2 * 256, len(PAYLOAD)], log


def test_units_past_are_whole_blocks_or_mpeg_frames():
    adpcm = bytes(4 * 256)  # four 505-sample blocks
    assert units_past(adpcm, "adpcm", 0) == (0, 0)
    assert units_past(adpcm, "adpcm", 1) == (256, 505)
    assert units_past(adpcm, "adpcm", 960) == (512, 1010)
    assert units_past(adpcm, "adpcm", 4 * 505) == (1024, 2020)  # none left
    # Two MPEG-2 Layer III frames, 144 bytes each (32 kbit/s, 16 kHz, 576 samples).
    mp3 = (bytes([0xFF, 0xF3, 0x48, 0xC4]) + bytes(140)) * 2
    assert units_past(mp3, "mp3", 100) == (144, 576)
    assert units_past(mp3, "mp3", 577) == (288, 1152)


def test_samples_past_is_what_a_late_start_drops():
    jitter = JitterBuffer(2, 16)
    jitter.reset(RATE)
    jitter.push(0, 5000, SAMPLES, False, bytes(16), 5000)
    frame = jitter.pop_at(0)
    assert samples_past(frame, -3, RATE) == 0          # early: nothing past
    assert samples_past(frame, 0, RATE) == 0           # on time: heard whole
    assert samples_past(frame, 10, RATE) == 160        # 10 ms late: 10 ms of samples
    assert samples_past(frame, FRAME_MS, RATE) == SAMPLES  # over: all of it
