"""The dead-air detector, sans-IO: ticks of a relay's feed in, starts and ends of dead air out.
Times are given, never read from a clock."""

import math
import struct

import pytest

from headend.live.deadair import (
    ON_AIR,
    SILENT,
    STALLED,
    DeadAirDetector,
    FallbackLoop,
    rms_dbfs,
)

TICK = 0.02
SAMPLES = 320


def tone(amplitude):
    return struct.pack("<%dh" % SAMPLES, *(int(amplitude * math.sin(2 * math.pi * 440 * i
                                                                    / 16000))
                                           for i in range(SAMPLES)))


LOUD = tone(8000)      # about -15 dBFS
QUIET = tone(50)       # about -59 dBFS: below the -50 dBFS threshold
SILENCE = bytes(2 * SAMPLES)


def run(detector, ticks, start=0.0, arrived=None):
    """Feed ``ticks`` (PCM or None each) from ``start``; the changes with their tick index."""
    changes = []
    for k, pcm in enumerate(ticks):
        now = start + k * TICK
        change = detector.feed(now, pcm, arrived(now, pcm) if arrived else None)
        if change is not None:
            changes.append((k, change))
    return changes


def detector():
    return DeadAirDetector(after_s=5.0, threshold_dbfs=-50.0, resume_s=1.0)


def test_rms_in_dbfs():
    assert rms_dbfs(SILENCE) == -math.inf
    assert rms_dbfs(b"") == -math.inf
    assert rms_dbfs(LOUD) == pytest.approx(20 * math.log10(8000 / 32768 / math.sqrt(2)), abs=0.1)
    assert rms_dbfs(QUIET) < -50 < rms_dbfs(LOUD)


def test_a_steady_source_is_never_dead_air():
    d = detector()
    assert run(d, [LOUD] * 1000) == []
    assert d.state == ON_AIR


def test_a_stall_is_dead_air_after_the_configured_time_and_sound_brings_it_back():
    d = detector()
    ticks = [LOUD] * 100 + [None] * 400 + [LOUD] * 100
    changes = run(d, ticks)
    (k1, dead), (k2, back) = changes
    assert dead.dead and dead.reason == STALLED
    assert k1 == 99 + 250  # 5 s of ticks after the last audio
    assert dead.since == pytest.approx(99 * TICK)
    assert not back.dead and back.reason == STALLED
    assert k2 == 500 + 50  # 1 s of audio after it came back (no gap: the stall's ticks count)


def test_a_stall_counts_from_when_the_source_last_sent_bytes_not_from_the_feed():
    # The feed's buffer kept it playing for 2 s after the network went quiet at 1 s.
    d = detector()
    ticks = [LOUD] * 150 + [None] * 400
    changes = run(d, ticks, arrived=lambda now, pcm: min(now, 1.0))
    ((k, dead),) = changes
    assert dead.reason == STALLED and k * TICK == pytest.approx(6.0)


def test_silence_below_the_threshold_is_dead_air_a_short_pause_is_not():
    d = detector()
    pause = [LOUD] * 50 + [QUIET] * 200 + [LOUD] * 50  # 4 s: under the 5 s
    assert run(d, pause) == []
    d = detector()
    changes = run(d, [LOUD] * 50 + [SILENCE] * 300 + [LOUD] * 60)
    (k1, dead), (k2, back) = changes
    assert dead.reason == SILENT and k1 == 49 + 250
    # Back once 80 % of the last second (the resume time) was sound.
    assert not back.dead and 350 + 0.8 * 50 - 1 <= k2 <= 350 + 0.8 * 50 + 1


def test_a_source_that_never_starts_is_dead_air():
    d = detector()
    ((k, dead),) = run(d, [None] * 300)
    assert dead.reason == STALLED and k == 250


def test_coming_back_needs_sound_without_a_gap_for_the_resume_time():
    d = detector()
    run(d, [None] * 260)
    assert d.dead
    # Sound with a gap every 0.8 s never counts as back; quiet audio does not either.
    flicker = ([LOUD] * 40 + [None]) * 5 + [QUIET] * 100
    assert run(d, flicker, start=260 * TICK) == []
    assert d.dead
    ((_, back),) = run(d, [LOUD] * 60, start=600 * TICK)
    assert not back.dead and d.state == ON_AIR


def test_the_fallback_loops_with_a_pause_and_restarts_at_each_episode():
    loop = FallbackLoop(b"\x01\x00" * 100, name="notice", rate=1000, pause_s=0.05)
    first = loop.take(120)
    assert first[:200] == b"\x01\x00" * 100 and first[200:] == bytes(40)
    again = loop.take(60)  # 30 samples of pause left, then the start of the next loop
    assert again[:60] == bytes(60) and again[60:] == b"\x01\x00" * 30
    loop.rewind()
    assert loop.take(10) == b"\x01\x00" * 10
