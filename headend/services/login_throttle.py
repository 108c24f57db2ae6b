"""Login back-off, per user name and per client address.

Every login attempt is counted against the user name (casefolded, as names are unique ignoring
case) and against the client's address. Once a key holds ``MAX_FAILURES`` attempts, the next
one must wait ``BASE_DELAY_S``, then twice that after each further failure, up to
``MAX_DELAY_S``; a refused attempt is not counted, so waiting is always enough. A key is
forgotten ``WINDOW_S`` after its last attempt; a successful login forgets its user name and takes
back its own count on the address (the address keeps its other failures, so an attacker with
one valid account cannot reset it by logging in between guesses).

The attempt is counted *before* the password is checked (and taken back on success), so a burst
of parallel requests cannot all slip through before the first failure is recorded.

The state is in memory, in this head-end process: the head-end runs as one process (uvicorn,
one worker); several workers would each keep their own count. It holds at most ``MAX_KEYS``
keys, least recently attempted dropped first: a flood of made-up names evicts only other made-up
names, while the flooding address itself stays the most recent key.

Known limit: anyone can delay logins of a known user name (the price of a per-name back-off),
and behind a reverse proxy every client has the proxy's address (X-Forwarded-For is not
trusted here).
"""

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from headend.errors import ServiceError

log = logging.getLogger(__name__)

# Would be settings (login_max_failures, login_window_s, ...); constants until then.
MAX_FAILURES = 5
WINDOW_S = 15 * 60
BASE_DELAY_S = 30
MAX_DELAY_S = 15 * 60
MAX_KEYS = 10_000


class TooManyAttempts(ServiceError):
    status = 429

    def __init__(self, retry_after_s: int):
        minutes = max(1, math.ceil(retry_after_s / 60))
        super().__init__("too-many-attempts",
                         "too many failed logins: try again in %d s" % retry_after_s,
                         "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau %d phút." % minutes)
        self.retry_after_s = retry_after_s


class LoginThrottle:
    """Counts login attempts per key; ``clock`` is seconds (monotonic), injectable for tests."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 base_delay_s: float = BASE_DELAY_S, max_delay_s: float = MAX_DELAY_S,
                 max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_keys = max_keys
        self.clock = clock
        # key -> [attempts, time of the last one]; oldest attempt first.
        self._keys: OrderedDict[tuple[str, str], list] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _keys_of(username: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("user", (username or "").strip().casefold())]
        if address:
            keys.append(("address", address))
        return keys

    def _wait_s(self, key: tuple[str, str], now: float) -> float:
        record = self._keys.get(key)
        if record is None:
            return 0
        attempts, last = record
        if now - last >= self.window_s:
            del self._keys[key]
            return 0
        if attempts < self.max_failures:
            return 0
        delay = min(self.base_delay_s * 2 ** min(attempts - self.max_failures, 32),
                    self.max_delay_s)
        return max(0.0, last + delay - now)

    def begin(self, *, username: str, address: str | None) -> None:
        """Count an attempt, or raise TooManyAttempts (counting nothing) if it must wait."""
        with self._lock:
            now = self.clock()
            keys = self._keys_of(username, address)
            wait = max(self._wait_s(key, now) for key in keys)
            if wait > 0:
                raise TooManyAttempts(math.ceil(wait))
            for key in keys:
                record = self._keys.pop(key, None) or [0, now]
                record[0] += 1
                record[1] = now
                self._keys[key] = record
                if record[0] == self.max_failures:
                    # Never the password; the name as typed is the attacker's input: repr it.
                    log.warning("login back-off starts for %s %r", key[0], key[1][:64])
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)

    def succeeded(self, *, username: str, address: str | None) -> None:
        """The attempt ``begin`` counted was a good login: forget the name, take it back from
        the address."""
        with self._lock:
            user_key, *address_key = self._keys_of(username, address)
            self._keys.pop(user_key, None)
            for key in address_key:
                record = self._keys.get(key)
                if record is not None:
                    record[0] -= 1
                    if record[0] <= 0:
                        del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)


_creating = threading.Lock()


def throttle_of(state) -> LoginThrottle:
    """The app's one throttle (``app.state.login_throttle``), made on first use."""
    throttle = getattr(state, "login_throttle", None)
    if throttle is None:
        with _creating:
            throttle = getattr(state, "login_throttle", None)
            if throttle is None:
                throttle = state.login_throttle = LoginThrottle()
    return throttle
