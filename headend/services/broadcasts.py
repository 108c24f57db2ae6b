"""Broadcasts: what plays, where, when, in which class; and each receiver's part in it.

A broadcast's per-receiver state (``Delivery``) moves by the table in
headend/services/deliveries.py, on the receivers' own reports (headend/mqtt/ingest.py) and on
what the head-end does and concludes here (send, cancel, resend to a returning receiver,
close what is overdue) and in headend/services/reconcile.py (restarts). The broadcast's own
``state`` is derived from its deliveries (``deliveries.summarise``).
"""

import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from headend import planning
from headend.commands import Command, Publisher, chunks, new_command_id, now_ms, prepare
from headend.errors import Conflict, Forbidden, Invalid, NotFound
from headend.models import (
    CAP_ENDED,
    CAP_ON_AIR,
    DELIVERY_FETCHED,
    DELIVERY_INTERRUPTED,
    DELIVERY_OFFLINE,
    DELIVERY_PENDING,
    DELIVERY_PLAYING,
    DELIVERY_TERMINAL,
    DELIVERY_WAITING,
    PRIORITIES,
    Broadcast,
    CapAlert,
    Delivery,
    DeviceMedia,
    Receiver,
    User,
    Zone,
)
from headend.security import has_permission
from headend.services import audit, deliveries, ledger, reconcile
from headend.services.deliveries import REPORT_GRACE, refresh_states, summarise
from headend.services.media import alert_tone_media, check_not_expired, get_media
from headend.settings import Settings
from protocol import messages

PRIO_WIRE = {"normal": messages.PRIO_NORMAL, "priority": messages.PRIO_PRIORITY,
             "emergency": messages.PRIO_EMERGENCY}
# A start time this far in the past is still taken as "now" (clock skew of the caller).
PAST_TOLERANCE = timedelta(seconds=5)
# The furthest ahead a broadcast may be scheduled: a year (and a leap day) covers every yearly
# programme; beyond it is a typing slip, and near year 9999 the end time would overflow.
MAX_SCHEDULE_AHEAD = timedelta(days=366)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# -- targets -------------------------------------------------------------------------------

# What sending a broadcast reads of each receiver: rows of these columns, not ORM objects (a
# thousand of those cost an emergency tens of milliseconds before its first command leaves).
SEND_COLUMNS = (Receiver.id, Receiver.online, Receiver.codec, Receiver.capabilities)


def resolve_targets(session: Session, targets: Any, columns: tuple = ()) -> list[Any]:
    """The receivers named by ``{"all": true} | {"zones": [...]} | {"devices": [...]}``:
    ``Receiver`` objects, or rows of ``columns`` (which include ``Receiver.id``) if given."""
    def query():
        return select(*columns) if columns else select(Receiver)

    def fetch(statement):
        return list(session.execute(statement).all() if columns else session.scalars(statement))

    if not isinstance(targets, dict) or len([k for k in ("all", "zones", "devices")
                                             if targets.get(k)]) != 1:
        raise Invalid("bad-targets", 'targets must be {"all": true}, {"zones": [...]} or '
                      '{"devices": [...]}', "Cần chọn nơi phát: toàn xã, thôn/xóm, hoặc cụm loa")
    if targets.get("all"):
        if targets["all"] is not True:
            raise Invalid("bad-targets", '"all" must be true', "Giá trị 'all' phải là true")
        receivers = fetch(query().order_by(Receiver.id))
    elif targets.get("zones"):
        zones = _id_list(targets["zones"], "zones")
        known = set(session.scalars(select(Zone.id).where(Zone.id.in_(zones))))
        unknown = [z for z in zones if z not in known]
        if unknown:
            raise Invalid("unknown-zone", "unknown zone(s): %s" % ", ".join(unknown),
                          "Không có thôn/xóm: %s" % ", ".join(unknown))
        receivers = fetch(query().where(Receiver.zone_id.in_(zones)).order_by(Receiver.id))
    else:
        devices = _id_list(targets["devices"], "devices")
        receivers = []
        for part in chunks(devices):
            receivers += fetch(query().where(Receiver.id.in_(part)))
        known = {r.id for r in receivers}
        unknown = [d for d in devices if d not in known]
        if unknown:
            raise Invalid("unknown-device", "unknown receiver(s): %s" % ", ".join(unknown),
                          "Không có cụm loa: %s" % ", ".join(unknown))
    if not receivers:
        raise Invalid("no-receivers", "no receiver is in the chosen targets",
                      "Không có cụm loa nào ở nơi đã chọn")
    return receivers


