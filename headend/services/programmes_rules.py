"""Guard rails a programme passes on every save, submit and approval.

- **Volume**: a programme's volume above the limit of a zone it reaches, or above its
  early-morning limit for an occurrence in the early hours (default 05:00-07:00; Invalid 422).
- **Quiet hours**: a normal programme that airs in the site's quiet hours (default
  22:00-05:00, local) is refused (Invalid 422) unless confirmed: ``confirm_quiet`` from a
  role holding "programmes.approve" confirms it; from an editor it asks for it, and the
  approval then needs the leader's ``confirm_quiet``. A change of time clears both.
- **Overlap**: two programmes of the same class that air at the same time on one receiver
  (Conflict 409), against the submitted and approved programmes, over the next
  ``programme_horizon_days`` of occurrences; durations from the segments (programme_media).

Every refusal names the other programme or zone and the local time, in English and Vietnamese.
"""

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.errors import Conflict, Invalid
from headend.models import (
    PROGRAMME_APPROVED,
    PROGRAMME_SUBMITTED,
    Programme,
    Receiver,
    User,
    Zone,
)
from headend.security import has_permission
from headend.services import broadcasts, programme_media, programmes_time
from headend.settings import Settings

# Programmes another one may not overlap: drafts are not plans yet.
PLANNED_STATES = (PROGRAMME_SUBMITTED, PROGRAMME_APPROVED)
CLASS_VI = {"normal": "thông thường", "priority": "ưu tiên"}


def check(session: Session, *, settings: Settings, programme: Programme,
          actor: User | str | None, confirm_quiet: bool, now: datetime,
          approving: bool = False) -> None:
    receivers = broadcasts.resolve_targets(session, programme.targets)
    _check_volume(session, programme, receivers)
    intervals = airing_intervals(session, settings=settings, programme=programme, now=now)
    _check_early_volume(session, settings, programme, receivers, intervals)
    if programme.priority == "normal":
        _check_quiet(settings, programme, intervals, actor, confirm_quiet, approving)
    _check_overlap(session, settings, programme, {r.id for r in receivers}, intervals, now)


