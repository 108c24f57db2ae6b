"""The periodic test (kiểm tra định kỳ): every receiver tests its sink and amplifier quietly.

A run sends the signed ``selftest`` command (protocol/messages.py) to every receiver online
and records one row per receiver: the ones offline are "no answer" at once (their broker
sessions are clean: a command sent now would never reach them). Each receiver answers with a
``selftest`` event (headend/mqtt/ingest.py calls ``record_answer``): passed, or failed with
its reason (firmware/reasons.py). A receiver still silent ``selftest_answer_s`` after the send
is shown as "no answer" ("timeout"). The receiver itself decides when it can test (never
during an emergency, not while anything plays or is due within a minute: firmware/core.py).

``run_due`` is what the programme scheduler's pass calls (no thread of its own): it starts the
run of the latest scheduled slot (``selftest_schedule``, local time) once, unless that slot
passed more than ``selftest_late_s`` ago (a head-end that was down does not test late).

Choice: Sunday 10:00 (Asia/Ho_Chi_Minh) by default: daylight, outside the quiet hours
(22:00-05:00), away from the communes' usual bulletins (about 06:00 and 17:00-18:00 on
weekdays), and early in the week's gap so a technician sees the list on Monday morning.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from headend.commands import Command, Publisher, prepare
from headend.errors import NotFound
from headend.models import (
    SELFTEST_FAILED,
    SELFTEST_NO_ANSWER,
    SELFTEST_PASSED,
    SELFTEST_WAITING,
    Receiver,
    SelftestResult,
    SelftestRun,
    User,
)
from headend.planning import new_command_id
from headend.services import audit
from headend.settings import Settings
from protocol import messages

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
REASON_OFFLINE = "offline"   # not sent: the receiver was offline
REASON_TIMEOUT = "timeout"   # sent, no answer within selftest_answer_s
SCHEDULE_ACTOR = "schedule"


@dataclass(frozen=True)
class Schedule:
    weekday: int | None  # 0 Monday .. 6 Sunday; None: every day
    at: time


def parse_schedule(text: str) -> Schedule | None:
    """``"sun 10:00"``, ``"daily 09:30"`` or empty (None: never). ValueError if malformed."""
    text = (text or "").strip().lower()
    if not text:
        return None
    parts = text.split()
    if len(parts) != 2 or (parts[0] not in DAYS and parts[0] != "daily"):
        raise ValueError("LOAXA_SELFTEST_SCHEDULE must be 'DAY HH:MM' (DAY: %s or daily), "
                         "not %r" % ("/".join(DAYS), text))
    try:
        at = time.fromisoformat(parts[1])
    except ValueError:
        raise ValueError("LOAXA_SELFTEST_SCHEDULE: %r is no HH:MM time" % parts[1]) from None
    return Schedule(None if parts[0] == "daily" else DAYS.index(parts[0]), at)


def latest_slot(schedule: Schedule, now: datetime, zone: tzinfo) -> datetime:
    """The latest scheduled time at or before ``now`` (UTC)."""
    local = now.astimezone(zone)
    day = local.date()
    for _ in range(8):
        if schedule.weekday is None or day.weekday() == schedule.weekday:
            slot = datetime.combine(day, schedule.at, zone)
            if slot <= local:
                return slot.astimezone(UTC)
        day -= timedelta(days=1)
    raise AssertionError("no slot in a week")  # pragma: no cover


def start_run(session: Session, *, settings: Settings, publisher: Publisher,
              actor: User | str | None, slot: datetime | None = None,
              now: datetime | None = None) -> SelftestRun:
    """Send ``selftest`` to every receiver online; a row for each receiver of the site."""
    now = now or datetime.now(UTC)
    run = SelftestRun(id=new_command_id("st"), started_at=now, slot=slot,
                      actor=actor.username if isinstance(actor, User) else actor)
    session.add(run)
    commands = []
    for receiver in session.scalars(select(Receiver).where(Receiver.site_id == settings.site_id)
                                    .order_by(Receiver.id)):
        row = SelftestResult(run_id=run.id, device_id=receiver.id, state=SELFTEST_WAITING)
        if receiver.online:
            command = Command(receiver.id, messages.SELFTEST, {"run": run.id},
                              new_command_id("self"))
            row.command_id = command.cmd_id
            commands.append(command)
        else:
            row.state, row.reason = SELFTEST_NO_ANSWER, REASON_OFFLINE
        session.add(row)
    session.flush()  # the run exists (a second run of one slot fails here) before signing
    outgoing = prepare(session, site_id=settings.site_id, commands=commands,
                       ttl_s=settings.command_ttl_s)
    audit.record(session, actor=actor, action="selftest.run", target=run.id,
                 detail={"sent": len(outgoing), "slot": slot.isoformat() if slot else None})
    session.commit()
    publisher.publish_many(outgoing)
    log.info("periodic test %s sent to %d receivers", run.id, len(outgoing))
    return run


def run_due(session: Session, *, settings: Settings, publisher: Publisher,
            now: datetime | None = None) -> str | None:
    """Start the run of the latest scheduled slot, once; its id, or None."""
    schedule = parse_schedule(settings.selftest_schedule)
    if schedule is None:
        return None
    now = now or datetime.now(UTC)
    slot = latest_slot(schedule, now, settings.tz)
    if now - slot > timedelta(seconds=settings.selftest_late_s):
        return None
    if session.scalar(select(SelftestRun.id).where(SelftestRun.slot == slot)) is not None:
        return None
    try:
        return start_run(session, settings=settings, publisher=publisher,
                         actor=SCHEDULE_ACTOR, slot=slot, now=now).id
    except IntegrityError:  # another head-end process ran this slot first
        session.rollback()
        return None


def record_answer(session: Session, *, device_id: str, msg: dict[str, Any],
                  at: datetime) -> bool:
    """A receiver's ``selftest`` event (checked by protocol.messages.check_event). An answer
    for a run this receiver was not sent, or a second one, changes nothing."""
    row = session.get(SelftestResult, (msg["run"], device_id))
    if row is None or row.command_id is None or row.answered_at is not None:
        return False
    row.state = SELFTEST_PASSED if msg["ok"] else SELFTEST_FAILED
    row.reason = None if msg["ok"] else str(msg.get("reason") or "failed")[:32]
    row.detail = {k: v for k, v in msg.items() if k not in ("v", "seq", "k", "t", "run", "ok")}
    row.answered_at = at
    return True


def record_refusal(session: Session, *, device_id: str, command_id: str, reason: str,
                   at: datetime) -> bool:
    """The receiver refused the selftest command itself (a negative ack: replay, expired)."""
    row = session.scalar(select(SelftestResult).where(SelftestResult.command_id == command_id,
                                                      SelftestResult.device_id == device_id))
    if row is None or row.answered_at is not None:
        return False
    row.state, row.reason, row.answered_at = SELFTEST_FAILED, reason[:32], at
    return True


def state_of(row: SelftestResult, run: SelftestRun, settings: Settings,
             now: datetime) -> tuple[str, str | None]:
    """(state, reason) as shown: a waiting row past the answer time is "no answer"."""
    if row.state == SELFTEST_WAITING and \
            now - run.started_at > timedelta(seconds=settings.selftest_answer_s):
        return SELFTEST_NO_ANSWER, REASON_TIMEOUT
    return row.state, row.reason


def latest_run(session: Session, *, settings: Settings,
               now: datetime | None = None) -> dict[str, Any]:
    """The latest run: per receiver passed / failed / no-answer / waiting, with the reason;
    failures first. NotFound before the first run."""
    now = now or datetime.now(UTC)
    run = session.scalar(select(SelftestRun).order_by(SelftestRun.started_at.desc(),
                                                      SelftestRun.id.desc()).limit(1))
    if run is None:
        raise NotFound("no-selftest", "no periodic test has run yet",
                       "Chưa có lần kiểm tra định kỳ nào")
    order = {SELFTEST_FAILED: 0, SELFTEST_NO_ANSWER: 1, SELFTEST_WAITING: 2, SELFTEST_PASSED: 3}
    receivers = []
    counts = dict.fromkeys(order, 0)
    for row, name, zone in session.execute(
            select(SelftestResult, Receiver.name, Receiver.zone_id)
            .join(Receiver, Receiver.id == SelftestResult.device_id)
            .where(SelftestResult.run_id == run.id)):
        state, reason = state_of(row, run, settings, now)
        counts[state] += 1
        receivers.append({"device_id": row.device_id, "name": name, "zone_id": zone,
                          "state": state, "reason": reason, "answered_at": row.answered_at,
                          "result": row.detail})
    receivers.sort(key=lambda r: (order[r["state"]], r["device_id"]))
    return {"id": run.id, "started_at": run.started_at, "actor": run.actor, "slot": run.slot,
            "complete": counts[SELFTEST_WAITING] == 0, "counts": counts,
            "receivers": receivers}


def next_slot(settings: Settings, now: datetime | None = None) -> datetime | None:
    """The next scheduled run (UTC), or None when none is scheduled."""
    schedule = parse_schedule(settings.selftest_schedule)
    if schedule is None:
        return None
    now = now or datetime.now(UTC)
    slot = latest_slot(schedule, now, settings.tz)
    step = timedelta(days=1 if schedule.weekday is None else 7)
    return (slot.astimezone(settings.tz) + step).astimezone(UTC)
