"""The periodic test's decisions (firmware/core.py, ``selftest``): when it runs, when it waits
or is refused, what cuts it short, and the verdict from what the shell read.

Runs under CPython (pytest) and under MicroPython with the ESP32's numbers (make
test-micropython): plain functions and asserts only. Time is network ms, passed in.
"""

from firmware import core as C
from firmware import reasons as R
from protocol import messages as M
from protocol.errors import ProtocolError

try:
    from test_core import DEV, KEY, SHA, SITE, T0, Head, events, media, starts
except ImportError:  # CPython: tests/mpy is a package
    from .test_core import DEV, KEY, SHA, SITE, T0, Head, events, media, starts

SETTLE = 300


def new_core():
    core = C.ReceiverCore(DEV, SITE, KEY, amp_settle_ms=SETTLE)
    core.set_synced(T0)
    core.set_cached((SHA,))
    return core


def of(acts, kind):
    return [a for a in acts if a[0] == kind]


def good(run="r1"):
    return {"run": run, "sink": True, "detail": None, "relay": True, "fault": False,
            "ma": None, "flash": 500000, "flash_min": 131072, "synced": True}


def results(acts):
    return events(acts, M.EV_SELFTEST)


def test_an_idle_receiver_switches_the_relay_on_then_tests_quietly_and_reports_a_pass():
    core, head = new_core(), Head()
    acts = core.on_command(head.cmd(M.SELFTEST, {"run": "r1"}), T0)
    kinds = [a[0] for a in acts]
    assert kinds.index(C.AMP) < kinds.index(C.SELFTEST)  # relay first, then the tone
    (test,) = of(acts, C.SELFTEST)
    assert test == (C.SELFTEST, "r1", C.SELFTEST_LEVEL, C.SELFTEST_TONE_MS, SETTLE)
    assert core.state == C.TESTING and not results(acts)
    acts = core.selftest_done(good(), T0 + 1500)
    (ev,) = results(acts)
    assert ev["ok"] is True and ev["run"] == "r1" and "reason" not in ev
    assert ev["sink"] is True and ev["relay"] is True and ev["fault"] is False
    assert ev["flash"] == 500000 and ev["synced"] is True
    assert of(acts, C.AMP) == [(C.AMP, False)] and core.state == C.IDLE


def test_the_command_names_the_level_and_length_within_bounds():
    core, head = new_core(), Head()
    acts = core.on_command(head.cmd(M.SELFTEST, {"run": "r1", "lvl": -40, "ms": 500}), T0)
    assert of(acts, C.SELFTEST)[0][2:4] == (-40, 500)
    try:  # 0 dBFS would be loud: the one table refuses it on both sides
        M.check_args(M.SELFTEST, {"run": "r2", "lvl": 0})
        raise AssertionError("accepted")
    except ProtocolError as e:
        assert e.reason == "bad-field"


def test_each_failing_check_gives_its_reason_in_order():
    cases = (({"sink": False, "detail": "vs1053: DREQ stuck low"}, R.SELFTEST_SINK),
             ({"relay": False}, R.SELFTEST_RELAY),
             ({"fault": True}, R.SELFTEST_FAULT),
             ({"flash": 1000}, R.SELFTEST_FLASH),
             ({"synced": False}, R.SELFTEST_CLOCK),
             ({"fault": True, "flash": 1000}, R.SELFTEST_FAULT),
             ({"relay": None}, None))  # a board that cannot read the relay back: no failure
    for change, reason in cases:
        core, head = new_core(), Head()
        core.on_command(head.cmd(M.SELFTEST, {"run": "r1"}), T0)
        result = good()
        result.update(change)
        (ev,) = results(core.selftest_done(result, T0 + 1500))
        assert ev["ok"] is (reason is None), change
        assert ev.get("reason") == reason, change
    assert ev.get("relay") is None


def test_never_during_an_emergency():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(prio=M.PRIO_EMERGENCY)), T0)
    acts = core.on_command(head.cmd(M.SELFTEST, {"run": "r1"}), T0 + 100)
    (ev,) = results(acts)
    assert ev["ok"] is False and ev["reason"] == R.SELFTEST_EMERGENCY
    assert not of(acts, C.SELFTEST)
    # An emergency scheduled for later refuses it too.
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(at=T0 + 3600000, prio=M.PRIO_EMERGENCY)), T0)
    (ev,) = results(core.on_command(head.cmd(M.SELFTEST, {"run": "r1"}), T0))
    assert ev["reason"] == R.SELFTEST_EMERGENCY


def test_it_waits_while_something_plays_or_is_due_within_a_minute_then_runs():
    core, head = new_core(), Head()
    at = T0 + 30000
    core.on_command(head.cmd(M.PLAY, media(at=at, dur=10000)), T0)
    acts = core.on_command(head.cmd(M.SELFTEST, {"run": "r1"}), T0)
    assert not of(acts, C.SELFTEST) and not results(acts)  # due within a minute: waits
    acts = core.tick(at)
    (start,) = starts(acts)
    assert not of(acts, C.SELFTEST)  # plays: still waits
    acts = core.finished(start[1], at + 10000)
    assert of(acts, C.SELFTEST) and core.state == C.TESTING  # quiet again: runs


def test_it_gives_up_busy_after_the_longest_wait():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(dur=3600000)), T0)  # an hour-long play
    core.on_command(head.cmd(M.SELFTEST, {"run": "r1"}), T0)
    assert not results(core.tick(T0 + C.SELFTEST_WAIT_MS - 1))
    (ev,) = results(core.tick(T0 + C.SELFTEST_WAIT_MS))
    assert ev["ok"] is False and ev["reason"] == R.SELFTEST_BUSY


def test_a_broadcast_that_starts_cuts_the_test_short_and_plays_at_once():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.SELFTEST, {"run": "r1"}), T0)
    acts = core.on_command(head.cmd(M.PLAY, media(prio=M.PRIO_EMERGENCY)), T0 + 200)
    kinds = [a[0] for a in acts]
    assert kinds.index(C.SELFTEST_ABORT) < kinds.index(C.START)
    (ev,) = results(acts)
    assert ev["ok"] is False and ev["reason"] == R.SELFTEST_INTERRUPTED
    assert not of(acts, C.AMP)  # the relay stays on for the play
    assert starts(acts)[0][4] == T0 + SETTLE  # first sample once the relay has settled
    # The late result of the cut test is ignored.
    assert core.selftest_done(good(), T0 + 1500) == []
    assert core.state == C.PLAYING


def test_a_newer_selftest_replaces_one_still_waiting():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(dur=100000)), T0)
    core.on_command(head.cmd(M.SELFTEST, {"run": "r1"}), T0)
    (ev,) = results(core.on_command(head.cmd(M.SELFTEST, {"run": "r2"}), T0 + 10))
    assert ev["run"] == "r1" and ev["reason"] == R.SELFTEST_BUSY


def test_the_event_passes_the_head_ends_check():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.SELFTEST, {"run": "r1"}), T0)
    result = good()
    result.update({"ma": 850.5, "detail": None})
    (ev,) = results(core.selftest_done(result, T0 + 1500))
    checked = M.check_event(M.decode(M.encode(ev)))
    assert checked["ok"] is True and checked["ma"] == 850.5 and checked["run"] == "r1"