def airing_intervals(session: Session, *, settings: Settings, programme: Programme,
                     now: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) of each occurrence (skipped ones left out) within the horizon."""
    from headend.services.programmes import horizon, occurrences

    begin, end = horizon(settings, now)
    length = timedelta(milliseconds=programme_media.estimated_duration_ms(
        session, programme.segments))
    return [(o.start, o.start + length) for o in occurrences(
        session, settings=settings, programme=programme, start=begin - length, end=end,
        include_skipped=False)]


def _check_volume(session: Session, programme: Programme, receivers: list[Receiver]) -> None:
    if programme.volume is None:
        return
    zone_ids = {r.zone_id for r in receivers if r.zone_id}
    for zone in session.scalars(select(Zone).where(Zone.id.in_(zone_ids)).order_by(Zone.id)):
        if zone.volume_limit is not None and programme.volume > zone.volume_limit:
            raise Invalid("volume-above-limit",
                          "volume %d is above the limit %d of zone %s (%s)"
                          % (programme.volume, zone.volume_limit, zone.name, zone.id),
                          "Âm lượng %d vượt giới hạn %d của %s (%s)"
                          % (programme.volume, zone.volume_limit, zone.name, zone.id))


def _check_early_volume(session: Session, settings: Settings, programme: Programme,
                        receivers: list[Receiver],
                        intervals: list[tuple[datetime, datetime]]) -> None:
    """A volume above a zone's early-morning limit, for an occurrence in the early hours
    (the receivers would refuse it: better said when saving)."""
    if programme.volume is None:
        return
    early = programmes_time.quiet_hours(settings.early_hours_start, settings.early_hours_end)
    first = next((start for start, end in intervals
                  if programmes_time.in_quiet_hours(start, end, early, settings.tz)), None)
    if first is None:
        return
    zone_ids = {r.zone_id for r in receivers if r.zone_id}
    for zone in session.scalars(select(Zone).where(Zone.id.in_(zone_ids)).order_by(Zone.id)):
        limit = zone.early_volume_limit
        if limit is not None and programme.volume > limit:
            when = programmes_time.local_text(first, settings.tz)
            raise Invalid("volume-above-early-limit",
                          "volume %d is above the early-morning limit %d (%s) of zone %s (%s) "
                          "at %s" % (programme.volume, limit, early, zone.name, zone.id, when),
                          "Âm lượng %d vượt giới hạn buổi sáng sớm %d (%s) của %s (%s) lúc %s"
                          % (programme.volume, limit, early, zone.name, zone.id, when))


def _check_quiet(settings: Settings, programme: Programme,
                 intervals: list[tuple[datetime, datetime]], actor: User | str | None,
                 confirm_quiet: bool, approving: bool) -> None:
    quiet = programmes_time.quiet_hours(settings.quiet_hours_start, settings.quiet_hours_end)
    first = next((start for start, end in intervals
                  if programmes_time.in_quiet_hours(start, end, quiet, settings.tz)), None)
    if first is None:
        return
    leader = not isinstance(actor, User) or has_permission(actor.role, "programmes.approve")
    name = actor.username if isinstance(actor, User) else actor
    if confirm_quiet and leader:
        programme.quiet_confirmed_by = name
    elif confirm_quiet:
        programme.quiet_requested_by = name
    if programme.quiet_confirmed_by:
        return
    when = programmes_time.local_text(first, settings.tz)
    if approving:
        raise Invalid("quiet-hours-unconfirmed",
                      "%s airs at %s, inside the quiet hours %s: approve with "
                      '"confirm_quiet": true to confirm it' % (programme.title, when, quiet),
                      "%s phát lúc %s, trong giờ yên tĩnh %s: cần xác nhận phát trong giờ yên "
                      "tĩnh khi duyệt" % (programme.title, when, quiet))
    if programme.quiet_requested_by:
        return  # the leader confirms it when approving
    raise Invalid("quiet-hours",
                  "%s would air at %s, inside the quiet hours %s; send "
                  '"confirm_quiet": true (a leader confirms it)' % (programme.title, when, quiet),
                  "%s sẽ phát lúc %s, trong giờ yên tĩnh %s; cần xác nhận (lãnh đạo duyệt) "
                  "để phát trong giờ này" % (programme.title, when, quiet))


def _check_overlap(session: Session, settings: Settings, programme: Programme,
                   receiver_ids: set[str], intervals: list[tuple[datetime, datetime]],
                   now: datetime) -> None:
    if not intervals:
        return
    others = session.scalars(select(Programme).where(
        Programme.state.in_(PLANNED_STATES), Programme.priority == programme.priority,
        Programme.id != programme.id).order_by(Programme.start_at))
    for other in others:
        try:
            shared = receiver_ids & {r.id for r in broadcasts.resolve_targets(session,
                                                                              other.targets)}
        except Invalid:  # its targets have no receiver left
            continue
        if not shared:
            continue
        theirs = airing_intervals(session, settings=settings, programme=other, now=now)
        clash = first_overlap(intervals, theirs)
        if clash is not None:
            when = programmes_time.local_text(clash, settings.tz)
            raise Conflict("programme-overlap",
                           "overlaps %s programme %r (%s) at %s (%s) on %d receiver(s)"
                           % (programme.priority, other.title, other.id, when, settings.timezone,
                              len(shared)),
                           "Trùng giờ với chương trình %s «%s» (%s) lúc %s trên %d cụm loa"
                           % (CLASS_VI.get(programme.priority, programme.priority), other.title,
                              other.id, when, len(shared)))


def first_overlap(mine: list[tuple[datetime, datetime]],
                  theirs: list[tuple[datetime, datetime]]) -> datetime | None:
    """The start of the first time both lists of sorted [start, end) intervals air."""
    i = j = 0
    while i < len(mine) and j < len(theirs):
        a_start, a_end = mine[i]
        b_start, b_end = theirs[j]
        if a_start < b_end and b_start < a_end:
            return max(a_start, b_start)
        if a_end <= b_end:
            i += 1
        else:
            j += 1
    return None
