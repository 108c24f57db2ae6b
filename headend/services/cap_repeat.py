"""A CAP alert on the air is aired again every ``SitePolicy.repeat_interval`` (15 minutes by
default; ``repeat_minutes`` in LOAXA_CAP_POLICY, 0: once) until it expires or is cancelled.

Each airing is an emergency broadcast of the same media to the same targets whose window ends
when the next one is due (or at the expiry): exactly one airing of an alert is current at any
time, so a receiver that comes back gets the current one only, never a backlog of them. The
programme scheduler's thread (headend/services/programmes_scheduler.py) calls ``repeat_due``
on each pass: the next airing is made once the current one's window is over. The stored
alert's ``broadcast_id`` follows the newest airing, so an Update replaces, and a Cancel or an
operator stops, the one that is current; an alert that ended (replaced, cancelled) or expired
is not aired again.
"""

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.commands import Publisher
from headend.errors import ServiceError
from headend.models import CAP_ON_AIR, Broadcast, CapAlert
from headend.services import broadcasts, ledger
from headend.settings import Settings

log = logging.getLogger(__name__)

# An airing is not repeated before the previous one has had time to play out.
PLAY_OUT_MARGIN = timedelta(seconds=30)


def window_end(start: datetime, expires: datetime | None,
               interval: timedelta | None) -> datetime | None:
    """When an airing made at ``start`` stops being current: the next airing, or the expiry."""
    if interval is None:
        return expires
    if expires is None:
        return start + interval
    return min(expires, start + interval)


def airing_times(start: datetime, expires: datetime, interval: timedelta | None,
                 ) -> list[datetime]:
    """Every airing of an alert first aired at ``start`` and left running until ``expires``
    (when the scheduler is on time): ``start``, ``start + interval``, ... before ``expires``."""
    times = [start]
    while interval is not None and times[-1] + interval < expires:
        times.append(times[-1] + interval)
    return times


def _interval(settings: Settings) -> timedelta | None:
    from headend.services.cap_alerts import site_policy

    return site_policy(settings).repeat_interval


def repeat_due(session: Session, *, settings: Settings, publisher: Publisher,
               now: datetime | None = None) -> list[str]:
    """Air again the alerts on the air whose current airing's window is over; returns the
    new broadcasts' ids."""
    now = now or datetime.now(UTC)
    interval = _interval(settings)
    if interval is None:
        return []
    made = []
    for row in list(session.scalars(select(CapAlert).where(
            CapAlert.state == CAP_ON_AIR, CapAlert.broadcast_id.is_not(None)))):
        if row.expires is not None and row.expires <= now:
            continue
        current = session.get(Broadcast, row.broadcast_id)
        if current is None or current.cancelled_at is not None or current.valid_until > now:
            continue
        if row.expires is not None and current.valid_until >= row.expires:
            continue  # that was the last airing
        if now < current.start_at + timedelta(milliseconds=current.media.duration_ms) \
                + PLAY_OUT_MARGIN:
            continue  # longer than the interval: not cut short by its own repetition
        try:
            airing = broadcasts.send_emergency(
                session, settings=settings, publisher=publisher, media_id=current.media_id,
                targets=current.targets, actor=("cap-repeat:%s" % row.id)[:64], now=now,
                valid_until=window_end(now, row.expires, interval))
        except ServiceError as exc:  # its zones were deleted, its media removed
            session.rollback()
            log.warning("CAP alert %s not aired again: %s", row.id, exc.message)
            continue
        previous, row.broadcast_id = current.id, airing.id
        ledger.append(session, event="cap.repeat", actor="cap-repeat:%s" % row.id,
                      broadcast_id=airing.id, cap_identifier=row.identifier, at=now,
                      detail={"alert_id": row.id, "previous": previous,
                              "exercise": row.status == "Exercise"})
        session.commit()
        made.append(airing.id)
    return made