def _id_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid("bad-targets", "%s must be a list of ids" % name,
                      "Danh sách %s không hợp lệ" % name)
    return list(dict.fromkeys(value))


# -- play commands -------------------------------------------------------------------------

def receiver_codecs(receiver: Any) -> list[str]:
    """What this receiver decodes: its birth's declaration, else its provisioned codec."""
    caps = receiver.capabilities or {}
    declared = caps.get("codecs") if isinstance(caps, dict) else None
    if isinstance(declared, list) and declared:
        return [c for c in declared if c in messages.CODECS]
    return [receiver.codec]


def play_args(settings: Settings, broadcast: Broadcast, receiver: Any,
              at_ms: int | None) -> dict[str, Any] | None:
    """The ``play`` arguments for one receiver, in a rendition it can decode (None if none)."""
    rendition = planning.rendition_for(receiver_codecs(receiver), broadcast.media.renditions)
    if rendition is None:
        return None
    return planning.play_fields(settings, bid=broadcast.id, item_id=broadcast.media_id,
                                rendition=rendition, at_ms=at_ms,
                                prio=PRIO_WIRE[broadcast.priority], vol=broadcast.volume)


def _cached(session: Session, device_ids: list[str], shas: set[str]) -> set[str]:
    """Devices that reported one of these renditions as cached."""
    have: set[str] = set()
    for part in chunks(device_ids):
        have.update(session.scalars(select(DeviceMedia.device_id).where(
            DeviceMedia.device_id.in_(part), DeviceMedia.sha256.in_(shas))))
    return have


def play_command(settings: Settings, broadcast: Broadcast, receiver: Receiver,
                  at_ms: int | None) -> Command | None:
    """The play command for one receiver (None: no rendition it decodes)."""
    args = play_args(settings, broadcast, receiver, at_ms)
    if args is None:
        return None
    return Command(receiver.id, messages.PLAY, args, new_command_id(broadcast.id))


# -- create / cancel -----------------------------------------------------------------------

def permission_for(priority: str) -> str:
    """The permission a broadcast of ``priority`` needs: one rule whichever way it is sent
    (``POST /broadcasts``, ``POST /emergency``, the pages)."""
    return "emergency" if priority == "emergency" else "broadcast"


def check_may_send(actor: User | str | None, priority: str) -> None:
    """Refuse a person whose role lacks ``permission_for(priority)``. A system actor (a string:
    the scheduler, a warning source) was authorised where it came in."""
    if isinstance(actor, User) and not has_permission(actor.role, permission_for(priority)):
        if priority == "emergency":
            raise Forbidden("forbidden", "role %s may not send an emergency" % actor.role,
                            "Bạn không có quyền phát tin khẩn cấp")
        raise Forbidden("forbidden", "role %s may not broadcast" % actor.role,
                        "Bạn không có quyền phát bản tin")


