"""Confirmation and escalation of emergencies: which receivers have not confirmed one, and
sending it to them again.

A receiver confirms an emergency by acking its play command (then fetched, playing, played:
headend/services/deliveries.py). One that is online and has not acked within
``settings.emergency_confirm_s`` of the latest send is *unconfirmed*: the presence sweep sends
it the play again (``resend_overdue``), at most ``settings.emergency_resends`` times, and the
emergency's page lists it with its count; an operator's "re-send" (``resend``) sends it again
at once, whatever the count. A receiver offline is listed too, but nothing is sent to it: it
gets the emergency when it comes back, while it is current
(broadcasts.commands_for_returning). Only a current emergency (not cancelled, within its
window or its CAP alert's expiry) is ever re-sent.

A re-send is the same play (the same broadcast id), with a fresh command id: a receiver that
did get the first one ignores it (firmware/core.py: a known bid), so nothing plays twice.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.commands import Command, Publisher, prepare
from headend.errors import Conflict
from headend.models import DELIVERY_OFFLINE, DELIVERY_PENDING, Broadcast, Delivery, Receiver, User
from headend.services import audit, broadcasts, deliveries
from headend.settings import Settings


def _current(broadcast: Broadcast, now: datetime) -> bool:
    return (broadcast.priority == "emergency" and broadcast.cancelled_at is None
            and broadcast.valid_until > now)


def unconfirmed(detail: dict[str, Any], *, settings: Settings,
                now: datetime) -> list[dict[str, Any]]:
    """The receivers of ``detail`` (broadcasts.broadcast_status) that have not confirmed this
    current emergency ``emergency_confirm_s`` after it was sent: no ack, still waiting (sent,
    or offline). Empty before that time, and once it is cancelled or over."""
    if (detail["priority"] != "emergency" or detail["cancelled_at"] is not None
            or detail["valid_until"] <= now
            or now - detail["created_at"] < timedelta(seconds=settings.emergency_confirm_s)):
        return []
    return [d for d in detail["devices"] if d["acked_at"] is None
            and d["state"] in (DELIVERY_PENDING, DELIVERY_OFFLINE)]


def _waiting_for_ack(session: Session, where, now: datetime):
    """(delivery, broadcast, receiver) of current emergencies whose online receiver has not
    acked the play it was sent."""
    return session.execute(
        select(Delivery, Broadcast, Receiver)
        .join(Broadcast, Delivery.broadcast_id == Broadcast.id)
        .join(Receiver, Delivery.device_id == Receiver.id)
        .where(Broadcast.priority == "emergency", Broadcast.cancelled_at.is_(None),
               Broadcast.valid_until > now, Delivery.state == DELIVERY_PENDING,
               Delivery.acked_at.is_(None), Delivery.sent_at.is_not(None),
               Receiver.online.is_(True), where)
        .order_by(Delivery.broadcast_id, Delivery.device_id)).all()


def _send_again(settings: Settings, delivery: Delivery, broadcast: Broadcast,
                receiver: Receiver, now: datetime) -> Command | None:
    # An emergency plays from its start, now (as for a receiver that comes back).
    command = broadcasts.play_command(settings, broadcast, receiver, None)
    if command is None or not deliveries.move(delivery, deliveries.RESENT, at=now):
        return None
    delivery.command_id = command.cmd_id
    delivery.sent_at = now
    delivery.resends = (delivery.resends or 0) + 1
    return command


def resend_overdue(session: Session, *, settings: Settings,
                   now: datetime | None = None) -> list[Command]:
    """The presence sweep's part: the plays to send again to receivers that have not acked a
    current emergency within ``emergency_confirm_s`` of its latest send, each at most
    ``emergency_resends`` times. The caller prepares, commits and publishes them."""
    now = now or datetime.now(UTC)
    if settings.emergency_resends <= 0:
        return []
    cutoff = now - timedelta(seconds=settings.emergency_confirm_s)
    commands = []
    for delivery, broadcast, receiver in _waiting_for_ack(
            session, (Delivery.sent_at <= cutoff)
            & (Delivery.resends < settings.emergency_resends), now):
        command = _send_again(settings, delivery, broadcast, receiver, now)
        if command is not None:
            commands.append(command)
    return commands


def resend(session: Session, *, settings: Settings, publisher: Publisher, broadcast_id: str,
           actor: User | str | None = None, now: datetime | None = None) -> int:
    """An operator's "re-send": the play again, now, to every online receiver of this current
    emergency that has not acked it (no bound: a person decided). Returns how many were sent;
    409 when the emergency is over or cancelled."""
    now = now or datetime.now(UTC)
    broadcast = broadcasts.get_broadcast(session, broadcast_id=broadcast_id)
    if not _current(broadcast, now):
        raise Conflict("not-current", "broadcast %s is not a current emergency" % broadcast.id,
                       "Tin khẩn cấp này đã hết hiệu lực hoặc đã bị hủy")
    commands = []
    for delivery, row, receiver in _waiting_for_ack(
            session, Delivery.broadcast_id == broadcast.id, now):
        command = _send_again(settings, delivery, row, receiver, now)
        if command is not None:
            commands.append(command)
    outgoing = prepare(session, site_id=settings.site_id, commands=commands,
                       ttl_s=settings.command_ttl_s, now=int(now.timestamp() * 1000))
    audit.record(session, actor=actor, action="broadcast.resend", target=broadcast.id,
                 detail={"receivers": [c.device_id for c in commands]})
    session.commit()
    publisher.publish_many(outgoing)
    return len(commands)
