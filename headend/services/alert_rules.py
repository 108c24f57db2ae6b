"""The alert rules: what is wrong with a receiver, judged from what the head-end knows of it,
and when a notice of it may go out. Pure functions of their arguments (no database, no
clock), so every rule is tested alone (tests/headend/test_alert_rules.py); the engine that
keeps alerts in the database and the delivery of notices are in headend/services/alerts.py.

Kinds (one open alert per receiver and kind at a time):

- ``offline``: the head-end counts the receiver offline (its will, or silence past its
  allowance: protocol/presence.py). The reason is inferred when it goes: ``rebooting`` (a
  reboot command was sent to it shortly before), ``power-lost`` (its last heartbeat showed
  it on battery with the DC falling, or at the battery's low mark: mains lost, then the
  battery drained), else ``link-lost`` (the link went while it still had power). Over when it
  is back online: that is the "back online" notice.
- From the latest heartbeat of the receiver's current session (while it is offline, or
  before its first heartbeat after a return, they stay as they were):
  ``on-battery`` (mains 0), ``amp-fault`` (af 1), ``low-signal`` (rssi below the mark; over
  5 dB above it, so a signal at the mark does not flap), ``flash-full`` (media cache used
  over its budget at the mark; over 5 points below it), ``clock-unsynced`` (not synced
  ``unsynced_after_s`` after its boot).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from headend.services.programmes_time import QuietHours, quiet_hours, quiet_hours_end

OFFLINE = "offline"
ON_BATTERY = "on-battery"
AMP_FAULT = "amp-fault"
LOW_SIGNAL = "low-signal"
FLASH_FULL = "flash-full"
CLOCK_UNSYNCED = "clock-unsynced"
KINDS = (OFFLINE, ON_BATTERY, AMP_FAULT, LOW_SIGNAL, FLASH_FULL, CLOCK_UNSYNCED)
TELEMETRY_KINDS = KINDS[1:]

POWER_LOST = "power-lost"
LINK_LOST = "link-lost"
REBOOTING = "rebooting"
OFFLINE_REASONS = (POWER_LOST, LINK_LOST, REBOOTING)

RAISED, REPEAT, CLEARED = "raised", "repeat", "cleared"
EVENTS = (RAISED, REPEAT, CLEARED)

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES = (CRITICAL, WARNING, INFO)
_SEVERITY = {OFFLINE: CRITICAL, AMP_FAULT: CRITICAL, ON_BATTERY: WARNING,
             LOW_SIGNAL: WARNING, FLASH_FULL: WARNING, CLOCK_UNSYNCED: WARNING}

HYSTERESIS = 5     # dB for the signal, percentage points for the flash
DC_FALL_V = 0.05   # a DC this much below the one at the start of the battery time is falling


@dataclass(frozen=True)
class Condition:
    """A kind that holds now, and the figures that show it (kept on the alert)."""

    kind: str
    reason: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class Thresholds:
    low_rssi_dbm: int = -85
    flash_full_pct: int = 90
    unsynced_after_s: int = 300
    battery_low_v: float = 11.5

    @classmethod
    def from_settings(cls, settings) -> "Thresholds":
        return cls(settings.alert_low_rssi_dbm, settings.alert_flash_full_pct,
                   settings.alert_unsynced_after_s, settings.alert_battery_low_v)


def severity(kind: str, reason: str | None = None) -> str:
    if kind == OFFLINE and reason == REBOOTING:
        return INFO
    return _SEVERITY.get(kind, WARNING)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def judge_telemetry(telemetry: dict[str, Any], capabilities: dict[str, Any] | None,
                    thresholds: Thresholds, open_kinds: set[str] | frozenset[str] = frozenset()
                    ) -> tuple[dict[str, Condition], set[str]]:
    """From one checked heartbeat (and the birth's capabilities): the telemetry kinds that
    hold, and those it cannot tell (a figure missing, the clock's grace after a boot), which
    stay as they are. Every other telemetry kind is over. ``open_kinds``: the kinds open now
    (the marks to clear them are past the marks to raise them)."""
    holds: dict[str, Condition] = {}
    unknown: set[str] = set()
    mains, dc = telemetry.get("mains"), telemetry.get("dc")
    if mains == 0:
        holds[ON_BATTERY] = Condition(ON_BATTERY, detail={"dc": dc if _number(dc) else None})
    elif mains != 1:
        unknown.add(ON_BATTERY)  # no mains sense on this board
    if telemetry.get("af") == 1:  # left out at 0
        holds[AMP_FAULT] = Condition(AMP_FAULT)
    rssi = telemetry.get("rssi")
    if _number(rssi):
        mark = thresholds.low_rssi_dbm + (HYSTERESIS if LOW_SIGNAL in open_kinds else 0)
        if rssi < mark:
            holds[LOW_SIGNAL] = Condition(LOW_SIGNAL, detail={"rssi": rssi})
    else:
        unknown.add(LOW_SIGNAL)
    used = telemetry.get("cu")
    total = capabilities.get("cache_total") if isinstance(capabilities, dict) else None
    if _number(used) and _number(total) and total > 0:
        pct = used * 100 // total
        mark = thresholds.flash_full_pct - (HYSTERESIS if FLASH_FULL in open_kinds else 0)
        if pct >= mark:
            holds[FLASH_FULL] = Condition(FLASH_FULL, detail={"used": used, "total": total,
                                                              "pct": pct})
    else:
        unknown.add(FLASH_FULL)
    if telemetry.get("sy") != 1:  # left out at 0
        up = telemetry.get("up")
        if _number(up) and up >= thresholds.unsynced_after_s:
            holds[CLOCK_UNSYNCED] = Condition(CLOCK_UNSYNCED, detail={"up": up})
        else:
            unknown.add(CLOCK_UNSYNCED)  # still in its grace after a boot
    return holds, unknown


def offline_reason(telemetry: dict[str, Any] | None, *, battery_start_dc: Any = None,
                   reboot_requested: bool = False, thresholds: Thresholds = Thresholds()
                   ) -> str:
    """Why a receiver that just went offline is silent, from its last heartbeat: rebooting
    (told to), power lost (it was on battery and the DC was falling since the battery took
    over, or at the battery's low mark), else link lost while powered."""
    if reboot_requested:
        return REBOOTING
    telemetry = telemetry if isinstance(telemetry, dict) else {}
    dc = telemetry.get("dc")
    if telemetry.get("mains") == 0 and _number(dc):
        if dc <= thresholds.battery_low_v:
            return POWER_LOST
        if _number(battery_start_dc) and dc <= battery_start_dc - DC_FALL_V:
            return POWER_LOST
    return LINK_LOST


# -- when notices go out -------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """Quiet hours (local), the kinds notified in them anyway, the repeat interval (None:
    never) and how long an offline alert of a rebooting receiver waits before it is sent."""

    quiet: QuietHours
    zone: tzinfo
    urgent_kinds: frozenset[str] = frozenset({OFFLINE})
    repeat: timedelta | None = timedelta(hours=12)
    reboot_grace: timedelta = timedelta(seconds=180)

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        repeat = settings.alert_repeat_h
        return cls(quiet_hours(settings.alert_quiet_start, settings.alert_quiet_end),
                   settings.tz, frozenset(settings.alert_urgent_kinds),
                   timedelta(hours=repeat) if repeat > 0 else None,
                   timedelta(seconds=settings.alert_reboot_grace_s))

    def due_at(self, kind: str, reason: str | None, event: str, now: datetime) -> datetime:
        """When a notice of ``event`` (raised, repeat, cleared) of an alert may go out."""
        due = now
        if kind == OFFLINE and reason == REBOOTING and event == RAISED:
            due = now + self.reboot_grace  # dropped if it is back by then
        if kind not in self.urgent_kinds:
            due = quiet_hours_end(due, self.quiet, self.zone) or due
        return due

    def repeat_due(self, noticed_at: datetime | None, now: datetime) -> bool:
        """Whether an alert still open, last notified (due) at ``noticed_at``, is due again."""
        return (self.repeat is not None and noticed_at is not None
                and now >= noticed_at + self.repeat)
