"""A programme's relay segment (tiếp sóng) on the air: a live session for its window.

A programme whose last segment is a relay airs in two parts: its recorded segments, joined
into one media item, are a broadcast like any programme's (delivered ahead,
headend/services/programme_windows.py); the relay is a live session (headend/live/) of its
URL to the programme's targets from the end of the recorded part and the pause after it
(``relay_window``) until its window's end (``until``: a relay never runs outside its window),
its stream in the programme's own class: a priority programme's relay is not preempted by a
normal programme, and a normal one's relay does not cut a priority one (nor the recorded
part before it: a stream of the same class waits for it on the receiver).

``ProgrammeRelays`` is the scheduler thread's door to the app's event loop: ``schedule``
hands a relay due within the lead time to the loop (``asyncio.run_coroutine_threadsafe``),
where it waits for its start, checks that the occurrence still airs as approved, and makes
the session as the system actor ``programme:<id>`` with an id of its own occurrence
(``relay_live_id``: one session per occurrence and revision, found again after a restart).
The occurrence's row records the live id; its proof of play (``relay_outcome``) is the live
session's device states. A relay on the air whose programme is edited, rejected or deleted,
or whose occurrence is skipped or moved, is ended at the scheduler's next pass
(``end_changed``, reason "programme-changed"); one resumed after a head-end restart runs to
its window's end (its plan is not kept across the restart).
"""

import asyncio
import concurrent.futures
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from headend.errors import ServiceError
from headend.models import (
    OCCURRENCE_SKIPPED,
    PROGRAMME_APPROVED,
    LiveSessionRecord,
    Programme,
    ProgrammeOccurrence,
)
from headend.services import audit, programme_media
from headend.settings import Settings

log = logging.getLogger(__name__)

# Why a programme's relay ended before its window's end (a live session's ``reason``).
PROGRAMME_CHANGED = "programme-changed"


@dataclass(frozen=True)
class RelayPlan:
    """One occurrence's relay: what, where, when, in which class, made by whom."""

    live_id: str
    programme_id: str
    revision: int
    slot: datetime
    occurrence_start: datetime
    url: str
    targets: dict[str, Any]
    prio: int
    start: datetime
    end: datetime

    @property
    def actor(self) -> str:
        return "programme:%s" % self.programme_id


def relay_live_id(broadcast_id: str) -> str:
    """The live session's id of the occurrence whose broadcast id is ``broadcast_id``
    (planning.occurrence_bid: one per occurrence, revision and time)."""
    return "live-%s" % hashlib.sha256(broadcast_id.encode()).hexdigest()[:10]


def relay_window(occurrence_start: datetime, segments: list[dict[str, Any]],
                 recorded_ms: int | None) -> tuple[datetime, datetime] | None:
    """[start, end) of the relay of an occurrence starting at ``occurrence_start`` whose
    recorded part lasts ``recorded_ms`` (None: there is none); None without a relay."""
    relay = programme_media.relay_of(segments)
    if relay is None:
        return None
    start = occurrence_start + timedelta(milliseconds=programme_media.relay_offset_ms(
        recorded_ms))
    return start, start + timedelta(seconds=relay["seconds"])


def relay_outcome(session: Session, live_id: str) -> dict[str, Any] | None:
    """The relay's proof of play: ``{"id", "state", "reason", "devices"}``, each receiver's
    state from its own reports of the stream (headend/live/devices.py)."""
    from headend.live.devices import device_states
    from headend.live.store import session_of

    row = session.get(LiveSessionRecord, live_id)
    if row is None:
        return None
    live = session_of(row)
    return {"id": live.id, "state": live.state, "reason": live.reason,
            "devices": device_states(session, live)}


