"""Keeping the demo's child processes up: a head-end or broker that dies is started again, but
at most ``limit`` times in any ``window_s``, so a part that cannot start does not spin the PC.

    keeper = Restarter("head-end", headend_process, say)
    keeper.check()   # now and then: starts the part again if it is not running

The part needs ``running`` (a property) and a blocking ``start()`` that raises ``RuntimeError``
or ``OSError`` when the part does not come up (headend.process.HeadendProcess and
tools.testbrokers.BrokerProcess both do). Time is an argument, so the tests need no sleeping.
"""

import time

RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0


class Restarter:
    def __init__(self, name, part, log, *, limit=RESTART_LIMIT, window_s=RESTART_WINDOW_S,
                 clock=time.monotonic):
        self.name = name
        self.part = part
        self.log = log
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.restarts = []       # when each attempt began, within the window
        self._held_back = False  # said once that the budget is spent, not on every check

    def check(self) -> bool:
        """True if the part is running (already, or again after a restart)."""
        if self.part.running:
            return True
        now = self.clock()
        self.restarts = [t for t in self.restarts if now - t < self.window_s]
        if len(self.restarts) >= self.limit:
            if not self._held_back:
                self.log("%s is down; %d restarts in the last %.0f s, trying again later"
                         % (self.name, len(self.restarts), self.window_s))
                self._held_back = True
            return False
        self._held_back = False
        self.restarts.append(now)
        self.log("%s is down; restarting it (%d of at most %d per %.0f s)"
                 % (self.name, len(self.restarts), self.limit, self.window_s))
        try:
            self.part.start()
        except (RuntimeError, OSError) as exc:
            self.log("%s did not come back: %s" % (self.name, str(exc).splitlines()[0]))
            return False
        self.log("%s is back" % self.name)
        return True
