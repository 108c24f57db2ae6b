"""The station's calendar as iCalendar (RFC 5545), written by the ``icalendar`` package.

One VEVENT per programme (DTSTART in the site's zone, its RRULE and EXDATEs, a DURATION from
its segments); a skipped occurrence is one more EXDATE, a moved one a VEVENT of its own with
the RECURRENCE-ID of its slot, so a calendar program shows what will air. Which programmes:
the approved ones unless asked otherwise. (Import of an .ics is left for later.)
"""

from datetime import UTC, datetime, timedelta

from icalendar import Calendar, Event, vRecur
from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.models import (
    OCCURRENCE_MOVED,
    OCCURRENCE_SKIPPED,
    PROGRAMME_APPROVED,
    Programme,
    ProgrammeOccurrence,
)
from headend.services import programme_media, programmes_time
from headend.settings import Settings

PRODID = "-//Loaxa//head-end programmes//VI"


def calendar_ics(session: Session, *, settings: Settings,
                 states: tuple[str, ...] = (PROGRAMME_APPROVED,),
                 now: datetime | None = None) -> bytes:
    now = now or datetime.now(UTC)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", settings.site_name)
    calendar.add("x-wr-timezone", settings.timezone)
    zone = settings.tz
    for programme in session.scalars(select(Programme).where(Programme.state.in_(states))
                                     .order_by(Programme.start_at)):
        length = timedelta(milliseconds=programme_media.estimated_duration_ms(
            session, programme.segments))
        uid = "%s@%s.loaxa" % (programme.id, settings.site_id)
        rows = list(session.scalars(select(ProgrammeOccurrence).where(
            ProgrammeOccurrence.programme_id == programme.id)
            .order_by(ProgrammeOccurrence.slot)))
        event = _event(programme, uid, programme.start_at.astimezone(zone), length, now)
        if programme.rrule:
            event.add("rrule", vRecur.from_ical(programme.rrule))
        exdates = [programmes_time.aware(x, "exdates") for x in programme.exdates or ()]
        exdates += [row.slot for row in rows if row.state == OCCURRENCE_SKIPPED]
        if exdates:
            event.add("exdate", [x.astimezone(zone) for x in sorted(exdates)])
        calendar.add_component(event)
        for row in rows:
            if row.state == OCCURRENCE_MOVED:
                moved = _event(programme, uid, row.start_at.astimezone(zone), length, now)
                moved.add("recurrence-id", row.slot.astimezone(zone))
                calendar.add_component(moved)
    calendar.add_missing_timezones()
    return calendar.to_ical()


def _event(programme: Programme, uid: str, start: datetime, length: timedelta,
           now: datetime) -> Event:
    event = Event()
    event.add("uid", uid)
    event.add("summary", programme.title)
    event.add("dtstart", start)
    event.add("duration", length)
    event.add("dtstamp", now)
    event.add("sequence", programme.revision)
    event.add("categories", [programme.priority])
    event.add("description", "Nơi phát / targets: %s" % _targets_text(programme.targets))
    return event


def _targets_text(targets: dict) -> str:
    if targets.get("all"):
        return "toàn xã (all)"
    if targets.get("zones"):
        return "thôn/xóm (zones): " + ", ".join(targets["zones"])
    return "cụm loa (devices): " + ", ".join(targets.get("devices") or ())
