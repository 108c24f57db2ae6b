"""What the programme pages read: a period's occurrences across programmes, and each past
occurrence's proof of play (played / targeted and why each miss), from the existing services.

Read-only helpers over headend/services/programmes.py (occurrences, ``occurrence_states``) and
the play log; no decision is taken here.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.models import (
    DELIVERY_PLAYED,
    DELIVERY_PLAYING,
    DELIVERY_WAITING,
    PROGRAMME_DRAFT,
    AuditEntry,
    Delivery,
    PlayLog,
    Programme,
    User,
)
from headend.services import programmes, programmes_rules, programmes_time
from headend.settings import Settings


@dataclass
class CalendarEntry:
    programme: Programme
    occurrence: programmes.Occurrence

    @property
    def start(self) -> datetime:
        return self.occurrence.start


def calendar(session: Session, *, settings: Settings, start: datetime,
             end: datetime) -> list[CalendarEntry]:
    """Every programme's occurrences in [start, end) (all states: a draft shows where it
    would air; skipped ones too, marked), sorted by time."""
    out = []
    for programme in programmes.list_programmes(session):
        for occurrence in programmes.occurrences(session, settings=settings,
                                                 programme=programme, start=start, end=end):
            out.append(CalendarEntry(programme, occurrence))
    return sorted(out, key=lambda e: (e.start, e.programme.title))


@dataclass
class Miss:
    device_id: str
    state: str
    reason: str | None
    reason_detail: str | None
    played_ms: int | None  # heard before it stopped (play log), if it started


@dataclass
class Proof:
    """One past occurrence: what its broadcast's deliveries say."""

    start: datetime
    slot: datetime
    state: str  # the occurrence's (occurrence_states): played, partial, missed, skipped, ...
    moved: bool
    broadcast_id: str | None
    targeted: int = 0
    played: int = 0
    open: int = 0  # receivers still waiting or playing (no outcome yet)
    misses: list[Miss] = field(default_factory=list)
    not_aired: str | None = None  # why the scheduler could not air it (its audit entry)
    relay: "RelayProof | None" = None  # its relay segment's live session, once started


@dataclass
class RelayProof:
    """An occurrence's relay: what its live session's receivers reported (states as
    headend/live/devices.py names them)."""

    live_id: str
    state: str
    reason: str | None
    targeted: int = 0
    played: int = 0
    open: int = 0
    misses: list[Miss] = field(default_factory=list)


_RELAY_OPEN = ("waiting", "sent", "playing")


def proof_of_play(session: Session, *, settings: Settings, programme: Programme, since: datetime,
                  now: datetime, limit: int = 30) -> list[Proof]:
    """The occurrences that started in [since, now), newest first: per occurrence the
    receivers targeted, those that played it to the end, and each other's state and reason
    (the delivery's, with what the play log says it heard)."""
    states = programmes.occurrence_states(session, settings=settings, programme=programme,
                                          start=since, end=now, now=now)
    failures = _air_failures(session, programme.id)
    out = []
    for item in reversed(states[-limit:]):
        proof = Proof(item["start"], item["slot"], item["state"], item["moved"],
                      item["broadcast_id"], not_aired=failures.get(item["start"].isoformat()))
        heard, details = _reports(session, item["broadcast_id"])
        for device in item["devices"]:
            proof.targeted += 1
            if device["state"] == DELIVERY_PLAYED:
                proof.played += 1
            elif device["state"] in DELIVERY_WAITING + (DELIVERY_PLAYING,):
                proof.open += 1
            else:
                proof.misses.append(Miss(device["id"], device["state"], device["reason"],
                                         details.get(device["id"]), heard.get(device["id"])))
        if item["relay"] is not None:
            proof.relay = _relay_proof(session, item["relay"])
        out.append(proof)
    return out


