"""The receiver's time sync I/O: requests out on ``.../treq``, signed replies in from
``.../time``, each matched sample fed to the clock (firmware/clock.py).

When to ask is the core's decision (firmware/sync_cadence.py, the SYNC_REQUEST action); this
only sends and checks. One ``TimeSync`` per receiver (no module-level state). A reply that is
not signed with this receiver's key, not for it, or not for a request it sent (matched by
``t0``) is counted and dropped: it never moves the clock.
"""

from protocol import messages as M
from protocol.errors import ProtocolError
from protocol.signing import open_with_keys

MAX_PENDING = 16  # requests awaiting a reply; older ones are forgotten (their replies lost)


class TimeSync:
    """``key``/``device``: whose replies count; ``clock``: the ClockEstimator the samples go
    to; ``local_ms()``: the monotonic local ms (t0, t3); ``count(name)``: the core's counters
    (``malformed``, ``bad_time``, ``time_unmatched``)."""

    def __init__(self, key, device, clock, local_ms, count):
        self._key = key
        self._device = device
        self._clock = clock
        self._local_ms = local_ms
        self._count = count
        self._pending = []
        self.alt_key = None  # during a rotation (firmware/rotation.py): replies under it count

    def request(self):
        """A new request's payload (its ``t0`` remembered for the reply)."""
        t0 = self._local_ms()
        self._pending.append(t0)
        if len(self._pending) > MAX_PENDING:
            self._pending.pop(0)
        return M.time_request(t0)

    def _open(self, payload):
        return open_with_keys(M.open_time_reply, self._key, self.alt_key, payload,
                              self._device)[0]

    def rekeyed(self, key):
        """The rotation is confirmed: replies under ``key`` only."""
        self._key = key
        self.alt_key = None

    def on_reply(self, payload):
        """A message on ``.../time``. Returns how far it moved the clock (network ms; 0 for a
        sample that is not better than the one in use), or None when it was dropped."""
        try:
            t0, t1, t2 = self._open(payload)
        except ProtocolError as e:
            self._count("malformed" if e.reason in ("malformed", "bad-field") else "bad_time")
            return None
        if t0 not in self._pending:
            self._count("time_unmatched")
            return None
        self._pending.remove(t0)
        local = self._local_ms()
        before = self._clock.network_ms(local)
        if not self._clock.add_sample(t0, t1, t2, local):
            return None
        return self._clock.network_ms(local) - before
