"""How the amplifier is held when idle (firmware/core.py ``amp_standby``, firmware/config.py
``amp_hold``): off by default; on a board with a mute line, standby (relay closed, muted)
always or in local hours, so a play waits for the unmute instead of the relay's settle.

Runs under CPython (pytest) and under MicroPython with the ESP32's numbers (make
test-micropython): plain functions and asserts only. Time is network ms, passed in.
"""

from firmware import config as CFG
from firmware import core as C
from protocol import messages as M

try:
    from test_core import DEV, KEY, SHA, SHA2, SITE, T0, Head, media, starts
except ImportError:  # CPython: tests/mpy is a package
    from .test_core import DEV, KEY, SHA, SHA2, SITE, T0, Head, media, starts

SETTLE = 300
UNMUTE = 20
LOCAL = 420  # UTC+7: T0 (08:00 UTC) is 15:00 local
HOUR = 3600000


def new_core(mute=True, standby=None):
    """A synced core; its ``boot`` holds what the sync's actions did to the amplifier."""
    core = C.ReceiverCore(DEV, SITE, KEY, amp_settle_ms=SETTLE, amp_mute=mute,
                          amp_unmute_ms=UNMUTE, amp_standby=standby, utc_offset_min=LOCAL)
    core.set_cached((SHA, SHA2))
    core.boot = amp_acts(core.set_synced(T0))
    return core


def amp_acts(acts):
    """The relay and mute switching, in order: ("amp"|"mute", on)."""
    return [(a[0], a[1]) for a in acts if a[0] in (C.AMP, C.MUTE)]


def emergency(core, head, now, bid="e1"):
    return core.on_command(head.cmd(M.PLAY, media(bid=bid, prio=M.PRIO_EMERGENCY, dur=4000),
                                    exp=now + 60000), now)


def test_standby_holds_the_relay_closed_and_muted_so_an_emergency_waits_only_for_the_unmute():
    core, head = new_core(standby=C.STANDBY_ALWAYS), Head()
    assert core.boot == [(C.AMP, True)]  # powered; the mute was asserted from boot
    now = T0 + 60000
    acts = emergency(core, head, now)
    assert amp_acts(acts) == [(C.MUTE, False)]  # no relay to close: it is settled already
    kinds = [a[0] for a in acts]
    assert kinds.index(C.MUTE) < kinds.index(C.START)
    (_, _item, _skip, _vol, first_at), = starts(acts)
    assert first_at == now + UNMUTE  # not now + SETTLE
    acts = core.finished(starts(acts)[0][1], now + 4000)
    assert amp_acts(acts) == [(C.MUTE, True)]  # muted again, the relay stays closed


def test_the_default_keeps_the_relay_open_when_idle_and_the_first_sample_waits_the_settle():
    core, head = new_core(), Head()  # a board with a mute line, amp_hold "off"
    assert core.boot == [] and amp_acts(core.tick(T0 + 500)) == []
    acts = emergency(core, head, T0 + 1000)
    assert amp_acts(acts) == [(C.AMP, True), (C.MUTE, False)]
    (_, item, _skip, _vol, first_at), = starts(acts)
    assert first_at == T0 + 1000 + SETTLE
    acts = core.finished(item, T0 + 6000)
    assert amp_acts(acts) == [(C.MUTE, True), (C.AMP, False)]  # muted before it powers down


def test_a_board_without_a_mute_line_keeps_the_settle_whatever_the_setting():
    core, head = new_core(mute=False, standby=C.STANDBY_ALWAYS), Head()
    assert core.boot == []  # no standby without a mute line: off when idle
    acts = emergency(core, head, T0 + 1000)
    assert amp_acts(acts) == [(C.AMP, True)]  # and never a MUTE action
    (_, item, _skip, _vol, first_at), = starts(acts)
    assert first_at == T0 + 1000 + SETTLE
    assert amp_acts(core.finished(item, T0 + 6000)) == [(C.AMP, False)]


def test_standby_in_local_hours_powers_up_at_the_start_and_down_at_the_end():
    # 15:00-17:00 local: T0 is 15:00 local, so in the hours; 17:00 is T0 + 2 h.
    core, head = new_core(standby=(15 * 60, 17 * 60)), Head()
    assert core.boot == [(C.AMP, True)]
    acts = emergency(core, head, T0 + HOUR)
    (_, item, _skip, _vol, first_at), = starts(acts)
    assert first_at == T0 + HOUR + UNMUTE
    assert amp_acts(core.finished(item, T0 + HOUR + 4000)) == [(C.MUTE, True)]
    assert amp_acts(core.tick(2 * HOUR + T0 - 1)) == []
    assert amp_acts(core.tick(2 * HOUR + T0)) == [(C.AMP, False)]  # 17:00: off, still muted
    acts = emergency(core, head, T0 + 3 * HOUR, bid="e2")  # outside: the settle again
    (_, _item, _skip, _vol, first_at), = starts(acts)
    assert first_at == T0 + 3 * HOUR + SETTLE


def test_hours_across_midnight_and_nothing_judged_before_the_clock_is_synced():
    core = C.ReceiverCore(DEV, SITE, KEY, amp_settle_ms=SETTLE, amp_mute=True,
                          amp_unmute_ms=UNMUTE, amp_standby=(22 * 60, 16 * 60),
                          utc_offset_min=LOCAL)
    assert amp_acts(core.tick(T0)) == []  # unsynced: local hours mean nothing yet
    assert amp_acts(core.set_synced(T0)) == [(C.AMP, True)]  # 15:00 is within 22:00-16:00
    assert amp_acts(core.tick(T0 + HOUR)) == [(C.AMP, False)]  # 16:00
    assert amp_acts(core.tick(T0 + 7 * HOUR)) == [(C.AMP, True)]  # 22:00


def test_the_periodic_test_tone_is_unmuted_in_standby():
    core, head = new_core(standby=C.STANDBY_ALWAYS), Head()
    acts = core.on_command(head.cmd(M.SELFTEST, {"run": "t1"}), T0 + 120000)
    acts += core.tick(T0 + 120000)
    tests = [a for a in acts if a[0] == C.SELFTEST]
    assert len(tests) == 1 and tests[0][4] == UNMUTE  # waits the unmute, not the settle
    assert (C.MUTE, False) in amp_acts(acts)


def test_amp_hold_in_the_config():
    base = CFG.merge(CFG.DEFAULTS, {})
    assert base["amp_hold"] == "off" and CFG.amp_standby(base) is None
    assert not CFG.has_amp_mute(base)
    for hold, want in (("standby", C.STANDBY_ALWAYS), ("05:00-22:00", (300, 1320)),
                       ("18:30-06:00", (1110, 360))):
        assert CFG.amp_standby(CFG.merge(base, {"amp_hold": hold})) == want
    for bad in ("on", "5:00-22:00", "05:00-05:00", "25:00-06:00", "05:00_22:00", 1, None):
        try:
            CFG.amp_standby(CFG.merge(base, {"amp_hold": bad}))
        except CFG.ConfigError:
            continue
        raise AssertionError("accepted amp_hold %r" % (bad,))
    muted = CFG.merge(base, {"pins": {"amp_mute": 21}})
    assert CFG.has_amp_mute(muted)
    CFG.validate_pins(muted)
    try:
        CFG.validate_pins(CFG.merge(base, {"pins": {"amp_mute": 25}}))  # the relay's pin
    except CFG.ConfigError:
        pass
    else:
        raise AssertionError("the mute line on the relay's GPIO was accepted")