def create_broadcast(session: Session, *, settings: Settings, publisher: Publisher,
                     media_id: Any, targets: Any, priority: Any = "normal",
                     start_at: datetime | None = None, actor: User | str | None = None,
                     now: datetime | None = None,
                     valid_until: datetime | None = None,
                     broadcast_id: str | None = None,
                     volume: int | None = None) -> Broadcast:
    """Schedule ``media_id`` on ``targets`` at ``start_at`` (None: now) and send the commands.

    Receivers fetch the media as soon as they get the command and wait for the start time.
    An emergency always plays now, at emergency volume, preempting everything. ``valid_until``
    (a CAP alert's expiry) replaces the usual window in which a returning receiver still gets
    it; an emergency is written to the ledger (headend/services/ledger.py). ``broadcast_id``:
    the id it gets, known ahead (a programme's occurrence, already in the receivers' windows:
    headend/services/programme_windows.py); None: a new one. ``volume``: what its plays
    carry (a programme's own, within its zones' limits: programmes_rules.py); None: each
    receiver's default.
    """
    now = now or datetime.now(UTC)
    if priority not in PRIORITIES:
        raise Invalid("bad-priority", "priority must be one of %s" % ", ".join(PRIORITIES),
                      "Mức ưu tiên phải là: thường, ưu tiên hoặc khẩn cấp")
    check_may_send(actor, priority)
    if not isinstance(media_id, str) or not media_id:
        raise Invalid("missing-field", "media_id is required", "Cần chọn bản tin")
    try:
        media = get_media(session, media_id=media_id)
    except NotFound as exc:
        raise Invalid(exc.code, exc.message, exc.message_vi) from None
    if start_at is not None:
        if start_at.tzinfo is None:
            raise Invalid("naive-time", "start_at needs a time zone (e.g. +07:00 or Z)",
                          "Thời điểm phát cần có múi giờ")
        if start_at < now - PAST_TOLERANCE:
            raise Invalid("start-in-past", "start_at is in the past",
                          "Thời điểm phát đã qua")
        if start_at > now + MAX_SCHEDULE_AHEAD:
            raise Invalid("start-too-far", "start_at may be at most %d days ahead"
                          % MAX_SCHEDULE_AHEAD.days,
                          "Chỉ được hẹn giờ phát trong vòng %d ngày tới" % MAX_SCHEDULE_AHEAD.days)
        if priority == "emergency" and start_at > now + PAST_TOLERANCE:
            raise Invalid("emergency-later", "an emergency plays now: leave start_at empty",
                          "Tin khẩn cấp phát ngay: không đặt giờ phát")
    receivers = resolve_targets(session, targets, SEND_COLUMNS)
    emergency = priority == "emergency"
    scheduled = start_at is not None and start_at > now
    now_ms_ = _ms(now)
    if start_at is not None and scheduled:
        at_ms = _ms(start_at)
    elif emergency:
        at_ms = planning.emergency_start_ms(settings, now_ms_)  # where the media is held
    else:
        at_ms = planning.now_start_ms(settings, now_ms_)
    start = _dt(at_ms)
    check_not_expired(media, start)  # a bulletin past its expiry date is not aired
    window = timedelta(milliseconds=media.duration_ms)
    if emergency:
        window = max(window, timedelta(seconds=settings.emergency_window_s))
    broadcast = Broadcast(id=broadcast_id or "b%s" % secrets.token_hex(6), media_id=media.id,
                          targets=targets, priority=priority, start_at=start,
                          valid_until=max(valid_until, start) if valid_until else start + window,
                          play_at_ms=None if emergency else at_ms, volume=volume,
                          created_at=now,
                          created_by=actor.username if isinstance(actor, User) else actor)
    broadcast.media = media
    session.add(broadcast)
    session.flush()  # deliveries reference it (no ORM relationship orders the inserts)
    cached = set()
    tone = None
    if emergency:
        cached = _cached(session, [r.id for r in receivers], {r.sha256 for r in media.renditions})
        # Receivers that must fetch the media first open with the pinned alert tone at once.
        tone = alert_tone_media(session)
        if tone is not None and tone.id == media.id:
            tone = None
    # An emergency's lead counts from now, after the lookups, so it is not eaten by them.
    lead_from = max(now_ms_, now_ms())
    commands = []
    rows = []
    # Receivers that decode the same codecs and start at the same time get the same play
    # arguments: made (and checked, in ``prepare``) once, shared read-only by their commands.
    shared_args: dict[tuple, dict[str, Any] | None] = {}
    for receiver in receivers:
        row = {"broadcast_id": broadcast.id, "device_id": receiver.id, "stop_pending": False,
               "updated_at": now, "command_id": None, "sent_at": None}
        rows.append(row)
        if not receiver.online:
            row.update(deliveries.initial(deliveries.OFFLINE_AT_SEND))
            continue
        # An emergency starts together at call + lead where the media is already on the
        # receiver; elsewhere it plays as soon as fetched, from the beginning.
        device_at = (planning.emergency_at_ms(settings, lead_from, receiver.id in cached)
                     if emergency else at_ms)
        codecs = tuple(receiver_codecs(receiver))
        if (codecs, device_at) not in shared_args:
            shared = play_args(settings, broadcast, receiver, device_at)
            opening = (planning.rendition_for(codecs, tone.renditions)
                       if tone is not None and device_at is None and shared else None)
            if opening is not None:
                shared["lead"] = planning.lead_fields(tone.id, opening)
            shared_args[(codecs, device_at)] = shared
        args = shared_args[(codecs, device_at)]
        if args is None:
            row.update(deliveries.initial(deliveries.NO_CODEC))
            continue
        command = Command(receiver.id, messages.PLAY, args, new_command_id(broadcast.id))
        row.update(deliveries.initial(deliveries.SENT), command_id=command.cmd_id, sent_at=now)
        commands.append(command)
    # One multi-row insert (Core, every row with the same keys: no ORM bookkeeping): an
    # emergency to a thousand receivers must not cost a thousand round trips, or the ORM's
    # per-row work, before the first command leaves.
    session.execute(insert(Delivery.__table__), rows)
    broadcast.state = summarise(broadcast, [row["state"] for row in rows], now)
    outgoing = prepare(session, site_id=settings.site_id, commands=commands,
                       ttl_s=settings.command_ttl_s, now=now_ms_)
    audit.record(session, actor=actor, action="broadcast.create", target=broadcast.id,
                 detail={"media_id": media.id, "targets": targets, "priority": priority,
                         "start_at": start.isoformat(), "receivers": len(receivers)})
    if emergency:
        ledger.append(session, event="emergency.create", actor=actor, broadcast_id=broadcast.id,
                      at=now, detail={"media_id": media.id, "targets": targets,
                                      "receivers": len(receivers),
                                      "valid_until": broadcast.valid_until.isoformat()})
    session.commit()
    publisher.publish_many(outgoing)
    return broadcast