def _relay_proof(session: Session, relay: dict[str, Any]) -> RelayProof:
    proof = RelayProof(relay["id"], relay["state"], relay["reason"])
    heard, _details = _reports(session, relay["id"])
    for device in relay["devices"]:
        proof.targeted += 1
        if device["state"] == DELIVERY_PLAYED:
            proof.played += 1
        elif device["state"] in _RELAY_OPEN:
            proof.open += 1
        else:
            proof.misses.append(Miss(device["id"], device["state"], device["reason"], None,
                                     heard.get(device["id"])))
    return proof


def _air_failures(session: Session, programme_id: str) -> dict[str, str]:
    """Occurrence start (ISO) -> why the scheduler could not make its broadcast, from the
    audit entries it writes (programmes_scheduler._record_failure)."""
    return {d["start"]: d.get("reason") or d.get("code") or "?"
            for d in session.scalars(select(AuditEntry.detail).where(
                AuditEntry.target == programme_id,
                AuditEntry.action == "programme.air-failed"))
            if isinstance(d, dict) and "start" in d}


def _reports(session: Session,
             broadcast_id: str | None) -> tuple[dict[str, int], dict[str, str]]:
    """Per receiver: the longest play it logged for this broadcast (ms), and its own words
    about a failure ("vs1053: DREQ stuck low")."""
    heard: dict[str, int] = {}
    details: dict[str, str] = {}
    if broadcast_id is None:
        return heard, details
    for device_id, played_ms in session.execute(select(PlayLog.device_id, PlayLog.played_ms)
                                                .where(PlayLog.broadcast_id == broadcast_id)):
        if played_ms is not None:
            heard[device_id] = max(heard.get(device_id, 0), played_ms)
    for device_id, detail in session.execute(select(Delivery.device_id, Delivery.reason_detail)
                                             .where(Delivery.broadcast_id == broadcast_id)):
        if detail:
            details[device_id] = detail
    return heard, details


def coming(session: Session, *, settings: Settings, programme: Programme, now: datetime,
           days: int = 14, limit: int = 20) -> list[programmes.Occurrence]:
    """The next occurrences (skipped ones included, to be shown as such)."""
    return programmes.occurrences(session, settings=settings, programme=programme, start=now,
                                  end=now + timedelta(days=days))[:limit]



def airs_in_quiet_hours(session: Session, *, settings: Settings, programme: Programme,
                        now: datetime) -> bool:
    """True if a normal programme airs in the site's quiet hours within the guard rails'
    horizon (its approval then needs the leader's confirmation)."""
    if programme.priority != "normal":
        return False
    quiet = programmes_time.quiet_hours(settings.quiet_hours_start, settings.quiet_hours_end)
    return any(programmes_time.in_quiet_hours(start, end, quiet, settings.tz)
               for start, end in programmes_rules.airing_intervals(
                   session, settings=settings, programme=programme, now=now))


def check_draft(session: Session, *, settings: Settings, fields: dict[str, Any],
                actor: User | str | None, programme: Programme | None = None,
                now: datetime | None = None) -> None:
    """The guard rails' verdict on what the editor typed, saving nothing: raises the refusal
    ``create_programme`` (or ``update_programme`` of ``programme``) would raise. The fields
    are applied to a transient copy that never enters the session."""
    now = now or datetime.now(UTC)
    draft = Programme(id=programme.id if programme else "p-check", title="", segments=[],
                      targets={}, priority="normal", start_at=now, rrule=None, exdates=[],
                      volume=None, state=PROGRAMME_DRAFT, revision=1)
    if programme is not None:
        for name in ("title", "segments", "targets", "priority", "start_at", "rrule",
                     "exdates", "volume", "quiet_requested_by", "quiet_confirmed_by"):
            setattr(draft, name, getattr(programme, name))
    # The services' own reading of the fields (the one create and update use).
    programmes._apply_fields(session, draft, fields)
    if programme is not None and (draft.start_at, draft.rrule) != (programme.start_at,
                                                                   programme.rrule):
        draft.quiet_requested_by = draft.quiet_confirmed_by = None  # as update_programme
    programmes._check_start_ahead(draft, now)
    programmes_rules.check(session, settings=settings, programme=draft, actor=actor,
                           confirm_quiet=bool(fields.get("confirm_quiet")), now=now)
