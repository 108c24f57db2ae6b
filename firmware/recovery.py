"""Field recovery, sans-IO: the rules a receiver on a pole follows to get itself out of trouble.

No files, clocks or sockets here: the shell (firmware/shell.py) reads the state file and the
board, and asks these functions what follows from what it found.

- Durable command counter (``DurableGuard``): a command is acted on only once its counter is in
  flash. The guard hands every authentic, fresh command to ``before_accept``, which writes the
  counter and may refuse the command; a refused one still moves the counter in RAM, so the
  same payload again is a replay, and after a reboot no command that took effect can be new
  again.
- Crash loop (``crashes_before``): the state file counts boots that have not yet run
  ``STABLE_MS`` (``unstable``). A boot whose reset says the last one ended badly (a crash's
  ``machine.reset()``, a watchdog, a brown-out) inherits that count; a power-on, a soft reset or
  a deep-sleep wake start again from 0. After ``CRASH_LOOP_BOOTS`` such boots in a row the
  receiver comes up in safe mode: it connects and reports, drops the saved schedule and
  refuses media commands ("safe-mode") until a reboot command or a power cycle.
- Floors (``highest``): counters that only grow (command counter, boot count, brown-outs) are
  taken as the highest any readable copy of the state holds. The one exception is a signed,
  one-use ``reset_floor`` (firmware/guard.py), which lowers the command counter: the shell
  writes it to every copy (two saves) before it takes effect, so no older copy brings the
  high floor back at the next boot.
"""

from firmware.guard import CommandGuard
from protocol import messages as M
from protocol.errors import ProtocolError

CRASH_LOOP_BOOTS = 3      # boots in a row that crashed before STABLE_MS: the next is safe mode
STABLE_MS = 120000        # a boot that has run this long (event loop alive) did not crash-loop
CRASH_CAUSES = ("hard", "watchdog", "brown-out")
SAFE_CRASH_LOOP = "crash-loop"
# Commands refused in safe mode: the ones that make the receiver fetch or play.
MEDIA_COMMANDS = (M.PLAY, M.STREAM, M.SCHEDULE, M.FETCH)


def crashes_before(unstable, cause):
    """How many boots in a row crashed before this one: ``unstable`` from the state file (boots
    that never reached ``STABLE_MS``) when ``cause`` says the last boot ended badly, else 0."""
    if cause not in CRASH_CAUSES or not isinstance(unstable, int) or unstable < 0:
        return 0
    return unstable


def highest(copies, name, inner=None):
    """The largest int under ``name`` (or ``name`` -> ``inner``) in any of the ``copies``
    (dicts read from the state file and its backups), 0 if none holds one."""
    best = 0
    for copy in copies:
        value = copy.get(name)
        if inner is not None:
            value = value.get(inner) if isinstance(value, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > best:
            best = value
    return best


class DurableGuard(CommandGuard):
    """A CommandGuard whose last step, for a command that passed signature, device, replay and
    expiry, is ``before_accept(cmd)``: it makes ``cmd["ctr"]`` durable and returns None (or the
    network ms the write finished) to go on, or a refusal reason. A refused command raises ProtocolError(reason), which the core
    answers with a negative ack carrying that reason (no "rejected" event: it is authentic),
    and its counter is consumed in RAM all the same."""

    def __init__(self, key, device, before_accept):
        super().__init__(key, device)
        self._before_accept = before_accept

    def check(self, payload, now):
        cmd = super().check(payload, now)
        outcome = self._before_accept(cmd)
        if isinstance(outcome, str):
            if cmd["k"] == M.RESET_FLOOR:
                # Used up, so it never passes twice; the floor stays where flash has it.
                self.reset_nonce = None
            else:
                self.last_ctr = cmd["ctr"]
            raise ProtocolError(outcome)
        # An int: the network ms when the write was done. Flash is slow (tens of ms on the
        # board): the command takes effect then, so what it starts is timed from then (the
        # relay's settling above all), not from when it arrived.
        self.effective_at = outcome if outcome else None
        return cmd