def prefetch_media(session: Session, *, settings: Settings, publisher: Publisher,
                   media_id: Any, targets: Any = None, actor: User | str | None = None) -> int:
    """Send ``fetch`` for ``media_id`` to the targets' online receivers (default: all), so a
    later broadcast of it (an emergency above all) starts from their cache at once and in
    step. Returns how many receivers were asked."""
    media = get_media(session, media_id=media_id)
    commands = []
    for receiver in resolve_targets(session, targets or {"all": True}):
        rendition = planning.rendition_for(receiver_codecs(receiver), media.renditions)
        if rendition is None or not receiver.online:
            continue
        commands.append(Command(receiver.id, messages.FETCH,
                                planning.fetch_fields(settings, media.id, rendition),
                                new_command_id("fetch")))
    outgoing = prepare(session, site_id=settings.site_id, commands=commands,
                       ttl_s=settings.command_ttl_s)
    audit.record(session, actor=actor, action="media.prefetch", target=media.id,
                 detail={"targets": targets, "receivers": len(commands)})
    session.commit()
    publisher.publish_many(outgoing)
    return len(commands)


def send_emergency(session: Session, *, settings: Settings, publisher: Publisher,
                   media_id: Any, targets: Any = None, actor: User | str | None = None,
                   now: datetime | None = None,
                   valid_until: datetime | None = None) -> Broadcast:
    """One call: ``media_id`` on every targeted receiver (default: all) now, preempting all."""
    return create_broadcast(session, settings=settings, publisher=publisher, media_id=media_id,
                            targets=targets or {"all": True}, priority="emergency",
                            start_at=None, actor=actor, now=now, valid_until=valid_until)


def get_broadcast(session: Session, *, broadcast_id: str) -> Broadcast:
    broadcast = session.get(Broadcast, broadcast_id)
    if broadcast is None:
        raise NotFound("unknown-broadcast", "unknown broadcast %r" % broadcast_id,
                       "Không có lượt phát %r" % broadcast_id)
    return broadcast


