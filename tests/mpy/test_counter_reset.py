"""A signed, one-use reset of the counter floor (``reset_floor``, firmware/guard.py).

A receiver whose stored floor is far in the future refuses every command as a replay; a reset
bound to this boot's nonce brings it down, once. Runs under CPython and MicroPython (the ESP32
number model too: the floors here are big ints there). Time is network ms, passed in.
"""

from firmware import core as C
from firmware.recovery import DurableGuard
from protocol import messages as M

KEY = b"k" * 32
OTHER_KEY = b"x" * 32
DEV = "rx-01"
SITE = "xa-01"
T0 = 1800000000000             # network ms: the synced clock
STUCK = T0 + 10 * 365 * 86400000  # a floor ten years ahead (a head-end clock that jumped)
NONCE = "5a" * 32
OTHER_NONCE = "a5" * 32


def sign(kind, args, ctr, exp=T0 + 60000, key=KEY, dev=DEV):
    return M.sign_command(key, dev, kind, args, ctr, exp, "c%d" % (ctr % 100000))


def reset(ctr=T0, nonce=NONCE, **kw):
    return sign(M.RESET_FLOOR, {"nonce": nonce}, ctr, **kw)


def volume(vol, ctr):
    return sign(M.VOLUME, {"vol": vol}, ctr)


def stuck_core(nonce=NONCE, floor=STUCK, guard=None):
    core = C.ReceiverCore(DEV, SITE, KEY, state={"ctr": floor}, reset_nonce=nonce, guard=guard)
    core.set_synced(T0)
    return core


def events(acts, kind):
    return [a[1] for a in acts if a[0] == C.EVENT and a[1]["k"] == kind]


def refused(acts, reason):
    """The command was refused for ``reason``, with a negative ack and a "rejected" event."""
    ack = events(acts, M.EV_ACK)
    rejected = events(acts, M.EV_REJECTED)
    assert len(ack) == 1 and ack[0]["ok"] is False and ack[0]["reason"] == reason, ack
    assert len(rejected) == 1 and rejected[0]["reason"] == reason, rejected
    assert C.PERSIST not in [a[0] for a in acts]


def accepted(acts):
    ack = events(acts, M.EV_ACK)
    assert len(ack) == 1 and ack[0]["ok"] is True, ack


def test_stuck_floor_refuses_commands_until_a_reset_with_this_boots_nonce():
    core = stuck_core()
    refused(core.on_command(volume(20, T0), T0), "replay")
    assert core.volume == 70
    acts = core.on_command(reset(T0 + 5), T0 + 10)
    accepted(acts)
    assert acts[-1][0] == C.PERSIST and acts[-1][1]["ctr"] == T0 + 5
    assert core.export_state()["ctr"] == T0 + 5
    assert core.reset_nonce is None  # the birth carries none any more
    accepted(core.on_command(volume(20, T0 + 6), T0 + 20))
    assert core.volume == 20
    # Below the new floor is still a replay: the reset moved the floor, it did not open it.
    refused(core.on_command(volume(30, T0 + 5), T0 + 30), "replay")


def test_a_used_reset_replayed_in_the_same_boot_is_refused():
    core = stuck_core()
    payload = reset(T0)
    accepted(core.on_command(payload, T0))
    accepted(core.on_command(volume(40, T0 + 1000), T0 + 1000))
    refused(core.on_command(payload, T0 + 2000), "bad-nonce")
    # A new reset for the used nonce, with a higher counter, is refused too.
    refused(core.on_command(reset(T0 + 3000), T0 + 3000), "bad-nonce")
    assert core.export_state()["ctr"] == T0 + 1000 and core.counters["bad-nonce"] == 2


def test_a_reset_of_an_earlier_boot_is_refused_after_a_restart():
    core = stuck_core()
    recorded = reset(T0)
    # Restarted before the reset arrived: a new boot, a new nonce, the same stuck floor.
    rebooted = stuck_core(nonce=OTHER_NONCE, floor=core.export_state()["ctr"])
    refused(rebooted.on_command(recorded, T0 + 100), "bad-nonce")
    assert rebooted.export_state()["ctr"] == STUCK and rebooted.reset_nonce == OTHER_NONCE
    accepted(rebooted.on_command(reset(T0 + 200, nonce=OTHER_NONCE), T0 + 200))


