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
from firmware.player import Player, sleep_ms
from firmware.schedule import KIND_STREAM, Item, StreamInfo

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


class LogSink:
    codecs = ("adpcm",)
    name = "log"

    def __init__(self, board):
        self.board = board
        self.log = []

    def open(self, codec, rate, skip_samples=0):
        self.log.append(("open", codec, rate, skip_samples))

    async def write(self, buf):
        self.log.append(("write", self.board.t, len(buf)))
        await asyncio.sleep(0)

    async def drain(self):
        await asyncio.sleep(0)

    def close(self):
        self.log.append(("close",))

    def stop(self):
        self.log.append(("stop",))

    def set_volume(self, volume):
        pass


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


async def play_two_frames(first_play_at):
    """A stream of two frames, the first due at ``first_play_at``, played at ``NOW``: the
    sink's log."""
    board = StillBoard()
    clock = SameClock(board)
    done = []
    player = Player(board, clock, clock, None, 500, lambda item, error: done.append(error))
    jitter = JitterBuffer(4, len(PAYLOAD))
    jitter.reset(RATE)
    for seq in (0, 1):
        assert jitter.push(seq, first_play_at + seq * FRAME_MS, SAMPLES, seq == 1, PAYLOAD, NOW)
    info = StreamInfo("s1", 1, None, "adpcm", RATE, None, "t", NOW)
    item = Item("live", KIND_STREAM, None, None, 3, None, {}, NOW, 1, info)
    player.start(item, 0, 100, NOW, jitter)
    for _ in range(200):
        if done:
            break
        await sleep_ms(1)
    assert done == [None], done
    return board.sink.log


async def test_a_first_frame_written_late_is_heard_from_the_sample_due_now():
    late_ms = 50  # the first frame began 50 ms before the player could write it
    log = await play_two_frames(NOW - late_ms)
    opened = log[0]
    assert opened[:3] == ("open", "adpcm", RATE), log
    skip = opened[3]
    # Written at NOW, its first sample heard is the one due at NOW, not the frame's first.
    assert log[1] == ("write", NOW, len(PAYLOAD)), log
    assert skip == late_ms * RATE // 1000, log
    # The second frame queues behind the first as ever: the whole stream is in step.
    assert [e[0] for e in log] == ["open", "write", "write", "close"], log


async def test_a_first_frame_written_on_time_is_heard_whole():
    log = await play_two_frames(NOW)
    assert log[0] == ("open", "adpcm", RATE, 0), log
    assert [e[0] for e in log] == ["open", "write", "write", "close"], log


def test_samples_past_is_what_a_late_start_drops():
    from firmware.jitter import samples_past

    jitter = JitterBuffer(2, 16)
    jitter.reset(RATE)
    jitter.push(0, 5000, SAMPLES, False, bytes(16), 5000)
    frame = jitter.pop_at(0)
    assert samples_past(frame, -3, RATE) == 0          # early: nothing past
    assert samples_past(frame, 0, RATE) == 0           # on time: heard whole
    assert samples_past(frame, 10, RATE) == 160        # 10 ms late: 10 ms of samples
    assert samples_past(frame, FRAME_MS, RATE) == SAMPLES  # over: all of it
