"""The live-stream jitter buffer: order by sequence, duplicates, late frames, gaps, overflow.

Plain asserts, runs under CPython and MicroPython.
"""

from firmware.jitter import JitterBuffer, seq_before

FRAME_MS = 100
SAMPLES = 1600  # 100 ms at 16 kHz


def buf(slots=8):
    jb = JitterBuffer(slots, 64)
    jb.reset(16000)
    return jb


def push(jb, seq, now=0, last=False, base=1000):
    return jb.push(seq, base + seq * FRAME_MS, SAMPLES, last, bytes([seq & 0xFF]) * 10, now)


def test_frames_come_out_in_sequence_at_their_time():
    jb = buf()
    for seq in (2, 0, 3, 1):
        assert push(jb, seq)
    assert jb.next_play_at() == 1000
    assert jb.pop(999) is None
    out = []
    for now in range(1000, 1400, 100):
        f = jb.pop(now)
        out.append((f.seq, f.play_at, bytes(f.payload)))
    assert out == [(s, 1000 + s * 100, bytes([s]) * 10) for s in range(4)]


def test_duplicates_and_already_played_frames_are_dropped():
    jb = buf()
    push(jb, 0)
    push(jb, 1)
    assert not push(jb, 1)
    jb.pop(1000)
    assert not push(jb, 0)
    assert jb.stats["dup"] == 2 and len(jb) == 1


def test_late_frames_are_dropped_on_arrival_and_on_release():
    jb = buf()
    assert not push(jb, 0, now=1000 + FRAME_MS + 1)
    push(jb, 1, now=0)
    push(jb, 2, now=0)
    f = jb.pop(1100 + FRAME_MS + 1)  # frame 1 is over by then: skipped, 2 is on time
    assert f.seq == 2 and jb.stats["late"] == 2


def test_a_lost_frame_is_a_gap_of_its_own_length():
    jb = buf()
    for seq in (0, 1, 3):
        push(jb, seq)
    assert jb.pop(1000).seq == 0
    assert jb.pop(1100).seq == 1
    assert jb.pop(1200) is None  # frame 2's slot: silence
    f = jb.pop(1300)
    assert f.seq == 3 and f.play_at == 1300 and jb.stats["lost"] == 1


def test_overflow_drops_the_furthest_frame():
    jb = buf(slots=3)
    for seq in (0, 1, 3):
        push(jb, seq)
    assert push(jb, 2)           # comes before 3: 3 is dropped
    assert not push(jb, 4)       # would play last: refused
    assert jb.stats["overflow"] == 2
    assert jb.pop(1000).seq == 0 and jb.pop(1100).seq == 1 and jb.pop(1200).seq == 2


def test_oversize_payload_is_refused():
    jb = buf()
    assert not jb.push(0, 1000, SAMPLES, False, b"x" * 65, 0)
    assert jb.stats["oversize"] == 1


def test_sequence_numbers_wrap():
    assert seq_before(0xFFFFFFFF, 0) and not seq_before(0, 0xFFFFFFFF)
    jb = buf()
    jb.push(0xFFFFFFFF, 1000, SAMPLES, False, b"a", 0)
    jb.push(0, 1100, SAMPLES, False, b"b", 0)
    assert jb.pop(1000).seq == 0xFFFFFFFF
    assert jb.pop(1100).seq == 0 and jb.stats["lost"] == 0


def test_released_payload_stays_valid_until_the_next_pop():
    jb = buf(slots=1)
    push(jb, 0)
    f = jb.pop(1000)
    assert not push(jb, 1)           # the only slot is still lent out
    assert bytes(f.payload) == b"\x00" * 10
    assert jb.pop(1000) is None      # gives the slot back
    assert push(jb, 1)