def test_the_lowered_floor_survives_a_restart_of_the_core():
    core = stuck_core()
    payload = reset(T0)
    state = core.on_command(payload, T0)[-1][1]
    rebooted = C.ReceiverCore(DEV, SITE, KEY, state=state, reset_nonce=OTHER_NONCE)
    rebooted.set_synced(T0 + 1000)
    assert rebooted.export_state()["ctr"] == T0
    accepted(rebooted.on_command(volume(25, T0 + 1), T0 + 1000))
    assert rebooted.volume == 25
    refused(rebooted.on_command(payload, T0 + 2000), "bad-nonce")
    refused(rebooted.on_command(volume(26, T0), T0 + 2000), "replay")


def test_a_forged_reset_is_refused_and_keeps_the_nonce():
    core = stuck_core()
    refused(core.on_command(reset(T0, key=OTHER_KEY), T0), "bad-signature")
    assert core.export_state()["ctr"] == STUCK and core.reset_nonce == NONCE
    accepted(core.on_command(reset(T0 + 1), T0 + 1))


def test_an_expired_reset_is_refused_and_keeps_the_nonce():
    core = stuck_core()
    refused(core.on_command(reset(T0, exp=T0 - 1), T0), "expired")
    assert core.export_state()["ctr"] == STUCK and core.reset_nonce == NONCE
    accepted(core.on_command(reset(T0 + 1), T0 + 1))


def test_a_reset_for_another_device_is_refused():
    core = stuck_core()
    acts = core.on_command(reset(T0, dev="rx-02"), T0)
    rejected = events(acts, M.EV_REJECTED)
    assert rejected[0]["reason"] == "wrong-device" and C.PERSIST not in [a[0] for a in acts]
    assert core.export_state()["ctr"] == STUCK and core.reset_nonce == NONCE


def test_a_reset_with_another_nonce_is_refused():
    core = stuck_core()
    refused(core.on_command(reset(T0, nonce=OTHER_NONCE), T0), "bad-nonce")
    assert core.export_state()["ctr"] == STUCK and core.reset_nonce == NONCE
    # A nonce of the wrong shape is not a nonce at all: bad arguments, authentic sender.
    bad = M.seal(KEY, M.command_body(DEV, M.RESET_FLOOR, {"nonce": "zz"}, T0, T0 + 60000, "cx"))
    acts = core.on_command(bad, T0)
    assert events(acts, M.EV_ACK)[0]["reason"] == "bad-field"
    assert core.export_state()["ctr"] == STUCK and core.reset_nonce == NONCE


def test_a_receiver_without_a_nonce_accepts_no_reset():
    core = stuck_core(nonce=None)
    refused(core.on_command(reset(T0), T0), "bad-nonce")
    assert core.export_state()["ctr"] == STUCK


def test_a_reset_cannot_set_an_absurd_floor():
    core = C.ReceiverCore(DEV, SITE, KEY, state={"ctr": T0}, reset_nonce=NONCE)
    core.set_synced(T0)
    for absurd in (2 ** 63, T0 + M.MAX_COUNTER_AHEAD_MS + 1):
        refused(core.on_command(reset(absurd), T0), "future-counter")
        assert core.export_state()["ctr"] == T0 and core.reset_nonce == NONCE
    accepted(core.on_command(volume(31, T0 + 1), T0 + 1))


def test_a_reset_held_before_the_sync_is_judged_by_the_synced_clock():
    core = C.ReceiverCore(DEV, SITE, KEY, state={"ctr": STUCK}, reset_nonce=NONCE)
    assert core.on_command(reset(T0), 946684800000) == []  # the board says year 2000
    acts = core.set_synced(T0)
    accepted(acts)
    assert core.export_state()["ctr"] == T0


def test_a_reset_whose_write_fails_is_used_up_and_leaves_the_floor():
    written = []

    def before_accept(cmd):
        written.append(cmd["ctr"])
        return "storage"

    guard = DurableGuard(KEY, DEV, before_accept)
    core = stuck_core(guard=guard)
    assert core.reset_nonce == NONCE
    payload = reset(T0)
    acts = core.on_command(payload, T0)
    ack = events(acts, M.EV_ACK)[0]
    assert ack["ok"] is False and ack["reason"] == "storage" and written == [T0]
    assert core.export_state()["ctr"] == STUCK and core.reset_nonce is None
    refused(core.on_command(payload, T0 + 1), "bad-nonce")
    assert written == [T0]  # never offered to flash again
