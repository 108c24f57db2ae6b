"""Receiver clocks: a monotonic local millisecond count and an estimate of network time.

Sans-IO and MicroPython-safe: the shell feeds in tick readings and time-sync samples, this module
only does arithmetic.

``TickExtender`` turns MicroPython's wrapping ``ticks_ms`` (it wraps at 2**30 ms, about 12 days)
into a count that never wraps: each reading adds ``ticks_diff(now, last)`` to a running total.
It must be read at least once per half wrap period (6 days); the heartbeat does that.

``ClockEstimator`` keeps NTP-style samples. For one exchange (t0 local send, t1 head-end receive,
t2 head-end send, t3 local receive)::

    offset = ((t1 - t0) + (t2 - t3)) // 2    network - local, at the midpoint (t0 + t3) // 2
    delay  = (t3 - t0) - (t2 - t1)           round trip spent on the network

All times are integer milliseconds. On the ESP32 a float is single precision: an epoch time in
ms (1.8e12) held in one is 131 s coarse, so no epoch value is ever a float here. Offsets
(network - local) are ints too; only the drift is a float, and it only ever multiplies a small
delta (ms since the sample in use), whose product is a few ms.

It keeps the last ``keep`` samples and trusts the one with the smallest delay (a queued packet
only ever adds delay, so the fastest exchange has the least asymmetry), penalising old samples a
little so a stale sample does not win forever. Drift (the local crystal's rate error, up to about
100 ppm on an ESP32) is estimated from two good samples far apart in time, so the estimate stays
right between syncs and while the link is down.
"""

# How much an old sample is penalised per ms of age, as if its offset could have drifted this
# fast: 200 ppm before drift is known (covers a 100 ppm crystal with margin), 20 ppm after.
_AGE_PENALTY_UNKNOWN = 2e-4
_AGE_PENALTY_KNOWN = 2e-5
# Drift is only computed from samples at least this far apart (ms): with a LAN error of a few
# ms, 120 s gives a rate error of a few tens of ppm at worst, and better as the span grows.
_MIN_DRIFT_SPAN_MS = 120000
# The drift anchor is re-based once the span exceeds this, so a temperature change is followed.
_MAX_DRIFT_SPAN_MS = 3600000
# While the anchor is younger than this, a faster exchange replaces it (the connect burst).
_ANCHOR_SETTLE_MS = 60000
# A drift beyond this means broken samples, not a crystal: ignore it.
_MAX_DRIFT = 1e-3


class TickExtender:
    """A monotonic ms count from a wrapping ticks counter (``ticks_ms``/``ticks_diff`` pair)."""

    def __init__(self, ticks_ms, ticks_diff, start_ms=0):
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._last = ticks_ms()
        self._ms = start_ms

    def now(self):
        t = self._ticks_ms()
        d = self._ticks_diff(t, self._last)
        if d > 0:
            self._ms += d
            self._last = t
        return self._ms


class ClockSample:
    __slots__ = ("local", "offset", "delay")

    def __init__(self, local, offset, delay):
        self.local = local
        self.offset = offset
        self.delay = delay


class ClockEstimator:
    """Network time from local time and back; ``synced`` once a time-sync sample was accepted."""

    def __init__(self, keep=8):
        self._keep = keep
        self._samples = []
        self._anchor = None
        self._base_local = 0
        self._base_offset = 0   # network - local at _base_local, int ms
        self.drift = 0.0        # d(offset)/d(local): -1e-4 means the local clock runs 100 ppm fast
        self.drift_known = False
        self.synced = False
        self.delay = None       # round trip of the sample in use, ms (error bound is delay / 2)

    # -- input ---------------------------------------------------------------------------

    def seed(self, local_ms, network_ms):
        """A first guess (the board's RTC) before any sync; ignored once synced."""
        if not self.synced:
            self._base_local = local_ms
            self._base_offset = network_ms - local_ms

    def add_sample(self, t0, t1, t2, t3):
        """Add one exchange; return False (and ignore it) if it cannot be right."""
        if t3 < t0 or t2 < t1:
            return False
        delay = (t3 - t0) - (t2 - t1)
        if delay < 0:
            # The head-end held the request longer than our round trip: clocks ran at very
            # different rates or the reply is forged/duplicated. Keep it out of the filter.
            return False
        sample = ClockSample((t0 + t3) // 2, ((t1 - t0) + (t2 - t3)) // 2, delay)
        self._samples.append(sample)
        if len(self._samples) > self._keep:
            self._samples.pop(0)
        self._update_drift(sample)
        self._choose(sample.local)
        self.synced = True
        return True

    def _update_drift(self, sample):
        anchor = self._anchor
        if anchor is None:
            self._anchor = sample
            return
        span = sample.local - anchor.local
        if span < _ANCHOR_SETTLE_MS:
            if sample.delay < anchor.delay:
                self._anchor = sample
            return
        if span < _MIN_DRIFT_SPAN_MS:
            return
        # Compare like with like: the best recent sample, not just the newest one.
        best = self._best(sample.local, 0.0)
        if best.local - anchor.local < _MIN_DRIFT_SPAN_MS:
            return
        drift = (best.offset - anchor.offset) / (best.local - anchor.local)
        if -_MAX_DRIFT < drift < _MAX_DRIFT:
            self.drift = drift
            self.drift_known = True
        if span > _MAX_DRIFT_SPAN_MS:
            self._anchor = best

    def _best(self, now_local, penalty):
        best = None
        best_score = 0.0
        for s in self._samples:
            score = s.delay + (now_local - s.local) * penalty
            if best is None or score < best_score:
                best = s
                best_score = score
        return best

    def _choose(self, now_local):
        penalty = _AGE_PENALTY_KNOWN if self.drift_known else _AGE_PENALTY_UNKNOWN
        best = self._best(now_local, penalty)
        self._base_local = best.local
        self._base_offset = best.offset
        self.delay = best.delay

    # -- output --------------------------------------------------------------------------

    def offset_ms(self, local_ms):
        """network - local at ``local_ms``, in int ms."""
        return self._base_offset + _scaled(self.drift, local_ms - self._base_local)

    def network_ms(self, local_ms):
        return local_ms + self.offset_ms(local_ms)

    def local_ms(self, network_ms):
        # network = local + off + drift * (local - base)  =>  local - base = d / (1 + drift)
        # = d - d * drift / (1 + drift), with d = network - off - base: a small delta however
        # large the epoch value is, and the float carries only the drift's share of it.
        d = network_ms - self._base_offset - self._base_local
        return self._base_local + d + _scaled(-self.drift / (1.0 + self.drift), d)


def _scaled(factor, delta_ms):
    """``round(factor * delta_ms)`` as an int, for a small float factor (a drift, ~1e-4).

    The product is a few ms even for a delta of days, so float32's 24-bit mantissa loses
    nothing that matters (relative error 6e-8 of a few ms).
    """
    if not factor or not delta_ms:
        return 0
    x = factor * delta_ms
    return int(x + 0.5) if x >= 0 else -int(0.5 - x)
