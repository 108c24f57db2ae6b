"""Programmes (chương trình): the station's schedule, drafted, approved, then aired.

A programme is a title, ordered segments, targets (as broadcasts), a class and when it airs
(one start, or an RRULE in the site's zone with EXDATEs: headend/services/programmes_time.py).
Its approval moves by ``TRANSITIONS``; only an approved programme airs
(headend/services/programmes_scheduler.py turns each occurrence into a broadcast). A change to
what airs (content, time, targets, class, volume) bumps ``revision`` and sends an approved or
submitted programme back for approval; the broadcasts already made for its future occurrences
are cancelled (the scheduler makes new ones once it is approved again). Guard rails
(headend/services/programmes_rules.py) are checked on every save, submit and approval. Every
step is in the audit log.
"""

import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.commands import Publisher
from headend.errors import Conflict, Forbidden, Invalid, NotFound
from headend.models import (
    BROADCAST_FINAL,
    OCCURRENCE_AIRED,
    OCCURRENCE_MOVED,
    OCCURRENCE_SKIPPED,
    PROGRAMME_APPROVED,
    PROGRAMME_DRAFT,
    PROGRAMME_REJECTED,
    PROGRAMME_SUBMITTED,
    Broadcast,
    Delivery,
    Programme,
    ProgrammeOccurrence,
    User,
    fit_text,
)
from headend.security import has_permission
from headend.services import (
    audit,
    broadcasts,
    programme_fields,
    programmes_rules,
    programmes_time,
)
from headend.settings import Settings

# (state, action) -> new state. "edit" is a change to what airs (see module docstring).
TRANSITIONS = {
    (PROGRAMME_DRAFT, "submit"): PROGRAMME_SUBMITTED,
    (PROGRAMME_REJECTED, "submit"): PROGRAMME_SUBMITTED,
    (PROGRAMME_SUBMITTED, "approve"): PROGRAMME_APPROVED,
    (PROGRAMME_SUBMITTED, "reject"): PROGRAMME_REJECTED,
    (PROGRAMME_DRAFT, "edit"): PROGRAMME_DRAFT,
    (PROGRAMME_REJECTED, "edit"): PROGRAMME_DRAFT,
    (PROGRAMME_SUBMITTED, "edit"): PROGRAMME_SUBMITTED,
    (PROGRAMME_APPROVED, "edit"): PROGRAMME_SUBMITTED,  # back in the leader's inbox
}
STATE_VI = {PROGRAMME_DRAFT: "bản nháp", PROGRAMME_SUBMITTED: "chờ duyệt",
            PROGRAMME_APPROVED: "đã duyệt", PROGRAMME_REJECTED: "bị từ chối"}
ACTION_VI = {"submit": "gửi duyệt", "approve": "duyệt", "reject": "từ chối", "edit": "sửa"}
# The fields whose change alters what airs, when or where.
AIRING_FIELDS = ("segments", "targets", "priority", "start", "rrule", "exdates", "volume")


# Set after every change to what airs, where or when (an edit, an approval, a rejection, a
# skip, a move, a deletion): the scheduler's thread (programmes_scheduler.py) wakes at once and
# sends the receivers their new windows, instead of at its next pass.
CHANGED = threading.Event()


class IllegalTransition(Conflict):
    """An approval step that the programme's state does not allow (named, never fixed up)."""


def move(programme: Programme, action: str) -> str:
    new = TRANSITIONS.get((programme.state, action))
    if new is None:
        raise IllegalTransition(
            "illegal-transition", "a %s programme cannot be %s" % (
                programme.state, {"submit": "submitted", "approve": "approved",
                                  "reject": "rejected", "edit": "edited"}[action]),
            "Không thể %s chương trình đang ở trạng thái %s"
            % (ACTION_VI[action], STATE_VI[programme.state]))
    programme.state = new
    return new


def _actor_name(actor: User | str | None) -> str | None:
    return actor.username if isinstance(actor, User) else actor


