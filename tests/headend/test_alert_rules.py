"""The alert rules alone (headend/services/alert_rules.py): what holds, why a receiver is
offline, when a notice may go out (quiet hours, urgent kinds, a reboot's grace, repeats)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from headend.services import alert_rules as rules
from headend.services.programmes_time import quiet_hours
from headend.settings import Settings

T = rules.Thresholds(low_rssi_dbm=-85, flash_full_pct=90, unsynced_after_s=300,
                     battery_low_v=11.5)
CAPS = {"cache_total": 1000}
HANOI = ZoneInfo("Asia/Ho_Chi_Minh")


def healthy(**changes):
    telemetry = {"boot": 1, "conn": 1, "up": 600, "mains": 1, "dc": 13.6, "rssi": -60,
                 "cu": 100, "sy": 1}
    telemetry.update(changes)
    return {k: v for k, v in telemetry.items() if v is not None}


def judged(telemetry, open_kinds=()):
    holds, unknown = rules.judge_telemetry(telemetry, CAPS, T, set(open_kinds))
    return set(holds), unknown


def test_a_healthy_receiver_has_nothing_wrong_and_everything_known():
    assert judged(healthy()) == (set(), set())


def test_each_telemetry_kind_holds_on_its_figure():
    assert judged(healthy(mains=0, dc=12.4))[0] == {rules.ON_BATTERY}
    assert judged(healthy(af=1))[0] == {rules.AMP_FAULT}
    assert judged(healthy(rssi=-90))[0] == {rules.LOW_SIGNAL}
    assert judged(healthy(cu=950))[0] == {rules.FLASH_FULL}
    assert judged(healthy(sy=None))[0] == {rules.CLOCK_UNSYNCED}  # left out at 0


def test_on_battery_keeps_the_dc_it_started_at():
    holds, _ = rules.judge_telemetry(healthy(mains=0, dc=12.4), CAPS, T)
    assert holds[rules.ON_BATTERY].detail == {"dc": 12.4}


def test_missing_figures_are_unknown_not_over():
    _, unknown = judged(healthy(mains=None, rssi=None, cu=None))
    assert unknown == {rules.ON_BATTERY, rules.LOW_SIGNAL, rules.FLASH_FULL}
    holds, unknown = rules.judge_telemetry(healthy(), None, T)  # no cache size in the birth
    assert rules.FLASH_FULL in unknown


def test_an_unsynced_clock_has_a_grace_after_boot():
    assert judged(healthy(sy=None, up=100)) == (set(), {rules.CLOCK_UNSYNCED})
    assert judged(healthy(sy=None, up=300))[0] == {rules.CLOCK_UNSYNCED}


def test_signal_and_flash_need_a_margin_to_be_over():
    # Raised below -85 dBm; while open, over only from -80 dBm.
    assert judged(healthy(rssi=-83))[0] == set()
    assert judged(healthy(rssi=-83), {rules.LOW_SIGNAL})[0] == {rules.LOW_SIGNAL}
    assert judged(healthy(rssi=-80), {rules.LOW_SIGNAL})[0] == set()
    assert judged(healthy(cu=870))[0] == set()
    assert judged(healthy(cu=870), {rules.FLASH_FULL})[0] == {rules.FLASH_FULL}
    assert judged(healthy(cu=840), {rules.FLASH_FULL})[0] == set()


def test_offline_reason_power_lost_needs_a_battery_draining():
    on_battery = healthy(mains=0, dc=12.1)
    assert rules.offline_reason(on_battery, battery_start_dc=12.6, thresholds=T) == \
        rules.POWER_LOST
    # On battery with a DC that held: the link went, not the power.
    assert rules.offline_reason(on_battery, battery_start_dc=12.1, thresholds=T) == \
        rules.LINK_LOST
    # At the battery's low mark: drained, whatever it started at.
    assert rules.offline_reason(healthy(mains=0, dc=11.4), thresholds=T) == rules.POWER_LOST
    assert rules.offline_reason(healthy(), battery_start_dc=12.6, thresholds=T) == \
        rules.LINK_LOST
    assert rules.offline_reason(None, thresholds=T) == rules.LINK_LOST


def test_offline_reason_rebooting_when_told_to():
    assert rules.offline_reason(healthy(mains=0, dc=11.0), reboot_requested=True) == \
        rules.REBOOTING
    assert rules.severity(rules.OFFLINE, rules.REBOOTING) == rules.INFO
    assert rules.severity(rules.OFFLINE, rules.POWER_LOST) == rules.CRITICAL


def local(hour, minute=0, day=3):
    return datetime(2026, 12, day, hour, minute, tzinfo=HANOI).astimezone(UTC)


def policy(**changes):
    values = dict(quiet=quiet_hours("22:00", "05:00"), zone=HANOI,
                  urgent_kinds=frozenset({rules.OFFLINE}), repeat=timedelta(hours=12),
                  reboot_grace=timedelta(seconds=180))
    values.update(changes)
    return rules.Policy(**values)


def test_quiet_hours_hold_what_is_not_urgent_until_they_end():
    p = policy()
    night = local(23, 30)
    assert p.due_at(rules.ON_BATTERY, None, rules.RAISED, night) == local(5, 0, day=4)
    assert p.due_at(rules.ON_BATTERY, None, rules.CLEARED, local(4, 59)) == local(5, 0)
    assert p.due_at(rules.OFFLINE, rules.POWER_LOST, rules.RAISED, night) == night  # urgent
    day = local(14, 0)
    assert p.due_at(rules.ON_BATTERY, None, rules.RAISED, day) == day
    assert p.due_at(rules.ON_BATTERY, None, rules.RAISED, local(5, 0)) == local(5, 0)
    # No quiet hours (start = end), and every kind urgent.
    assert policy(quiet=quiet_hours("00:00", "00:00")).due_at(
        rules.ON_BATTERY, None, rules.RAISED, night) == night
    assert policy(urgent_kinds=frozenset(rules.KINDS)).due_at(
        rules.AMP_FAULT, None, rules.RAISED, night) == night


def test_a_rebooting_receiver_has_a_grace_before_its_notice():
    p = policy()
    day = local(10, 0)
    assert p.due_at(rules.OFFLINE, rules.REBOOTING, rules.RAISED, day) == \
        day + timedelta(seconds=180)
    assert p.due_at(rules.OFFLINE, rules.REBOOTING, rules.CLEARED, day) == day
    # Non-urgent and at night: the grace, then the end of the quiet hours.
    assert policy(urgent_kinds=frozenset()).due_at(
        rules.OFFLINE, rules.REBOOTING, rules.RAISED, local(4, 50)) == local(5, 0)


def test_repeat_after_the_interval_or_never():
    p = policy()
    noticed = local(8, 0)
    assert not p.repeat_due(noticed, noticed + timedelta(hours=11, minutes=59))
    assert p.repeat_due(noticed, noticed + timedelta(hours=12))
    assert not p.repeat_due(None, noticed + timedelta(days=2))
    assert not policy(repeat=None).repeat_due(noticed, noticed + timedelta(days=30))


def test_policy_from_settings():
    p = rules.Policy.from_settings(Settings(alert_repeat_h=0, alert_quiet_start="21:00",
                                            alert_urgent_kinds=["offline", "amp-fault"]))
    assert p.repeat is None
    assert str(p.quiet) == "21:00–05:00"
    assert p.urgent_kinds == {"offline", "amp-fault"}
    assert rules.Policy.from_settings(Settings()).repeat == timedelta(hours=12)


def test_alert_settings_typed_wrong_are_refused_in_words():
    import pytest
    from pydantic import ValidationError

    for bad, words in (({"alert_urgent_kinds": ["offine"]}, "unknown kind offine"),
                       ({"alert_webhook_url": "hooks.example/x"}, "http:// or https://"),
                       ({"alert_smtp_host": "smtp.example"}, "LOAXA_ALERT_EMAIL_TO"),
                       ({"alert_quiet_start": "25:00"}, "HH:MM")):
        with pytest.raises(ValidationError, match=words):
            Settings(**bad)
