"""When a programme airs: its RRULE expanded by python-dateutil in the site's time zone, and
the quiet hours.

The rule is read with ``rrulestr`` and DTSTART in the site's zone, so ``BYHOUR=5;BYMINUTE=30``
means 05:30 on the commune's clocks (22:30 UTC the day before in Asia/Ho_Chi_Minh); every time
that leaves this module is aware UTC. No recurrence logic of our own: dateutil's rruleset with
the EXDATEs, then the stored exceptions (skipped, moved) applied by the caller.
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

from dateutil.rrule import rrule, rruleset, rrulestr

from headend.errors import Invalid

# More occurrences than this in one expansion is a rule typed wrong (FREQ=SECONDLY, a minutely
# rule without an end read over months): refused rather than expanded.
MAX_OCCURRENCES = 20000
_REFUSED_FREQUENCIES = ("SECONDLY",)


def parse_rule(text: str | None) -> str | None:
    """The RRULE as stored (no "RRULE:" prefix, upper case), or None for a one-off; Invalid
    "bad-rrule" for anything else than one RFC 5545 RRULE that dateutil reads."""
    if text is None or not str(text).strip():
        return None
    if not isinstance(text, str):
        raise _bad_rule("the rule must be text")
    rule = text.strip()
    if rule.upper().startswith("RRULE:"):
        rule = rule[6:]
    rule = rule.upper()
    if "\n" in rule or "\r" in rule or "DTSTART" in rule or ":" in rule:
        raise _bad_rule("give one RRULE only (the start is the programme's own)")
    if any("FREQ=" + freq in rule for freq in _REFUSED_FREQUENCIES):
        raise _bad_rule("FREQ=SECONDLY is not a broadcast schedule")
    probe = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        rrulestr(rule, dtstart=probe)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise _bad_rule(str(exc) or "unreadable") from None
    return rule


def _bad_rule(why: str) -> Invalid:
    return Invalid("bad-rrule", "the recurrence rule is not valid: %s" % why,
                   "Quy tắc lặp lại không hợp lệ: %s" % why)


def rule_set(*, start: datetime, rule: str | None, exdates: Iterable[datetime],
             zone: tzinfo) -> rruleset:
    """dateutil's set of a programme's slots (aware, in ``zone``), EXDATEs taken out."""
    dtstart = start.astimezone(zone)
    slots = rruleset()
    if rule is None:
        slots.rdate(dtstart)
    else:
        try:
            parsed = rrulestr(rule, dtstart=dtstart)
        except ValueError as exc:  # e.g. an UNTIL without Z under an aware start
            raise _bad_rule(str(exc)) from None
        if not isinstance(parsed, rrule):
            raise _bad_rule("give one RRULE only")
        slots.rrule(parsed)
    for exdate in exdates:
        slots.exdate(exdate.astimezone(zone))
    return slots


def slots_between(slots: rruleset, start: datetime, end: datetime) -> list[datetime]:
    """The slots in [start, end), as aware UTC; Invalid if there are absurdly many."""
    out = []
    for slot in slots.xafter(start, inc=True):
        if slot >= end:
            break
        out.append(slot.astimezone(UTC))
        if len(out) > MAX_OCCURRENCES:
            raise Invalid("too-many-occurrences",
                          "the rule gives more than %d occurrences in the period asked"
                          % MAX_OCCURRENCES,
                          "Quy tắc lặp lại cho quá %d lần phát trong khoảng thời gian này"
                          % MAX_OCCURRENCES)
    return out


def parse_exdates(values: Any) -> list[datetime]:
    """EXDATEs from the API: a list of aware ISO times (aware datetimes pass through)."""
    if values is None:
        return []
    if not isinstance(values, list):
        raise Invalid("bad-exdates", "exdates must be a list of times",
                      "Danh sách ngày bỏ qua không hợp lệ")
    return [aware(value, "exdates") for value in values]


def aware(value: Any, field: str) -> datetime:
    """An aware datetime from a datetime or an ISO string, in UTC; Invalid otherwise."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise Invalid("bad-time", "%s: %r is not an ISO 8601 time" % (field, value),
                          "%s: %r không phải là thời điểm hợp lệ" % (field, value)) from None
    if not isinstance(value, datetime):
        raise Invalid("bad-time", "%s must be an ISO 8601 time" % field,
                      "%s phải là thời điểm hợp lệ" % field)
    if value.tzinfo is None:
        raise Invalid("naive-time", "%s needs a time zone (e.g. +07:00 or Z)" % field,
                      "%s cần có múi giờ (ví dụ +07:00)" % field)
    return value.astimezone(UTC)


def local_text(at: datetime, zone: tzinfo) -> str:
    """A time as the commune reads it: "05:30 08/12/2026"."""
    return at.astimezone(zone).strftime("%H:%M %d/%m/%Y")


# -- quiet hours -------------------------------------------------------------------------------

class QuietHours(NamedTuple):
    start: time
    end: time  # before ``start``: the quiet hours run across midnight

    def __str__(self) -> str:
        return "%s–%s" % (self.start.strftime("%H:%M"), self.end.strftime("%H:%M"))


def quiet_hours(start: str, end: str) -> QuietHours:
    """The quiet hours from the settings' "HH:MM" strings (a setting typed wrong is a
    ValueError at start, not a silent 'never quiet')."""
    return QuietHours(time.fromisoformat(start), time.fromisoformat(end))


def _quiet_windows(day: date, quiet: QuietHours, zone: tzinfo):
    begin = datetime.combine(day, quiet.start, zone)
    end_day = day + timedelta(days=1) if quiet.end <= quiet.start else day
    yield begin, datetime.combine(end_day, quiet.end, zone)


def hours_on(day: date, hours: QuietHours, zone: tzinfo) -> tuple[datetime, datetime] | None:
    """[start, end) in UTC of the daily ``hours`` that begin on the local ``day`` (None: the
    hours are empty)."""
    if hours.start == hours.end:
        return None
    begin, end = next(_quiet_windows(day, hours, zone))
    return begin.astimezone(UTC), end.astimezone(UTC)


def in_quiet_hours(start: datetime, end: datetime, quiet: QuietHours, zone: tzinfo) -> bool:
    """True if [start, end) meets the quiet hours on the commune's clocks."""
    if quiet.start == quiet.end:
        return False  # no quiet hours configured
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    day = first
    while day <= last:
        for begin, finish in _quiet_windows(day, quiet, zone):
            if start < finish and begin < end:
                return True
        day += timedelta(days=1)
    return False


def quiet_hours_end(at: datetime, quiet: QuietHours, zone: tzinfo) -> datetime | None:
    """When the quiet hours ``at`` falls in end (UTC), or None if ``at`` is outside them."""
    if quiet.start == quiet.end:
        return None
    day = at.astimezone(zone).date() - timedelta(days=1)
    for offset in range(2):
        for begin, finish in _quiet_windows(day + timedelta(days=offset), quiet, zone):
            if begin <= at < finish:
                return finish.astimezone(UTC)
    return None