def _may(actor: User | str | None, permission: str) -> bool:
    """People by their role; a system actor (a string) was authorised where it came in."""
    return not isinstance(actor, User) or has_permission(actor.role, permission)


# -- occurrences ------------------------------------------------------------------------------

@dataclass
class Occurrence:
    """One occurrence: its slot by the rule (its identity), when it airs, and its stored row
    (an exception or its broadcast) if any."""

    slot: datetime
    start: datetime
    row: ProgrammeOccurrence | None

    @property
    def skipped(self) -> bool:
        return self.row is not None and self.row.state == OCCURRENCE_SKIPPED


def _rows(session: Session, programme_id: str) -> dict[datetime, ProgrammeOccurrence]:
    return {row.slot: row for row in session.scalars(select(ProgrammeOccurrence).where(
        ProgrammeOccurrence.programme_id == programme_id))}


def occurrences(session: Session, *, settings: Settings, programme: Programme, start: datetime,
                end: datetime, include_skipped: bool = True) -> list[Occurrence]:
    """The occurrences airing in [start, end) (by their own time, so a moved one is where it
    was moved to), sorted by time."""
    rows = _rows(session, programme.id)
    slots = programmes_time.rule_set(
        start=programme.start_at, rule=programme.rrule, zone=settings.tz,
        exdates=[programmes_time.aware(x, "exdates") for x in programme.exdates or ()])
    # A slot moved into the window from outside it is found through its row; one moved out
    # of the window is dropped below.
    found = {slot: Occurrence(slot, slot, rows.get(slot))
             for slot in programmes_time.slots_between(slots, start, end)}
    for row in rows.values():
        moved = row.state == OCCURRENCE_MOVED or row.start_at != row.slot
        # A slot the rule no longer has (the programme's time changed since) does not air.
        if moved and row.slot not in found and _is_slot(slots, row.slot):
            found[row.slot] = Occurrence(row.slot, row.start_at, row)
    out = []
    for occurrence in found.values():
        if occurrence.row is not None:
            occurrence.start = occurrence.row.start_at
        if not start <= occurrence.start < end:
            continue
        if occurrence.skipped and not include_skipped:
            continue
        out.append(occurrence)
    return sorted(out, key=lambda o: o.start)


def _is_slot(slots, at: datetime) -> bool:
    nearest = slots.after(at, inc=True)
    return nearest is not None and nearest == at


def horizon(settings: Settings, now: datetime) -> tuple[datetime, datetime]:
    return now, now + timedelta(days=settings.programme_horizon_days)


def _find_slot(session: Session, settings: Settings, programme: Programme,
               slot: datetime) -> Occurrence:
    """The occurrence whose rule slot is ``slot`` (an EXDATE or no slot at all: NotFound)."""
    for occurrence in occurrences(session, settings=settings, programme=programme,
                                  start=slot, end=slot + timedelta(seconds=1)):
        if occurrence.slot == slot:
            return occurrence
    row = _rows(session, programme.id).get(slot)
    if row is not None:
        return Occurrence(slot, row.start_at, row)
    raise NotFound("unknown-occurrence", "programme %s has no occurrence at %s"
                   % (programme.id, slot.isoformat()),
                   "Chương trình không có lần phát lúc %s" % programmes_time.local_text(slot, settings.tz))


# -- create / change / approve ----------------------------------------------------------------

def get_programme(session: Session, *, programme_id: str) -> Programme:
    programme = session.get(Programme, programme_id)
    if programme is None:
        raise NotFound("unknown-programme", "unknown programme %r" % programme_id,
                       "Không có chương trình %r" % programme_id)
    return programme


def list_programmes(session: Session, *, state: str | None = None) -> list[Programme]:
    query = select(Programme).order_by(Programme.start_at)
    if state:
        query = query.where(Programme.state == state)
    return list(session.scalars(query))


