"""Airing approved programmes: each occurrence becomes a broadcast a lead time ahead.

``air_due`` is the whole job and takes the time as an argument; ``ProgrammeScheduler`` is the
thin thread the app starts beside the MQTT service to call it (and the repetition of CAP
alerts on the air, headend/services/cap_repeat.py) every ``programme_check_s``
(building a programme's media runs the TTS and ffmpeg: seconds that must not hold up the
ingest of receivers' reports).

An occurrence airs once: its row (programme, slot) records the broadcast and the revision it
was made from, committed right after the broadcast. The broadcast's id is known before it is
made (``programme_windows.occurrence_broadcast_id``: the receivers' schedule windows carry it
days ahead, so the play it sends is one they already hold and play once); a broadcast whose
link to its row was lost to a crash in between is found again by that id and adopted rather
than made twice. Each pass then sends the receivers' windows that are due (``send_windows``). A broadcast of an older revision (the programme
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
    MediaItem,
    Programme,
    ProgrammeOccurrence,
)
from headend.services import (
    audit,
    broadcasts,
    programme_media,
    programme_relays,
    programme_windows,
    programmes,
)
from headend.settings import Settings

log = logging.getLogger(__name__)


def actor_of(programme: Programme) -> str:
    return "programme:%s" % programme.id


def air_due(session: Session, *, settings: Settings, publisher: Publisher,
            now: datetime | None = None,
            relays: programme_relays.ProgrammeRelays | None = None) -> list[str]:
    """Make the broadcasts of the approved occurrences starting within the lead time, and
    hand their relays to ``relays`` (headend/services/programme_relays.py; None: relays are
    not started). Returns the ids of the broadcasts made (or adopted) in this call."""
    now = now or datetime.now(UTC)
    made: list[str] = []
    lead = timedelta(seconds=settings.programme_lead_s)
    for programme in list(session.scalars(select(Programme).where(
            Programme.state == PROGRAMME_APPROVED).order_by(Programme.start_at))):
        programmes.withdraw_broadcasts(session, settings=settings, publisher=publisher,
                                       programme=programme, now=now, actor=actor_of(programme))
        due = programmes.occurrences(session, settings=settings, programme=programme,
                                     start=now, end=now + lead, include_skipped=False)
        recorded = bool(programme_media.recorded(programme.segments))
        for occurrence in due:
            row = occurrence.row
            aired = row is not None and row.revision == programme.approved_revision \
                and (row.broadcast_id is not None or not recorded)
            try:
                if not aired:
                    bid = _air(session, settings, publisher, programme, occurrence, now)
                    if bid is not None:
                        made.append(bid)
                if relays is not None:
                    _plan_relay(session, settings, relays, programme, occurrence)
            except ServiceError as exc:
                session.rollback()
                log.warning("programme %s at %s not aired: %s", programme.id,
                            occurrence.start.isoformat(), exc.message)
                _record_failure(session, programme, occurrence, exc)
    return made


def media_of(session: Session, settings: Settings, programme: Programme) -> MediaItem | None:
    """The programme's segments joined into one media item (built once per content); None
    for a programme that is only a relay."""
    if not programme_media.recorded(programme.segments):
        return None
    return programme_media.build_media(session, settings=settings,
                                       segments=programme.segments, title=programme.title,
                                       actor=actor_of(programme))


def send_windows(session: Session, *, settings: Settings, publisher: Publisher,
                 sender: programme_windows.WindowSender,
                 now: datetime | None = None) -> list[str]:
    """Send the receivers' schedule windows that are due (programme_windows.py); a programme
    whose media cannot be built is left out of them, its failure audited as for airing."""
    now = now or datetime.now(UTC)
    built: dict[str, MediaItem | None] = {}

    def media_for(programme: Programme) -> MediaItem | None:
        if programme.id not in built:
            try:
                built[programme.id] = media_of(session, settings, programme)
            except ServiceError as exc:
                session.rollback()
                log.warning("programme %s left out of the windows: %s", programme.id,
                            exc.message)
                built[programme.id] = None
        return built[programme.id]

    return sender.send_due(session, settings=settings, publisher=publisher, now=now,
                           media_for=media_for)


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
         occurrence: programmes.Occurrence, now: datetime) -> str | None:
    """The occurrence's broadcast (None: the programme is only a relay) and its row."""
    actor = actor_of(programme)
    # The id the receivers' windows already carry (programme_windows.py): made once, and
    # found again after a crash between the broadcast and the occurrence's row.
    broadcast_id: str | None = programme_windows.occurrence_broadcast_id(
        session, programme, occurrence)
    media = media_of(session, settings, programme)
    if media is None:
        broadcast_id = None
    elif session.get(Broadcast, broadcast_id) is None:
        broadcasts.create_broadcast(
            session, settings=settings, publisher=publisher, media_id=media.id,
            targets=programme.targets, priority=programme.priority,
            start_at=occurrence.start, actor=actor, now=now, broadcast_id=broadcast_id,
            volume=programme.volume)
    row = session.scalar(select(ProgrammeOccurrence).where(
        ProgrammeOccurrence.programme_id == programme.id,
        ProgrammeOccurrence.slot == occurrence.slot))
    if row is None:
        row = ProgrammeOccurrence(programme_id=programme.id, slot=occurrence.slot,
                                  start_at=occurrence.start, state=OCCURRENCE_AIRED)
        session.add(row)
    row.broadcast_id = broadcast_id
    if row.revision != programme.approved_revision:
        row.live_id = None  # an earlier revision's relay; this one's is made anew
    row.revision = programme.approved_revision
    audit.record(session, actor=actor, action="programme.air", target=programme.id,
                 detail={"start": occurrence.start.isoformat(), "broadcast": broadcast_id,
                         "revision": programme.approved_revision})
    session.commit()
    return broadcast_id


