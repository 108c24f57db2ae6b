"""Simulated board clocks: a crystal that runs fast or slow, and MicroPython's wrapping ticks.

True time is the host's ``time.time()``. A board's oscillator runs at ``1 + ppm/1e6`` times true
speed from the moment the board was created, and its RTC was set ``offset_ms`` wrong:

    local_ms = true_ms + offset_ms + (true_ms - created_ms) * ppm / 1e6

(The drift is applied from creation, not from 1970: 100 ppm of 56 years would be two days.)
``ticks_ms`` counts the same oscillator modulo 2**30, as MicroPython's does, and can start just
before the wrap point so the firmware's wrap handling is exercised in every run.
"""

import time

TICKS_PERIOD = 1 << 30
TICKS_MASK = TICKS_PERIOD - 1
TICKS_HALF = TICKS_PERIOD >> 1


def true_ms():
    """Milliseconds since the Unix epoch by the host's clock: the simulator's "true" time."""
    return time.time() * 1000.0


def ticks_diff(a, b):
    """MicroPython's ``time.ticks_diff``: signed ``a - b`` on the wrapping counter."""
    return ((a - b + TICKS_HALF) & TICKS_MASK) - TICKS_HALF


def ticks_add(a, delta):
    return (a + delta) & TICKS_MASK


class DriftingClock:
    """One board's oscillator. ``ticks_start`` is the ticks value at creation."""

    def __init__(self, offset_ms=0.0, drift_ppm=0.0, ticks_start=0, now_ms=true_ms):
        self.offset_ms = float(offset_ms)
        self.drift_ppm = float(drift_ppm)
        self._now = now_ms
        self._created = now_ms()
        self._ticks_start = int(ticks_start) & TICKS_MASK

    def elapsed_local_ms(self):
        """Milliseconds the board has counted since it was created."""
        return (self._now() - self._created) * (1.0 + self.drift_ppm / 1e6)

    def local_ms(self):
        """The board's wall clock (its RTC), ms since the epoch, as a float."""
        return self._created + self.offset_ms + self.elapsed_local_ms()

    def ticks_ms(self):
        return (self._ticks_start + int(self.elapsed_local_ms())) & TICKS_MASK

    def local_to_true(self, local):
        """The true time at which this board's wall clock reads ``local``."""
        return self._created + (local - self._created - self.offset_ms) / (1.0 + self.drift_ppm / 1e6)