def _apply_fields(session: Session, programme: Programme, fields: dict[str, Any]) -> None:
    if "title" in fields:
        programme.title = programme_fields.check_title(fields["title"])
    if "segments" in fields:
        programme.segments = programme_fields.check_segments(session, fields["segments"])
    if "targets" in fields:
        programme.targets = programme_fields.check_targets(session, fields["targets"])
    if "priority" in fields:
        programme.priority = programme_fields.check_priority(fields["priority"])
    if "start" in fields:
        programme.start_at = programmes_time.aware(fields["start"], "start")
    if "rrule" in fields:
        programme.rrule = programmes_time.parse_rule(fields["rrule"])
    if "exdates" in fields:
        programme.exdates = [x.isoformat() for x in
                             programmes_time.parse_exdates(fields["exdates"])]
    if "volume" in fields:
        programme.volume = programme_fields.check_volume(fields["volume"])


def create_programme(session: Session, *, settings: Settings, fields: dict[str, Any],
                     actor: User | str | None, now: datetime | None = None) -> Programme:
    """A new programme, in state draft, after the guard rails (``fields`` as the API's)."""
    now = now or datetime.now(UTC)
    for required in ("title", "segments", "targets", "start"):
        if fields.get(required) is None:
            raise Invalid("missing-field", "%s is required" % required,
                          "Thiếu thông tin: %s" % required)
    programme = Programme(id="p%s" % secrets.token_hex(6), state=PROGRAMME_DRAFT, revision=1,
                          priority="normal", exdates=[], created_by=_actor_name(actor),
                          created_at=now, updated_at=now)
    _apply_fields(session, programme, fields)
    _check_start_ahead(programme, now)
    programmes_rules.check(session, settings=settings, programme=programme, actor=actor,
                           confirm_quiet=bool(fields.get("confirm_quiet")), now=now)
    session.add(programme)
    audit.record(session, actor=actor, action="programme.create", target=programme.id,
                 detail=_audit_detail(programme))
    session.commit()
    return programme


def _check_start_ahead(programme: Programme, now: datetime) -> None:
    if programme.rrule is None and programme.start_at < now - broadcasts.PAST_TOLERANCE:
        raise Invalid("start-in-past", "the programme's time is in the past",
                      "Thời điểm phát đã qua")


def _audit_detail(programme: Programme) -> dict[str, Any]:
    return {"title": programme.title, "state": programme.state, "revision": programme.revision,
            "start": programme.start_at.isoformat(), "rrule": programme.rrule,
            "targets": programme.targets, "priority": programme.priority,
            "segments": len(programme.segments)}


def _airing_snapshot(programme: Programme) -> tuple:
    return (programme.segments, programme.targets, programme.priority, programme.start_at,
            programme.rrule, list(programme.exdates or ()), programme.volume)


def update_programme(session: Session, *, settings: Settings, publisher: Publisher,
                     programme_id: str, fields: dict[str, Any], actor: User | str | None,
                     now: datetime | None = None) -> Programme:
    """Change a programme. A change to what airs sends it back for approval (an approved one
    waits in the leader's inbox again) and cancels the broadcasts of its coming occurrences."""
    now = now or datetime.now(UTC)
    programme = get_programme(session, programme_id=programme_id)
    before = _airing_snapshot(programme)
    time_before = (programme.start_at, programme.rrule, list(programme.exdates or ()))
    _apply_fields(session, programme, fields)
    changed = _airing_snapshot(programme) != before
    if changed:
        state_before = programme.state
        move(programme, "edit")
        programme.revision += 1
        programme.approved_revision = None
        if (programme.start_at, programme.rrule, list(programme.exdates or ())) != time_before:
            programme.quiet_requested_by = programme.quiet_confirmed_by = None
        _check_start_ahead(programme, now)
    try:
        programmes_rules.check(session, settings=settings, programme=programme, actor=actor,
                               confirm_quiet=bool(fields.get("confirm_quiet")), now=now)
    except Exception:
        session.rollback()
        raise
    detail = _audit_detail(programme)
    if changed:
        detail["from_state"] = state_before
    audit.record(session, actor=actor, action="programme.update", target=programme.id,
                 detail=detail)
    programme.updated_at = now
    session.commit()
    if changed:
        withdraw_broadcasts(session, settings=settings, publisher=publisher,
                            programme=programme, now=now, actor=actor)
        CHANGED.set()
    return programme