class ProgrammeRelays:
    """Starts programmes' relays on the app's loop, at their time (see module docstring)."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, live, settings: Settings,
                 session_factory: sessionmaker[Session]):
        self.loop = loop
        self.live = live  # headend.live.service.LiveService
        self.settings = settings
        self.session_factory = session_factory
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._running: dict[str, RelayPlan] = {}  # live id -> the plan it was made from

    def schedule(self, plan: RelayPlan) -> bool:
        """Hand ``plan`` to the loop unless it is there already or its session exists
        (called from the scheduler's thread on every pass)."""
        pending = self._pending.get(plan.live_id)
        if (pending is not None and not pending.done()) or plan.live_id in self.live.sessions:
            return False
        self._pending = {k: f for k, f in self._pending.items() if not f.done()}
        self._pending[plan.live_id] = asyncio.run_coroutine_threadsafe(self._run(plan),
                                                                       self.loop)
        return True

    async def _run(self, plan: RelayPlan) -> str | None:
        delay = (plan.start - datetime.now(UTC)).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        if datetime.now(UTC) >= plan.end or await asyncio.to_thread(self._changed, plan):
            log.info("programme %s: relay at %s not started (changed since)",
                     plan.programme_id, plan.start.isoformat())
            return None
        try:
            live = await self.live.create(actor=plan.actor, source={"url": plan.url},
                                          targets=plan.targets, until=plan.end, prio=plan.prio,
                                          live_id=plan.live_id)
        except ServiceError as exc:  # no receiver online, the clock untrusted, ...
            log.warning("programme %s: relay at %s not started: %s", plan.programme_id,
                        plan.start.isoformat(), exc.message)
            await asyncio.to_thread(self._failed, plan, exc)
            return None
        self._running[live.id] = plan
        await asyncio.to_thread(self._record, plan, live.id)
        return live.id

    def end_changed(self) -> list[str]:
        """End the relays on the air whose occurrence no longer airs as planned (the
        programme edited, rejected or deleted, the occurrence skipped or moved): a relay
        never runs outside its programme's window (called from the scheduler's thread on
        every pass, woken at once by a change). Returns the live ids ended."""
        ended = []
        for live_id, plan in list(self._running.items()):
            live = self.live.sessions.get(live_id)
            if live is None or live.over:
                del self._running[live_id]
                continue
            # At its window's end the session ends itself (reason "until"): only a change
            # to the programme or the occurrence ends it here.
            if not self._changed(plan):
                continue
            del self._running[live_id]
            asyncio.run_coroutine_threadsafe(self.live.end(live_id, PROGRAMME_CHANGED),
                                             self.loop).result(timeout=30)
            log.info("programme %s: relay %s ended (the programme changed)",
                     plan.programme_id, live_id)
            ended.append(live_id)
        return ended

    def _changed(self, plan: RelayPlan) -> bool:
        """The programme is no longer approved at the planned revision, or the occurrence
        was skipped or moved since the plan was made."""
        with self.session_factory() as db:
            programme = db.get(Programme, plan.programme_id)
            if programme is None or programme.state != PROGRAMME_APPROVED \
                    or programme.approved_revision != plan.revision:
                return True
            row = _row(db, plan)
            return row is not None and (row.state == OCCURRENCE_SKIPPED
                                        or row.start_at != plan.occurrence_start)

    def _record(self, plan: RelayPlan, live_id: str) -> None:
        with self.session_factory() as db:
            row = _row(db, plan)
            if row is not None:
                row.live_id = live_id
            audit.record(db, actor=plan.actor, action="programme.relay",
                         target=plan.programme_id,
                         detail={"start": plan.occurrence_start.isoformat(), "live": live_id,
                                 "url": plan.url, "from": plan.start.isoformat(),
                                 "until": plan.end.isoformat()})
            db.commit()

    def _failed(self, plan: RelayPlan, exc: ServiceError) -> None:
        with self.session_factory() as db:
            audit.record(db, actor=plan.actor, action="programme.air-failed",
                         target=plan.programme_id,
                         detail={"start": plan.occurrence_start.isoformat(), "code": exc.code,
                                 "reason": exc.message, "relay": plan.url})
            db.commit()


def _row(db: Session, plan: RelayPlan) -> ProgrammeOccurrence | None:
    return db.scalar(select(ProgrammeOccurrence).where(
        ProgrammeOccurrence.programme_id == plan.programme_id,
        ProgrammeOccurrence.slot == plan.slot))
