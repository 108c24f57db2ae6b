"""An iCalendar file (.ics) made into draft programmes, read by the ``icalendar`` package.

Each VEVENT becomes one draft through ``programmes.create_programme`` (so the guard rails
and the audit log apply): SUMMARY is the title, DTSTART the start (a TZID or UTC time; a
floating time is read on the commune's clocks), its one RRULE and its EXDATEs as they are,
CATEGORIES "priority" the class; a VEVENT with a RECURRENCE-ID (one occurrence moved, as
headend/services/programmes_ics.py exports it) moves that occurrence of the draft made from
its master event. A calendar has no sound and no loudspeakers: the caller gives the segments
and targets every imported draft gets (the editor completes each one before submitting it).

What cannot be mapped is refused with a message naming the event, in Vietnamese and English,
and the rest is still imported: an all-day event (no air time), RDATE or EXRULE, more than one
RRULE, a moved occurrence whose master event is not in the file. A file that is not an
iCalendar, or has no event, is refused as a whole (Invalid).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from icalendar import Calendar
from sqlalchemy.orm import Session

from headend.commands import Publisher
from headend.errors import Invalid, ServiceError
from headend.models import Programme, User
from headend.services import programmes, programmes_time
from headend.settings import Settings

MAX_EVENTS = 200
MAX_BYTES = 1 << 20


@dataclass
class Refusal:
    summary: str
    message: str
    message_vi: str


@dataclass
class ImportResult:
    created: list[Programme] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


class _Unmappable(Exception):
    def __init__(self, message: str, message_vi: str):
        super().__init__(message)
        self.message, self.message_vi = message, message_vi


def parse_calendar(data: bytes) -> list[Any]:
    """The VEVENTs of an .ics file; Invalid for anything else."""
    if len(data) > MAX_BYTES:
        raise Invalid("ics-too-large", "the calendar file is larger than 1 MB",
                      "Tệp lịch lớn hơn 1 MB")
    try:
        calendar = Calendar.from_ical(data)
    except (ValueError, IndexError, KeyError, UnicodeDecodeError) as exc:
        raise Invalid("bad-ics", "the file is not an iCalendar (.ics) file: %s" % exc,
                      "Tệp không phải là lịch iCalendar (.ics): %s" % exc) from None
    events = list(calendar.walk("VEVENT"))
    if not events:
        raise Invalid("no-events", "the calendar file has no event (VEVENT)",
                      "Tệp lịch không có sự kiện nào (VEVENT)")
    if len(events) > MAX_EVENTS:
        raise Invalid("too-many-events", "at most %d events in one file" % MAX_EVENTS,
                      "Tối đa %d sự kiện trong một tệp" % MAX_EVENTS)
    return events


def _summary(event: Any) -> str:
    return str(event.get("summary") or "").strip()


def _start(event: Any, settings: Settings, name: str) -> datetime:
    if event.get("dtstart") is None:
        raise _Unmappable("%s: no DTSTART" % name, "%s: thiếu thời điểm bắt đầu (DTSTART)" % name)
    value = event.decoded("dtstart")
    if not isinstance(value, datetime):  # a date
        raise _Unmappable("%s: an all-day event has no air time" % name,
                          "%s: sự kiện cả ngày không có giờ phát" % name)
    if value.tzinfo is None:
        value = value.replace(tzinfo=settings.tz)  # floating: the commune's clocks
    return value


def _rule(event: Any, name: str) -> str | None:
    for unsupported, vi in (("rdate", "ngày phát thêm (RDATE)"),
                            ("exrule", "quy tắc loại trừ (EXRULE)")):
        if event.get(unsupported) is not None:
            raise _Unmappable("%s: %s is not supported" % (name, unsupported.upper()),
                              "%s: chưa hỗ trợ %s" % (name, vi))
    rule = event.get("rrule")
    if rule is None:
        return None
    if isinstance(rule, list):
        raise _Unmappable("%s: more than one RRULE" % name,
                          "%s: chỉ hỗ trợ một quy tắc lặp lại (RRULE)" % name)
    return rule.to_ical().decode()


def _exdates(event: Any, settings: Settings) -> list[datetime]:
    found = event.get("exdate")
    lists = found if isinstance(found, list) else [found] if found is not None else []
    out = []
    for item in lists:
        for value in item.dts:
            dt = value.dt
            if isinstance(dt, datetime):
                out.append(dt if dt.tzinfo else dt.replace(tzinfo=settings.tz))
    return out


def _priority(event: Any) -> str:
    found = event.get("categories")
    lists = found if isinstance(found, list) else [found] if found is not None else []
    words = {str(c).lower() for item in lists for c in getattr(item, "cats", [])}
    return "priority" if "priority" in words or "ưu tiên" in words else "normal"


def import_calendar(session: Session, *, settings: Settings, publisher: Publisher, data: bytes,
                    segments: list[dict[str, Any]], targets: dict[str, Any],
                    actor: User | str | None, now: datetime | None = None) -> ImportResult:
    """Draft programmes from the file's events (see the module docstring)."""
    events = parse_calendar(data)
    result = ImportResult()
    masters: dict[str, Programme] = {}
    moved = []
    for number, event in enumerate(events, 1):
        name = "«%s»" % (_summary(event) or "#%d" % number)
        if event.get("recurrence-id") is not None:
            moved.append((name, event))
            continue
        try:
            fields = {"title": _summary(event) or None, "segments": segments,
                      "targets": targets, "priority": _priority(event),
                      "start": _start(event, settings, name), "rrule": _rule(event, name),
                      "exdates": _exdates(event, settings)}
            if fields["title"] is None:
                raise _Unmappable("event #%d has no SUMMARY (title)" % number,
                                  "Sự kiện thứ %d không có tên (SUMMARY)" % number)
            programme = programmes.create_programme(session, settings=settings, fields=fields,
                                                    actor=actor, now=now)
        except _Unmappable as exc:
            result.refused.append(Refusal(name, exc.message, exc.message_vi))
            continue
        except ServiceError as exc:
            session.rollback()
            result.refused.append(Refusal(name, "%s: %s" % (name, exc.message),
                                          "%s: %s" % (name, exc.message_vi)))
            continue
        result.created.append(programme)
        masters[str(event.get("uid") or "")] = programme
    for name, event in moved:
        master = masters.get(str(event.get("uid") or ""))
        try:
            if master is None:
                raise _Unmappable(
                    "%s: changes one occurrence of an event not in the file (or refused)" % name,
                    "%s: sửa một lần phát của sự kiện không có trong tệp (hoặc bị từ chối)"
                    % name)
            slot = event.decoded("recurrence-id")
            if not isinstance(slot, datetime):
                raise _Unmappable("%s: RECURRENCE-ID has no time" % name,
                                  "%s: RECURRENCE-ID không có giờ" % name)
            programmes.move_occurrence(
                session, settings=settings, publisher=publisher, programme_id=master.id,
                slot=programmes_time.aware(
                    slot if slot.tzinfo else slot.replace(tzinfo=settings.tz), "RECURRENCE-ID"),
                to=_start(event, settings, name), actor=actor, now=now)
        except _Unmappable as exc:
            result.refused.append(Refusal(name, exc.message, exc.message_vi))
        except ServiceError as exc:
            session.rollback()
            result.refused.append(Refusal(name, "%s: %s" % (name, exc.message),
                                          "%s: %s" % (name, exc.message_vi)))
    return result
