"""The simulated board clock: RTC offset, crystal drift and MicroPython's wrapping ticks."""

from simulator.clock import TICKS_PERIOD, DriftingClock, ticks_add, ticks_diff


class FakeTime:
    def __init__(self, ms):
        self.ms = ms

    def __call__(self):
        return self.ms


def test_ticks_diff_is_signed_across_the_wrap():
    just_before = TICKS_PERIOD - 10
    just_after = ticks_add(just_before, 25)
    assert just_after == 15
    assert ticks_diff(just_after, just_before) == 25
    assert ticks_diff(just_before, just_after) == -25


def test_rtc_is_off_by_the_offset_and_gains_by_the_drift():
    now = FakeTime(1_700_000_000_000.0)
    clock = DriftingClock(offset_ms=-1500, drift_ppm=100, now_ms=now)
    assert clock.local_ms() == now.ms - 1500
    now.ms += 1_000_000  # 1000 s later a 100 ppm crystal is 100 ms ahead
    assert abs(clock.local_ms() - (now.ms - 1500 + 100)) < 1e-6


def test_local_to_true_inverts_the_board_clock():
    now = FakeTime(1_700_000_000_000.0)
    clock = DriftingClock(offset_ms=2000, drift_ppm=-80, now_ms=now)
    now.ms += 12345
    assert abs(clock.local_to_true(clock.local_ms()) - now.ms) < 1e-3


def test_ticks_start_near_the_wrap_and_wrap_like_micropython():
    now = FakeTime(0.0)
    clock = DriftingClock(ticks_start=TICKS_PERIOD - 100, now_ms=now)
    before = clock.ticks_ms()
    now.ms = 250
    after = clock.ticks_ms()
    assert after < before  # the raw counter wrapped ...
    assert ticks_diff(after, before) == 250  # ... and ticks_diff still measures 250 ms
