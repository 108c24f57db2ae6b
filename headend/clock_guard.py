"""The head-end never signs from a clock it does not trust.

A command's counter is the head-end's clock in ms (``protocol.messages.next_counter``) and
receivers set their clocks from its time replies. A wall clock that steps far ahead (a bad NTP
server, a mistyped `date`) would sign counters every receiver stores as its replay floor: once
the clock is put right, the whole fleet refuses every command as a replay. A clock that steps
back, or a head-end that starts with a dead RTC battery in the year 2000, would teach receivers
a time at which no schedule plays.

So the head-end watches its wall clock against the monotonic clock, which never steps. Small
steps and NTP's slewing are followed; a step larger than ``STEP_LIMIT_MS`` either way stops all
signing (503 ``clock-untrusted``) and all time replies until the wall clock comes back, or an
admin who has checked it confirms the new time (``POST /api/v1/clock/confirm``). At start,
a clock behind the newest counter it ever signed (less ``MAX_COUNTER_AHEAD_MS``) is
untrusted too; only the right time ends that, since no confirmation can make older counters
newer.
"""

import logging
import threading
import time

from headend.errors import ServiceError
from protocol.messages import MAX_COUNTER_AHEAD_MS

log = logging.getLogger(__name__)

# Far above what NTP steps on a working machine (ms), far below the receivers' 10 min
# allowance for a counter ahead of their clock.
STEP_LIMIT_MS = 60_000


class ClockUntrusted(ServiceError):
    status = 503

    def __init__(self, problem: str):
        super().__init__(
            "clock-untrusted",
            "the head-end's clock is not trusted (%s): nothing is signed until it is right; "
            "check the time, then confirm it as admin" % problem,
            "Đồng hồ của máy chủ không đáng tin (%s): không lệnh nào được ký cho đến khi giờ "
            "đúng; hãy kiểm tra giờ rồi xác nhận bằng tài khoản quản trị" % problem)


class ClockGuard:
    def __init__(self, step_limit_ms: int = STEP_LIMIT_MS, wall_ns=time.time_ns,
                 monotonic_ns=time.monotonic_ns):
        self.step_limit_ms = step_limit_ms
        self._wall_ns = wall_ns
        self._monotonic_ns = monotonic_ns
        self._lock = threading.Lock()
        self._offset_ns: int | None = None  # wall - monotonic of the clock last trusted
        self._step_ms = 0                   # the step not yet confirmed (0: none)
        self._floor_ms = 0                  # the newest counter ever signed, at start

    def now_ms(self) -> int:
        """The wall clock in ms, raising ClockUntrusted when it must not be signed from."""
        now, problem = self._read()
        if problem:
            raise ClockUntrusted(problem)
        return now

    def problem(self) -> str | None:
        return self._read()[1]

    def state(self) -> dict:
        now, problem = self._read()
        return {"trusted": problem is None, "problem": problem, "now_ms": now}

    def learn_floor(self, newest_counter_ms: int) -> None:
        """The newest counter in the database: a clock far behind it is wrong."""
        with self._lock:
            self._floor_ms = max(self._floor_ms, newest_counter_ms)

    def confirm(self) -> None:
        """An admin checked the wall clock: trust it from now on."""
        now, problem = self._read()
        if problem and problem.startswith("behind"):
            raise ClockUntrusted(problem)
        with self._lock:
            self._offset_ns = self._wall_ns() - self._monotonic_ns()
            if self._step_ms:
                log.warning("clock step of %+d s confirmed by an admin", round(self._step_ms / 1000))
            self._step_ms = 0

    def _read(self) -> tuple[int, str | None]:
        wall = self._wall_ns()
        offset = wall - self._monotonic_ns()
        now = wall // 1_000_000
        with self._lock:
            if self._offset_ns is None:
                self._offset_ns = offset
            step = round((offset - self._offset_ns) / 1e6)
            if abs(step) <= self.step_limit_ms:
                self._offset_ns = offset  # follows slewing and small steps
                if self._step_ms:
                    log.warning("the clock came back: signing again")
                self._step_ms = 0
            elif abs(step - self._step_ms) > self.step_limit_ms:  # a new step: said once
                log.error("the wall clock stepped %+d s: no command is signed and no time "
                          "reply sent until it comes back or an admin confirms it",
                          round(step / 1000))
                self._step_ms = step
            if self._step_ms:
                return now, "stepped %+d s" % round(self._step_ms / 1000)
            if now < self._floor_ms - MAX_COUNTER_AHEAD_MS:
                return now, "behind its newest counter by %d s" % ((self._floor_ms - now) // 1000)
        return now, None


# One clock per machine: every signer and the time replies of this process read it.
CLOCK = ClockGuard()