def cancel_broadcast(session: Session, *, settings: Settings, publisher: Publisher,
                     broadcast_id: str, actor: User | str | None = None,
                     now: datetime | None = None) -> Broadcast:
    """Stop a broadcast everywhere: receivers playing or holding it get ``stop``; one that is
    offline now gets it when it comes back; none is sent it again."""
    now = now or datetime.now(UTC)
    broadcast = get_broadcast(session, broadcast_id=broadcast_id)
    if broadcast.cancelled_at is not None:
        return broadcast
    # Still open: a receiver waits for it or plays it, or one interrupted by a restart gets
    # it again when it comes back while it is current.
    open_states = DELIVERY_WAITING + (DELIVERY_PLAYING,)
    if broadcast.valid_until > now:
        open_states += (DELIVERY_INTERRUPTED,)
    open_ = session.scalar(select(Delivery.id).where(
        Delivery.broadcast_id == broadcast.id, Delivery.state.in_(open_states)).limit(1))
    if open_ is None:
        raise Conflict("already-over", "broadcast %s is already over (%s)"
                       % (broadcast.id, broadcast.state), "Lượt phát này đã kết thúc")
    online = set(session.scalars(
        select(Receiver.id).join(Delivery, Delivery.device_id == Receiver.id)
        .where(Delivery.broadcast_id == broadcast.id, Receiver.online.is_(True))))
    commands = []
    for delivery in session.scalars(select(Delivery).where(
            Delivery.broadcast_id == broadcast.id,
            Delivery.state.not_in(DELIVERY_TERMINAL))):
        holds_it = delivery.sent_at is not None
        deliveries.move(delivery, deliveries.CANCEL_REQUESTED, at=now)
        if not holds_it:
            continue
        if delivery.device_id in online:
            commands.append(Command(delivery.device_id, messages.STOP, {"bid": broadcast.id},
                                    new_command_id("stop")))
        else:
            delivery.stop_pending = True
    broadcast.cancelled_at = now
    broadcast.cancelled_by = actor.username if isinstance(actor, User) else actor
    # A CAP alert on the air through it ends with it, however it was cancelled (the page, the
    # API, a CAP Cancel): a later Update of it then finds nothing running.
    session.execute(update(CapAlert).where(CapAlert.broadcast_id == broadcast.id,
                                           CapAlert.state == CAP_ON_AIR)
                    .values(state=CAP_ENDED, ended_by=(broadcast.cancelled_by or "")[:64],
                            ended_at=now))
    session.flush()
    refresh_states(session, broadcast_ids={broadcast.id}, now=now)
    outgoing = prepare(session, site_id=settings.site_id, commands=commands,
                       ttl_s=settings.command_ttl_s, now=_ms(now))
    audit.record(session, actor=actor, action="broadcast.cancel", target=broadcast.id,
                 detail={"stopped": len(commands)})
    if broadcast.priority == "emergency":
        ledger.append(session, event="emergency.cancel", actor=actor, broadcast_id=broadcast.id,
                      at=now, detail={"stopped": len(commands)})
    session.commit()
    publisher.publish_many(outgoing)
    return broadcast


# -- reading -------------------------------------------------------------------------------

def broadcast_status(session: Session, *, broadcast_id: str) -> dict[str, Any]:
    """A broadcast with every targeted receiver's state, as the API and the pages show it."""
    broadcast = get_broadcast(session, broadcast_id=broadcast_id)
    rows = session.execute(
        select(Delivery, Receiver.name, Receiver.zone_id)
        .join(Receiver, Delivery.device_id == Receiver.id)
        .where(Delivery.broadcast_id == broadcast.id).order_by(Delivery.device_id)).all()
    devices = [{"id": d.device_id, "name": name, "zone": zone, "state": d.state,
                "reason": d.reason, "reason_detail": d.reason_detail,
                "sent_at": d.sent_at, "acked_at": d.acked_at, "fetched_at": d.fetched_at,
                "started_at": d.started_at, "ended_at": d.ended_at, "resends": d.resends or 0}
               for d, name, zone in rows]
    return {"id": broadcast.id, "media_id": broadcast.media_id, "title": broadcast.media.title,
            "duration_s": broadcast.media.duration_ms / 1000, "targets": broadcast.targets,
            "priority": broadcast.priority, "start_at": broadcast.start_at,
            "state": broadcast.state, "created_by": broadcast.created_by,
            "created_at": broadcast.created_at, "cancelled_at": broadcast.cancelled_at,
            "cancelled_by": broadcast.cancelled_by, "valid_until": broadcast.valid_until,
            "counts": dict(Counter(d["state"] for d in devices)), "devices": devices}


def list_broadcasts(session: Session, *, limit: int = 100, state: str | None = None,
                    priority: str | None = None) -> list[Broadcast]:
    query = select(Broadcast).order_by(Broadcast.created_at.desc()).limit(limit)
    if state:
        query = query.where(Broadcast.state == state)
    if priority:
        query = query.where(Broadcast.priority == priority)
    return list(session.scalars(query))


def current_emergencies(session: Session, *, now: datetime | None = None) -> list[Broadcast]:
    now = now or datetime.now(UTC)
    return list(session.scalars(select(Broadcast).where(
        Broadcast.priority == "emergency", Broadcast.cancelled_at.is_(None),
        Broadcast.valid_until > now).order_by(Broadcast.created_at.desc())))


