"""When a receiver asks the head-end for the time, sans-IO (the core owns one, firmware/core.py).

Every exchange is one request on ``.../treq`` and one signed reply on ``.../time``, ~233 B on
the wire; on 4G (paid per byte, 1 MB/day of telemetry) the cadence is most of the time-sync
budget (firmware/shell.py, "Bytes per day"):

- a burst of ``burst`` requests ``BURST_GAP_MS`` apart at every link up, after a random delay
  below ``BURST_SPREAD_MS``, so a fleet reconnecting together (a broker restart) does not sync
  in lockstep through a busy broker;
- then, once synced, one exchange every ``REFINE_PERIOD_MS`` (plus a random fifth) for
  ``REFINE_MS``: a quieter moment gives a faster exchange, a better sample (12 more per connect);
- then one every ``period_ms`` (``timesync_s``), drift being small;
- until the first reply has synced the clock, one every ``UNSYNCED_RETRY_MS``;
- nothing while the link is down (there is nothing to send on).

Times are network ms as the core gets them. Before the first sync the receiver's network time
is only its RTC's guess, and the sync moves it by any amount (years, after a power cut): the
core passes each step of the clock on (``shift``), so a wait keeps its length.
"""

BURST_GAP_MS = 250
BURST_SPREAD_MS = 1000
REFINE_MS = 60000
REFINE_PERIOD_MS = 5000
UNSYNCED_RETRY_MS = 5000


class SyncCadence:
    """``due`` is the network time of the next request, or None (link down)."""

    def __init__(self, burst=5, period_ms=300000, random_below=None):
        self.burst = burst
        self.period_ms = period_ms
        self._random_below = random_below
        self.due = None
        self._burst_left = 0
        self._refine_until = None

    def _random(self, n):
        return self._random_below(n) if self._random_below is not None else 0

    def link_up(self, now):
        self._burst_left = self.burst
        self._refine_until = None
        self.due = now + self._random(BURST_SPREAD_MS)

    def link_down(self):
        self.due = None
        self._burst_left = 0

    def shift(self, step_ms):
        """The clock just moved by ``step_ms``: every wait keeps its length."""
        if self.due is not None:
            self.due += step_ms
        if self._refine_until is not None:
            self._refine_until += step_ms

    def poll(self, now, synced):
        """True when a request is to go now; then the next one is planned."""
        if self.due is None or now < self.due:
            return False
        if self._burst_left > 0:
            self._burst_left -= 1
            if self._burst_left > 0:
                self.due = now + BURST_GAP_MS
                return True
            self._refine_until = now + BURST_GAP_MS + REFINE_MS
            self.due = now + BURST_GAP_MS + self._period(now, synced)
            return True
        self.due = now + self._period(now, synced)
        return True

    def _period(self, now, synced):
        if not synced:
            return UNSYNCED_RETRY_MS
        if self._refine_until is not None and now < self._refine_until:
            return REFINE_PERIOD_MS + self._random(REFINE_PERIOD_MS // 5)
        return self.period_ms
