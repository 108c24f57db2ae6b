"""Command acceptance: signature and shape (protocol.messages.open_command), replay, a counter
too far ahead of the clock, expiry.

Sans-IO. The guard holds the last accepted counter; the core persists it (``last_ctr``) so a
reboot does not reopen the replay window. A counter above ``now + MAX_COUNTER_AHEAD_MS`` is
refused ("future-counter") before anything consumes it, so it never raises that floor. ``now``
must be synced network ms: the core judges no command before the clock is synced.

Bringing a floor back down (``reset_floor``, issue 9): a receiver that already stored a huge
floor (from before the future-counter bound, or from a head-end whose clock ran ahead for
long) would refuse every command as a replay until reprovisioned. Each boot it draws a
``reset_nonce`` (32 bytes of the board's hardware RNG, in hex) and publishes it in its signed
birth; a ``reset_floor`` command carries that nonce in its signed arguments. Such a command is
judged by the nonce instead of the floor: it passes only if the nonce is this boot's and not
yet used ("bad-nonce" otherwise: a reset of another boot, a used one, a made-up one); the
signature, device, future-counter and expiry checks are those of every command. Accepting it
sets the floor to its own counter (the head-end's current one, bounded by the future-counter
check, so a reset cannot raise the floor to something absurd) and forgets the nonce. Why this
is replay-proof: only the head-end can sign (the device key), and it signs only nonces the
receiver published in an authenticated birth; a nonce is valid for one boot and one use, in
RAM only, so no recording of a reset works again, after a reboot or before it.
"""

from protocol.errors import ProtocolError
from protocol.messages import MAX_COUNTER_AHEAD_MS, RESET_FLOOR, decode, open_command
from protocol.signing import open_sealed, open_with_keys

# Reasons that mean "this message did not come from our head-end, or not now": they also raise
# a "rejected" event. Validation failures of an authentic command ("bad-field", "bad-args")
# only get a negative ack.
AUTH_REASONS = ("malformed", "bad-signature", "replay", "future-counter", "expired",
                "wrong-device", "bad-nonce")
# Reasons that count as a malformed payload (the other counter in the heartbeat).
MALFORMED_REASONS = ("malformed", "bad-field", "bad-args")


class CommandGuard:
    """``reset_nonce``: this boot's nonce for one ``reset_floor`` (hex), None for none."""

    def __init__(self, key, device, last_ctr=0, reset_nonce=None):
        self._key = key
        self._device = device
        self.last_ctr = last_ctr
        self.reset_nonce = reset_nonce
        self.effective_at = None
        # During a rotation (protocol/rekey.py): the offered key, accepted beside the current
        # one until the rotation is confirmed; ``by_pending``: the last checked command was
        # signed with it (which confirms the rotation: the head-end has the new key).
        self.pending_key = None
        self.by_pending = False

    def _open(self, payload):
        self.by_pending = False
        cmd, self.by_pending = open_with_keys(open_command, self._key, self.pending_key,
                                              payload, self._device)
        return cmd

    @property
    def key(self):
        return self._key

    def promote(self):
        """The rotation is confirmed: the pending key is the key, the old one is forgotten."""
        if self.pending_key is not None:
            self._key = self.pending_key
            self.pending_key = None

    def check(self, payload, now):
        """Return the command dict, or raise ProtocolError with the rejection reason.

        Does not consume the counter: call ``accept`` once the command is acted on. A refused
        command ("replay", "future-counter", "expired") leaves ``last_ctr`` as it was.
        """
        cmd = self._open(payload)
        if cmd["k"] == RESET_FLOOR:
            # Judged by the nonce, not the floor (module docstring): that is its point.
            if self.reset_nonce is None or cmd["a"]["nonce"] != self.reset_nonce:
                raise ProtocolError("bad-nonce", "not this boot's reset nonce")
        elif cmd["ctr"] <= self.last_ctr:
            raise ProtocolError("replay", "counter %d <= %d" % (cmd["ctr"], self.last_ctr))
        if cmd["ctr"] > now + MAX_COUNTER_AHEAD_MS:
            # Ints only (ms epochs are big ints on the ESP32; never floats). Not consumed.
            raise ProtocolError("future-counter", "counter %d > now %d + %d"
                                % (cmd["ctr"], now, MAX_COUNTER_AHEAD_MS))
        if cmd["exp"] < now:
            raise ProtocolError("expired")
        return cmd

    def accept(self, cmd):
        """Consume ``cmd``: its counter is the floor (lower than before for a reset), and a
        reset's nonce is used up."""
        self.last_ctr = cmd["ctr"]
        if cmd["k"] == RESET_FLOOR:
            self.reset_nonce = None

    def acting_now(self, now):
        """When the command ``check`` passed takes effect: ``now``, or later if making it
        durable took time (recovery.DurableGuard)."""
        at = self.effective_at
        self.effective_at = None
        return at if at is not None and at > now else now

    def command_id(self, payload):
        """The id of an authentic command that failed validation, for its negative ack.

        Only read from a body whose signature is good: never echo unauthenticated input.
        """
        try:
            cmd_id = decode(open_sealed(self._key, payload)).get("id")
        except Exception:
            try:
                cmd_id = decode(open_sealed(self.pending_key, payload)).get("id")
            except Exception:
                return None
        if isinstance(cmd_id, str) and 0 < len(cmd_id) <= 64:
            return cmd_id
        return None