# -- concluding what no report will settle (the presence sweep calls this) ------------------

def finish_overdue(session: Session, *, now: datetime) -> int:
    """Conclude deliveries that no report will settle any more, and summarise their broadcasts.

    A delivery still waiting when its broadcast's window and the report grace are over failed:
    "headend-down" if the head-end was down during the air time, else "receiver-offline" if
    it never reached the receiver, else "no-report". A "playing" one that cannot still be
    playing is interrupted (reconcile.close_unreported). Nothing is concluded in the first
    moments after a head-end start, while the broker still delivers the reports it kept.
    Returns how many broadcasts were touched.
    """
    if reconcile.starting_up(session, now=now):
        return 0
    touched = reconcile.close_unreported(session, now=now)
    down: dict[str, bool] = {}
    for delivery, broadcast in session.execute(
            select(Delivery, Broadcast).join(Broadcast, Delivery.broadcast_id == Broadcast.id)
            .where(Delivery.state.in_(DELIVERY_WAITING),
                   Broadcast.valid_until < now - REPORT_GRACE)).all():
        if broadcast.id not in down:
            down[broadcast.id] = reconcile.headend_was_down(
                session, start=broadcast.start_at, end=broadcast.valid_until)
        if down[broadcast.id]:
            deliveries.move(delivery, deliveries.HEADEND_DOWN, at=now)
        else:
            deliveries.move(delivery, deliveries.WINDOW_OVER, at=now,
                            reason="receiver-offline" if delivery.state == DELIVERY_OFFLINE
                            else "no-report")
        touched.add(broadcast.id)
    if not touched:
        return 0
    session.flush()
    refresh_states(session, broadcast_ids=touched, now=now)
    return len(touched)


def commands_for_returning(session: Session, *, settings: Settings, receiver: Receiver,
                           now: datetime,
                           rebooted: bool = False) -> tuple[list[Command], set[str]]:
    """What a receiver that just came back (a new session) must be sent: the current
    broadcasts it missed, and stops for those cancelled while it was away. After a reboot
    (``rebooted``) also what it may have lost with it: a play without a fixed start (kept only
    in memory) and what the restart interrupted; it ignores a broadcast it still holds.
    Returns the commands and the ids of the broadcasts touched."""
    commands: list[Command] = []
    touched: set[str] = set()
    resend = ((Delivery.state == DELIVERY_OFFLINE) | Delivery.stop_pending.is_(True)
              | ((Delivery.state == DELIVERY_PENDING) & (Delivery.sent_at < now)))
    if rebooted:
        resend = resend | (Delivery.state == DELIVERY_FETCHED) | (
            (Delivery.state == DELIVERY_INTERRUPTED)
            & (Delivery.reason == deliveries.RECEIVER_RESTARTED))
    rows = session.execute(
        select(Delivery, Broadcast).join(Broadcast, Delivery.broadcast_id == Broadcast.id)
        .where(Delivery.device_id == receiver.id, resend)).all()
    now_ms_ = _ms(now)
    for delivery, broadcast in rows:
        if delivery.stop_pending:
            delivery.stop_pending = False
            commands.append(Command(receiver.id, messages.STOP, {"bid": broadcast.id},
                                    new_command_id("stop")))
            continue
        if broadcast.cancelled_at is not None or broadcast.valid_until <= now:
            continue
        if delivery.acked_at is not None and not rebooted and delivery.state == DELIVERY_PENDING:
            continue  # it already holds the command (acked before its link went down)
        # An emergency replays from the start now; a programme keeps its slot (a receiver
        # joining late skips what it missed, in step with its neighbours).
        at_ms = None if broadcast.priority == "emergency" else broadcast.play_at_ms
        if at_ms is not None and at_ms + broadcast.media.duration_ms <= now_ms_:
            continue
        command = play_command(settings, broadcast, receiver, at_ms)
        if command is None:
            deliveries.move(delivery, deliveries.NO_CODEC, at=now)
        elif deliveries.move(delivery, deliveries.SENT_ON_RETURN, at=now):
            delivery.command_id = command.cmd_id
            delivery.sent_at = now
            commands.append(command)
        touched.add(broadcast.id)
    return commands, touched
