"""Airing approved programmes: each occurrence becomes a broadcast a lead time ahead.

``air_due`` is the whole job and takes the time as an argument; ``ProgrammeScheduler`` is the
thin thread the app starts beside the MQTT service to call it (and the repetition of CAP
alerts on the air, headend/services/cap_repeat.py) every ``programme_check_s``
(building a programme's media runs the TTS and ffmpeg: seconds that must not hold up the
ingest of receivers' reports).

An occurrence airs once: its row (programme, slot) records the broadcast and the revision it
was made from, committed right after the broadcast; a broadcast this scheduler made whose
link was lost to a crash in between is found again by its creator ("programme:<id>") and
start, and adopted rather than made twice. A broadcast of an older revision (the programme
changed) is cancelled and, once the programme is approved again, made anew. Drafts, submitted
and rejected programmes never air, and an occurrence whose time passed while the head-end was
down is not aired late.
"""

import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from headend.commands import Publisher
from headend.db import session_scope
from headend.errors import ServiceError
from headend.models import (
    OCCURRENCE_AIRED,
    PROGRAMME_APPROVED,
    AuditEntry,
    Broadcast,
    Programme,
    ProgrammeOccurrence,
)
from headend.services import audit, broadcasts, programme_media, programmes
from headend.settings import Settings

log = logging.getLogger(__name__)


def actor_of(programme: Programme) -> str:
    return "programme:%s" % programme.id


def air_due(session: Session, *, settings: Settings, publisher: Publisher,
            now: datetime | None = None) -> list[str]:
    """Make the broadcasts of the approved occurrences starting within the lead time.
    Returns the ids of the broadcasts made (or adopted) in this call."""
    now = now or datetime.now(UTC)
    made: list[str] = []
    lead = timedelta(seconds=settings.programme_lead_s)
    for programme in list(session.scalars(select(Programme).where(
            Programme.state == PROGRAMME_APPROVED).order_by(Programme.start_at))):
        programmes.withdraw_broadcasts(session, settings=settings, publisher=publisher,
                                       programme=programme, now=now, actor=actor_of(programme))
        due = programmes.occurrences(session, settings=settings, programme=programme,
                                     start=now, end=now + lead, include_skipped=False)
        for occurrence in due:
            row = occurrence.row
            if row is not None and row.broadcast_id is not None \
                    and row.revision == programme.approved_revision:
                continue  # aired already
            try:
                made.append(_air(session, settings, publisher, programme, occurrence, now))
            except ServiceError as exc:
                session.rollback()
                log.warning("programme %s at %s not aired: %s", programme.id,
                            occurrence.start.isoformat(), exc.message)
                _record_failure(session, programme, occurrence, exc)
    return made


def _record_failure(session: Session, programme: Programme,
                    occurrence: programmes.Occurrence, exc: ServiceError) -> None:
    """Audit why an occurrence could not air, once per occurrence and reason (each pass tries
    again, and would otherwise write the same line every ``programme_check_s``)."""
    detail = {"start": occurrence.start.isoformat(), "code": exc.code, "reason": exc.message}
    earlier = session.scalars(select(AuditEntry.detail).where(
        AuditEntry.target == programme.id, AuditEntry.action == "programme.air-failed"))
    if any(d and d.get("start") == detail["start"] and d.get("code") == exc.code
           for d in earlier):
        return
    audit.record(session, actor=actor_of(programme), action="programme.air-failed",
                 target=programme.id, detail=detail)
    session.commit()


def _air(session: Session, settings: Settings, publisher: Publisher, programme: Programme,
         occurrence: programmes.Occurrence, now: datetime) -> str:
    actor = actor_of(programme)
    broadcast_id = session.scalar(select(Broadcast.id).where(
        Broadcast.created_by == actor, Broadcast.start_at == occurrence.start,
        Broadcast.cancelled_at.is_(None)).limit(1))
    if broadcast_id is None:
        media = programme_media.build_media(session, settings=settings,
                                            segments=programme.segments,
                                            title=programme.title, actor=actor)
        broadcast_id = broadcasts.create_broadcast(
            session, settings=settings, publisher=publisher, media_id=media.id,
            targets=programme.targets, priority=programme.priority,
            start_at=occurrence.start, actor=actor, now=now).id
    row = session.scalar(select(ProgrammeOccurrence).where(
        ProgrammeOccurrence.programme_id == programme.id,
        ProgrammeOccurrence.slot == occurrence.slot))
    if row is None:
        row = ProgrammeOccurrence(programme_id=programme.id, slot=occurrence.slot,
                                  start_at=occurrence.start, state=OCCURRENCE_AIRED)
        session.add(row)
    row.broadcast_id = broadcast_id
    row.revision = programme.approved_revision
    audit.record(session, actor=actor, action="programme.air", target=programme.id,
                 detail={"start": occurrence.start.isoformat(), "broadcast": broadcast_id,
                         "revision": programme.approved_revision})
    session.commit()
    return broadcast_id


class PeriodicThread:
    """Calls ``run_once`` every ``interval_s()`` in a daemon thread of its own, started and
    stopped with the MQTT service (headend/app.py); a failing pass is logged, never fatal."""

    thread_name = "loaxa-periodic"

    def __init__(self, *, settings: Settings, session_factory: sessionmaker[Session],
                 publisher: Publisher):
        self.settings = settings
        self.session_factory = session_factory
        self.publisher = publisher
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def interval_s(self) -> float:
        raise NotImplementedError

    def run_once(self):
        raise NotImplementedError

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def jobs(self) -> tuple:
        """What each pass calls, each on its own: one failing does not skip the others."""
        return (self.run_once,)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for job in self.jobs():
                try:
                    job()
                except Exception:  # a bad programme or feed must not stop every other
                    log.exception("%s: %s failed", self.thread_name, job.__name__)
            self._stop.wait(self.interval_s())


class ProgrammeScheduler(PeriodicThread):
    """Calls ``air_due`` every ``settings.programme_check_s``, then airs again the CAP alerts
    whose repetition is due (headend/services/cap_repeat.py), then starts the periodic test
    when its slot comes (headend/services/selftests.py)."""

    thread_name = "loaxa-programmes"

    def interval_s(self) -> float:
        return self.settings.programme_check_s

    def run_once(self) -> list[str]:
        with session_scope(self.session_factory) as session:
            return air_due(session, settings=self.settings, publisher=self.publisher)

    def repeat_cap_alerts(self) -> list[str]:
        from headend.services.cap_repeat import repeat_due

        with session_scope(self.session_factory) as session:
            return repeat_due(session, settings=self.settings, publisher=self.publisher)

    def run_selftests(self) -> str | None:
        """The periodic test when its weekly slot comes (headend/services/selftests.py)."""
        from headend.services.selftests import run_due

        with session_scope(self.session_factory) as session:
            return run_due(session, settings=self.settings, publisher=self.publisher)

    def jobs(self) -> tuple:
        return (self.run_once, self.repeat_cap_alerts, self.run_selftests)
