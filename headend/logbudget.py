"""A log that says a few lines a minute about a flood, then how big the flood was.

Receivers' bad reports are peer input: somebody sending thousands must not fill the disk or
drown the lines an operator needs. Every drop is still counted in the service's stats.
"""

import logging
import threading
import time
from collections import Counter


class LogBudget:
    """At most ``lines`` warnings per ``per_s`` seconds; what was held back is summed up, by
    key, in one line when the next window opens."""

    def __init__(self, logger: logging.Logger, *, lines: int, per_s: float, clock=time.monotonic):
        self.logger = logger
        self.lines = lines
        self.per_s = per_s
        self.clock = clock
        self._lock = threading.Lock()
        self._window_start = None
        self._said = 0
        self._held: Counter = Counter()

    def warning(self, key: str, fmt: str, *args) -> None:
        with self._lock:
            now = self.clock()
            if self._window_start is None or now - self._window_start >= self.per_s:
                self._flush_held()
                self._window_start, self._said = now, 0
            if self._said >= self.lines:
                self._held[key] += 1
                return
            self._said += 1
        self.logger.warning(fmt, *args)

    def _flush_held(self) -> None:
        if self._held:
            held = ", ".join("%s: %d" % item for item in sorted(self._held.items()))
            self.logger.warning("... and %d more not logged in %d s (%s)",
                                sum(self._held.values()), self.per_s, held)
            self._held.clear()