def delete_programme(session: Session, *, settings: Settings, publisher: Publisher,
                     programme_id: str, actor: User | str | None,
                     now: datetime | None = None) -> None:
    """Remove a programme; the broadcasts of its coming occurrences are cancelled (those that
    aired stay, with their proof of play)."""
    now = now or datetime.now(UTC)
    programme = get_programme(session, programme_id=programme_id)
    withdraw_broadcasts(session, settings=settings, publisher=publisher, programme=programme,
                        now=now, actor=actor, everything=True)
    audit.record(session, actor=actor, action="programme.delete", target=programme.id,
                 detail={"title": programme.title, "state": programme.state})
    session.delete(programme)
    session.commit()
    CHANGED.set()


def submit_programme(session: Session, *, settings: Settings, programme_id: str,
                     actor: User | str | None, confirm_quiet: bool = False,
                     now: datetime | None = None) -> Programme:
    now = now or datetime.now(UTC)
    programme = get_programme(session, programme_id=programme_id)
    move(programme, "submit")
    return _checked_step(session, settings, programme, actor, "programme.submit",
                         confirm_quiet, now)


def approve_programme(session: Session, *, settings: Settings, programme_id: str,
                      actor: User | str | None, confirm_quiet: bool = False,
                      comment: str | None = None, now: datetime | None = None) -> Programme:
    """Approve: its occurrences air from now on (a quiet-hours one needs ``confirm_quiet``)."""
    now = now or datetime.now(UTC)
    programme = get_programme(session, programme_id=programme_id)
    move(programme, "approve")
    programme.approved_revision = programme.revision
    _review(programme, actor, comment, now)
    return _checked_step(session, settings, programme, actor, "programme.approve",
                         confirm_quiet, now, approving=True)


def reject_programme(session: Session, *, programme_id: str, actor: User | str | None,
                     comment: Any, now: datetime | None = None) -> Programme:
    now = now or datetime.now(UTC)
    if not isinstance(comment, str) or not comment.strip():
        raise Invalid("missing-comment", "say why the programme is rejected (comment)",
                      "Cần ghi lý do từ chối")
    programme = get_programme(session, programme_id=programme_id)
    move(programme, "reject")
    _review(programme, actor, comment, now)
    audit.record(session, actor=actor, action="programme.reject", target=programme.id,
                 detail={"comment": programme.review_comment, "revision": programme.revision})
    session.commit()
    CHANGED.set()
    return programme


def _review(programme: Programme, actor: User | str | None, comment: str | None,
            now: datetime) -> None:
    programme.review_comment = fit_text(comment.strip(), 2000) if comment else None
    programme.reviewed_by = _actor_name(actor)
    programme.reviewed_at = now


def _checked_step(session: Session, settings: Settings, programme: Programme,
                  actor: User | str | None, action: str, confirm_quiet: bool, now: datetime,
                  approving: bool = False) -> Programme:
    try:
        programmes_rules.check(session, settings=settings, programme=programme, actor=actor,
                               confirm_quiet=confirm_quiet, now=now, approving=approving)
    except Exception:
        session.rollback()
        raise
    audit.record(session, actor=actor, action=action, target=programme.id,
                 detail={"state": programme.state, "revision": programme.revision,
                         "comment": programme.review_comment if approving else None})
    programme.updated_at = now
    session.commit()
    CHANGED.set()
    return programme


# -- single occurrences -----------------------------------------------------------------------