def _plan_relay(session: Session, settings: Settings, relays: programme_relays.ProgrammeRelays,
                programme: Programme, occurrence: programmes.Occurrence) -> None:
    """Hand the occurrence's relay to the loop, from the end of its recorded part (the
    built media's own length) to its window's end."""
    row = session.scalar(select(ProgrammeOccurrence).where(
        ProgrammeOccurrence.programme_id == programme.id,
        ProgrammeOccurrence.slot == occurrence.slot))
    relay = programme_media.relay_of(programme.segments)
    if relay is None or row is None or row.live_id is not None:
        return
    media = media_of(session, settings, programme)
    start, end = programme_relays.relay_window(
        occurrence.start, programme.segments, None if media is None else media.duration_ms)
    bid = programme_windows.occurrence_broadcast_id(session, programme, occurrence)
    relays.schedule(programme_relays.RelayPlan(
        live_id=programme_relays.relay_live_id(bid), programme_id=programme.id,
        revision=programme.approved_revision or 0, slot=occurrence.slot,
        occurrence_start=occurrence.start, url=relay["url"], targets=programme.targets,
        prio=broadcasts.PRIO_WIRE[programme.priority], start=start, end=end))


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
        self._wake().set()  # out of its wait
        if self._thread is not None:
            self._thread.join(timeout)

    def _wake(self) -> threading.Event:
        """What ends the wait between passes early (by default only the stop)."""
        return self._stop

    def jobs(self) -> tuple:
        """What each pass calls, each on its own: one failing does not skip the others."""
        return (self.run_once,)

    def _loop(self) -> None:
        while not self._stop.is_set():
            wake = self._wake()
            if wake is not self._stop:
                wake.clear()  # a wake-up during the pass makes another pass at once
            for job in self.jobs():
                try:
                    job()
                except Exception:  # a bad programme or feed must not stop every other
                    log.exception("%s: %s failed", self.thread_name, job.__name__)
            wake.wait(self.interval_s())


class ProgrammeScheduler(PeriodicThread):
    """Calls ``air_due`` and ``send_windows`` every ``settings.programme_check_s`` and at once
    after a change to a programme (``programmes.CHANGED``), then airs again the CAP alerts whose
    repetition is due (headend/services/cap_repeat.py), then starts the periodic test when
    its slot comes (headend/services/selftests.py)."""

    thread_name = "loaxa-programmes"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.windows = programme_windows.WindowSender()
        # Set by the app once its live service and loop run (headend/app.py): until then
        # relays are not started (the next pass hands them over).
        self.relays: programme_relays.ProgrammeRelays | None = None

    def interval_s(self) -> float:
        return self.settings.programme_check_s

    def _wake(self) -> threading.Event:
        return programmes.CHANGED

    def run_once(self) -> list[str]:
        """One pass: the relays whose programme changed ended, the broadcasts due, then the
        windows due. Returns the broadcasts made."""
        if self.relays is not None:
            self.relays.end_changed()
        with session_scope(self.session_factory) as session:
            made = air_due(session, settings=self.settings, publisher=self.publisher,
                           relays=self.relays)
        with session_scope(self.session_factory) as session:
            send_windows(session, settings=self.settings, publisher=self.publisher,
                         sender=self.windows)
        return made

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