def skip_occurrence(session: Session, *, settings: Settings, publisher: Publisher,
                    programme_id: str, slot: datetime, actor: User | str | None,
                    now: datetime | None = None) -> ProgrammeOccurrence:
    """Do not air one occurrence (the rest untouched; an approval stays: airing less needs
    none). Its broadcast, if already made, is cancelled."""
    now = now or datetime.now(UTC)
    programme = get_programme(session, programme_id=programme_id)
    occurrence = _find_slot(session, settings, programme, slot)
    row = _row_for(session, programme, occurrence)
    old_broadcast = row.broadcast_id
    row.state = OCCURRENCE_SKIPPED
    row.broadcast_id = None
    audit.record(session, actor=actor, action="programme.skip", target=programme.id,
                 detail={"slot": slot.isoformat()})
    session.commit()
    _cancel(session, settings, publisher, old_broadcast, actor, now)
    CHANGED.set()
    return row


def move_occurrence(session: Session, *, settings: Settings, publisher: Publisher,
                    programme_id: str, slot: datetime, to: Any, actor: User | str | None,
                    confirm_quiet: bool = False,
                    now: datetime | None = None) -> ProgrammeOccurrence:
    """Air one occurrence at ``to`` instead. Moved by an editor, an approved programme goes
    back for approval (it airs at a time nobody approved); a leader's move keeps it."""
    now = now or datetime.now(UTC)
    to = programmes_time.aware(to, "to")
    if to < now - broadcasts.PAST_TOLERANCE:
        raise Invalid("start-in-past", "the new time is in the past", "Thời điểm mới đã qua")
    programme = get_programme(session, programme_id=programme_id)
    occurrence = _find_slot(session, settings, programme, slot)
    row = _row_for(session, programme, occurrence)
    old_broadcast = row.broadcast_id
    row.state, row.start_at, row.broadcast_id = OCCURRENCE_MOVED, to, None
    reapproval = (programme.state == PROGRAMME_APPROVED
                  and not _may(actor, "programmes.approve"))
    if reapproval:
        move(programme, "edit")
        programme.revision += 1
        programme.approved_revision = None
    session.flush()
    try:
        programmes_rules.check(session, settings=settings, programme=programme, actor=actor,
                               confirm_quiet=confirm_quiet, now=now)
    except Exception:
        session.rollback()
        raise
    audit.record(session, actor=actor, action="programme.move", target=programme.id,
                 detail={"slot": slot.isoformat(), "to": to.isoformat(),
                         "state": programme.state})
    session.commit()
    _cancel(session, settings, publisher, old_broadcast, actor, now)
    if reapproval:
        withdraw_broadcasts(session, settings=settings, publisher=publisher,
                            programme=programme, now=now, actor=actor)
    CHANGED.set()
    return row


def _row_for(session: Session, programme: Programme,
             occurrence: Occurrence) -> ProgrammeOccurrence:
    if occurrence.row is not None:
        return occurrence.row
    row = ProgrammeOccurrence(programme_id=programme.id, slot=occurrence.slot,
                              start_at=occurrence.start, state=OCCURRENCE_MOVED)
    session.add(row)
    return row


# -- broadcasts of occurrences ----------------------------------------------------------------

def _cancel(session: Session, settings: Settings, publisher: Publisher,
            broadcast_id: str | None, actor: User | str | None, now: datetime) -> bool:
    """Cancel a broadcast that has not ended (one already over is left as it is)."""
    if broadcast_id is None:
        return False
    broadcast = session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.cancelled_at is not None or \
            broadcast.state in BROADCAST_FINAL:
        return False
    try:
        broadcasts.cancel_broadcast(session, settings=settings, publisher=publisher,
                                    broadcast_id=broadcast_id, actor=actor, now=now)
    except Conflict:  # over in the meantime
        session.rollback()
        return False
    return True


# Broadcasts of occurrences that started longer ago than this are history: what aired then
# stays linked to them, whatever the programme became since.
WITHDRAW_AFTER_START = timedelta(hours=6)


def withdraw_broadcasts(session: Session, *, settings: Settings, publisher: Publisher,
                        programme: Programme, now: datetime, actor: User | str | None,
                        everything: bool = False) -> int:
    """Cancel the broadcasts made for occurrences still to come (or airing) whose revision is
    not the programme's approved one (``everything``: all of them). Returns how many."""
    cancelled = 0
    rows = list(session.scalars(select(ProgrammeOccurrence).where(
        ProgrammeOccurrence.programme_id == programme.id,
        ProgrammeOccurrence.broadcast_id.is_not(None),
        ProgrammeOccurrence.start_at >= now - WITHDRAW_AFTER_START)))
    for row in rows:
        current = (programme.state == PROGRAMME_APPROVED
                   and row.revision == programme.approved_revision)
        if current and not everything:
            continue
        broadcast_id = row.broadcast_id
        if _cancel(session, settings, publisher, broadcast_id, actor, now):
            cancelled += 1
            row = session.get(ProgrammeOccurrence, row.id)
            if row is None:
                continue
            if row.state == OCCURRENCE_AIRED:
                session.delete(row)  # a plain slot again: aired anew once approved
            else:
                row.broadcast_id = row.revision = None  # a moved one stays moved
            session.commit()
    return cancelled


# -- reading ----------------------------------------------------------------------------------

# The state of an occurrence that is only a relay, by its live session's (state, ended at
# its window's end): as a broadcast's would read.
RELAY_STATES = {("starting", False): "playing", ("live", False): "playing",
                ("ended", True): "played", ("ended", False): "interrupted"}

def occurrence_states(session: Session, *, settings: Settings, programme: Programme,
                      start: datetime, end: datetime,
                      now: datetime | None = None) -> list[dict[str, Any]]:
    """Each occurrence in [start, end) with its state and, once aired, every receiver's
    state and reason from its broadcast's deliveries; ``relay`` the relay segment's live
    session with each receiver's state (programme_relays.relay_outcome), once started."""
    from headend.services.programme_relays import relay_outcome

    now = now or datetime.now(UTC)
    out = []
    for occurrence in occurrences(session, settings=settings, programme=programme,
                                  start=start, end=end):
        row = occurrence.row
        devices: list[dict[str, Any]] = []
        broadcast_id = row.broadcast_id if row is not None else None
        live_id = row.live_id if row is not None and not occurrence.skipped else None
        relay = relay_outcome(session, live_id) if live_id is not None else None
        if occurrence.skipped:
            state = "skipped"
        elif broadcast_id is not None:
            broadcast = session.get(Broadcast, broadcast_id)
            state = broadcast.state if broadcast is not None else "unknown"
            devices = [{"id": d.device_id, "state": d.state, "reason": d.reason}
                       for d in session.scalars(select(Delivery).where(
                           Delivery.broadcast_id == broadcast_id)
                           .order_by(Delivery.device_id))]
        elif relay is not None:  # only a relay: its session's state
            state = RELAY_STATES.get((relay["state"], relay["reason"] == "until"), "relayed")
        elif programme.state != PROGRAMME_APPROVED:
            state = "unapproved"
        else:
            state = "planned" if occurrence.start > now else "missed"
        out.append({"start": occurrence.start, "slot": occurrence.slot, "state": state,
                    "moved": occurrence.start != occurrence.slot,
                    "broadcast_id": broadcast_id, "devices": devices, "live_id": live_id,
                    "relay": relay})
    return out


def check_may(actor: User | str | None, permission: str) -> None:
    """Forbidden unless ``actor`` holds ``permission`` (the routes check first; the pages
    and the CLI come through here too)."""
    if not _may(actor, permission):
        raise Forbidden("forbidden", "role %s may not do this (%s)"
                        % (getattr(actor, "role", "?"), permission),
                        "Bạn không có quyền làm việc này")
