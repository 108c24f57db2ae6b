"""Receivers: provisioning (key and broker password, shown once), listing, editing, commands."""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.commands import Command, Publisher, new_command_id, prepare
from headend.errors import Conflict, Forbidden, Invalid, NotFound
from headend.keystore import kek_for, load_kek, seal_device_key
from headend.models import (
    DELIVERY_PLAYING,
    AuditEntry,
    Broadcast,
    CommandCounter,
    Delivery,
    DeviceEvent,
    MediaItem,
    Receiver,
    User,
    Zone,
)
from headend.security import has_permission, mosquitto_hash, random_key_hex, random_password
from headend.services import audit
from headend.services.sites import check_coordinates, check_name, ensure_site
from headend.settings import Settings, default_client_id
from protocol import messages
from protocol.errors import ProtocolError
from protocol.topics import valid_id

# Ids a receiver may not take (compared case-insensitively): a receiver's id is its broker
# account, so one named like the head-end's account or client id could take over its session.
RESERVED_DEVICE_IDS = ("headend", "admin", "loaxa")

# Commands that may be sent to one receiver from the API or the pages, and the permission
# (headend/security.py) each needs: a technician's (identify, volume, reboot); a stop also
# by whoever may broadcast (an operator silencing one loudspeaker).
DEVICE_COMMANDS = (messages.IDENTIFY, messages.VOLUME, messages.REBOOT, messages.STOP)
COMMAND_PERMISSIONS = {messages.IDENTIFY: ("devices",), messages.VOLUME: ("devices",),
                       messages.REBOOT: ("devices",), messages.STOP: ("devices", "broadcast")}

# A receiver's state at a glance: the dashboard's counts, the map's colours, the badges.
RECEIVER_STATES = ("online", "fault", "offline")


@dataclass
class ProvisionedDevice:
    """A new receiver and its secrets: the only time the key and password are shown."""

    receiver: Receiver
    device_key: str
    mqtt_user: str
    mqtt_password: str


@dataclass
class DeviceView:
    """What the receivers list shows: no secrets."""

    id: str
    name: str
    zone: str | None
    zone_name: str | None
    online: bool
    last_seen: datetime | None
    offline_reason: str | None
    firmware: str | None
    link: str | None
    codec: str
    lat: float | None
    lon: float | None
    capabilities: dict[str, Any] | None
    telemetry: dict[str, Any] | None
    now_playing: dict[str, Any] | None  # {"broadcast_id", "title", "priority"} or None
    exercise: bool = False  # marked for exercises: CAP Exercise alerts air here only
    # Its latest commands were refused as replays: its counter floor is stuck far ahead, and
    # POST .../reset-counter is the way out (computed for one receiver's detail only).
    counter_reset_suggested: bool = False


def has_fault(telemetry: Any) -> bool:
    """Its latest heartbeat says it is on battery or its amplifier is faulty."""
    hb = telemetry if isinstance(telemetry, dict) else {}
    return hb.get("mains") == 0 or bool(hb.get("af"))


def receiver_state(online: bool, telemetry: Any) -> str:
    """online, fault (online, with ``has_fault``) or offline."""
    if not online:
        return "offline"
    return "fault" if has_fault(telemetry) else "online"


def _check_zone(session: Session, zone_id: str | None) -> None:
    if zone_id is not None and session.get(Zone, zone_id) is None:
        raise Invalid("unknown-zone", "unknown zone %r" % zone_id,
                      "Không có thôn/xóm %r" % zone_id)


def _check_codec(codec: str) -> None:
    if codec not in messages.CODECS:
        raise Invalid("bad-codec", "codec must be one of %s" % ", ".join(messages.CODECS),
                      "Codec phải là một trong: %s" % ", ".join(messages.CODECS))


def _check_not_reserved(device_id: str, *, site_id: str, settings: Settings | None) -> None:
    reserved = set(RESERVED_DEVICE_IDS) | {default_client_id(site_id)}
    if settings is not None:
        reserved |= {settings.resolved_client_id, settings.mqtt_username}
    reserved = {name.casefold() for name in reserved if name}
    if device_id.casefold() in reserved or device_id.startswith("$"):
        raise Invalid("reserved-device-id", "device id %r is reserved for the head-end"
                      % device_id, "Mã thiết bị %r dành riêng cho máy chủ" % device_id)


def provision_device(session: Session, *, site_id: str, name: str, device_id: str | None = None,
                     zone_id: str | None = None, lat: float | None = None,
                     lon: float | None = None, codec: str = "mp3",
                     actor: User | str | None = None, commit: bool = True,
                     settings: Settings | None = None) -> ProvisionedDevice:
    """Create a receiver with a random 32-byte key and a random broker password.

    ``settings`` names the head-end's own broker account and client id, which no receiver may
    take; without it only the default client id of ``site_id`` is known."""
    device_id = device_id or "rx-%s" % secrets.token_hex(3)
    if not valid_id(device_id):
        raise Invalid("bad-device-id", "device id must be 1-48 characters of A-Z a-z 0-9 _ -",
                      "Mã thiết bị chỉ gồm 1-48 ký tự A-Z a-z 0-9 _ -")
    _check_not_reserved(device_id, site_id=site_id, settings=settings)
    check_coordinates(lat, lon)
    if session.get(Receiver, device_id) is not None:
        raise Conflict("device-exists", "receiver %r already exists" % device_id,
                       "Cụm loa %r đã tồn tại" % device_id)
    _check_zone(session, zone_id)
    _check_codec(codec)
    ensure_site(session, site_id=site_id, name=site_id)
    key = random_key_hex()
    password = random_password()
    receiver = Receiver(id=device_id, site_id=site_id, name=check_name(name or device_id),
                        zone_id=zone_id, lat=lat, lon=lon, codec=codec, mqtt_user=device_id,
                        device_key=seal_device_key(load_kek(settings) if settings else
                                                   kek_for(session), device_id, key),
                        mqtt_password_hash=mosquitto_hash(password), online=False)
    session.add(receiver)
    session.flush()  # before its counter row, which refers to it
    # Its counter row from the start, so signing can lock it (headend/commands.py: prepare).
    session.add(CommandCounter(device_id=device_id, last_ctr=0))
    audit.record(session, actor=actor, action="device.provision", target=device_id,
                 detail={"zone": zone_id, "name": receiver.name})  # never the secrets
    if commit:
        session.commit()
    return ProvisionedDevice(receiver, key, device_id, password)


def _now_playing(session: Session, device_ids: list[str] | None) -> dict[str, dict]:
    query = (select(Delivery.device_id, Broadcast.id, MediaItem.title, Broadcast.priority)
             .join(Broadcast, Delivery.broadcast_id == Broadcast.id)
             .join(MediaItem, Broadcast.media_id == MediaItem.id)
             .where(Delivery.state == DELIVERY_PLAYING))
    if device_ids is not None:
        query = query.where(Delivery.device_id.in_(device_ids))
    playing: dict[str, dict] = {}
    rank = {"normal": 0, "priority": 1, "emergency": 2}
    for dev, bid, title, prio in session.execute(query):
        best = playing.get(dev)
        if best is None or rank.get(prio, 0) > rank.get(best["priority"], 0):
            playing[dev] = {"broadcast_id": bid, "title": title, "priority": prio}
    return playing


def _view(receiver: Receiver, playing: dict[str, dict]) -> DeviceView:
    return DeviceView(
        id=receiver.id, name=receiver.name, zone=receiver.zone_id,
        zone_name=receiver.zone.name if receiver.zone else None, online=receiver.online,
        last_seen=receiver.last_seen, offline_reason=receiver.offline_reason,
        firmware=receiver.firmware, link=receiver.link, codec=receiver.codec, lat=receiver.lat,
        lon=receiver.lon, capabilities=receiver.capabilities, telemetry=receiver.telemetry,
        now_playing=playing.get(receiver.id), exercise=bool(receiver.exercise))


def list_devices(session: Session, *, zone_id: str | None = None,
                 online: bool | None = None) -> list[DeviceView]:
    query = select(Receiver).order_by(Receiver.zone_id, Receiver.id)
    if zone_id is not None:
        query = query.where(Receiver.zone_id == zone_id)
    if online is not None:
        query = query.where(Receiver.online == online)
    receivers = list(session.scalars(query))
    playing = _now_playing(session, None)
    return [_view(r, playing) for r in receivers]


def get_receiver(session: Session, *, device_id: str) -> Receiver:
    receiver = session.get(Receiver, device_id)
    if receiver is None:
        raise NotFound("unknown-device", "unknown receiver %r" % device_id,
                       "Không có cụm loa %r" % device_id)
    return receiver


def get_device(session: Session, *, device_id: str) -> DeviceView:
    receiver = get_receiver(session, device_id=device_id)
    view = _view(receiver, _now_playing(session, [device_id]))
    view.counter_reset_suggested = counter_looks_stuck(session, device_id=device_id)
    return view


# A receiver whose last this many refusals were "replay", with no command taken since, is
# taken for one whose counter floor is stuck ahead of the head-end's counter (issue 9).
STUCK_REPLAYS = 3
_STUCK_LOOKBACK = 50  # events looked at, newest first


def counter_looks_stuck(session: Session, *, device_id: str) -> bool:
    """Whether the receiver's newest command events show it refusing commands as replays
    (at least ``STUCK_REPLAYS`` "rejected" events with reason "replay") since it last took
    one (an ack "ok"): a reset of its counter floor would help."""
    replays = 0
    for kind, body in session.execute(
            select(DeviceEvent.kind, DeviceEvent.body)
            .where(DeviceEvent.device_id == device_id,
                   DeviceEvent.kind.in_((messages.EV_ACK, messages.EV_REJECTED)))
            .order_by(DeviceEvent.id.desc()).limit(_STUCK_LOOKBACK)):
        body = body if isinstance(body, dict) else {}
        if kind == messages.EV_ACK and body.get("ok") is True:
            break
        if kind == messages.EV_REJECTED and body.get("reason") == "replay":
            replays += 1
    return replays >= STUCK_REPLAYS


_UNSET: Any = object()


def update_device(session: Session, *, device_id: str, name: str | None = None,
                  zone_id: str | None = _UNSET, lat: float | None = _UNSET,
                  lon: float | None = _UNSET, exercise: bool | None = None,
                  actor: User | str | None = None) -> DeviceView:
    receiver = get_receiver(session, device_id=device_id)
    changed: dict[str, Any] = {}
    if name is not None:
        receiver.name = changed["name"] = check_name(name)
    if zone_id is not _UNSET:
        _check_zone(session, zone_id)
        receiver.zone_id = changed["zone"] = zone_id
    check_coordinates(None if lat is _UNSET else lat, None if lon is _UNSET else lon)
    if lat is not _UNSET:
        receiver.lat = changed["lat"] = lat
    if lon is not _UNSET:
        receiver.lon = changed["lon"] = lon
    if exercise is not None:
        receiver.exercise = changed["exercise"] = bool(exercise)
    audit.record(session, actor=actor, action="device.update", target=device_id, detail=changed)
    session.commit()
    session.refresh(receiver)
    return get_device(session, device_id=device_id)


def send_device_command(session: Session, *, settings: Settings, publisher: Publisher,
                        device_id: str, kind: str, args: dict[str, Any] | None = None,
                        actor: User | str | None = None) -> str:
    """Send identify / volume / reboot / stop to one receiver; returns the command id."""
    get_receiver(session, device_id=device_id)
    check_may_command(actor, kind)
    if kind not in DEVICE_COMMANDS:
        raise Invalid("bad-command", "command must be one of %s" % ", ".join(DEVICE_COMMANDS),
                      "Lệnh phải là một trong: %s" % ", ".join(DEVICE_COMMANDS))
    args = dict(args or {})
    try:
        messages.check_args(kind, args)
    except ProtocolError as exc:
        raise Invalid("bad-args", "bad arguments for %s: %s" % (kind, exc),
                      "Tham số lệnh %s không hợp lệ" % kind) from None
    command = Command(device_id, kind, args, new_command_id(kind[:4]))
    outgoing = prepare(session, site_id=settings.site_id, commands=[command],
                       ttl_s=settings.command_ttl_s)
    audit.record(session, actor=actor, action="device.command", target=device_id,
                 detail={"kind": kind, "args": args, "cmd": command.cmd_id})
    session.commit()
    publisher.publish_many(outgoing)
    return command.cmd_id


def check_may_command(actor: User | str | None, kind: str) -> None:
    """Forbidden unless ``actor``'s role holds a permission the command ``kind`` needs
    (``COMMAND_PERMISSIONS``); a service account (a name, not a User) may."""
    if not isinstance(actor, User):
        return
    needed = COMMAND_PERMISSIONS.get(kind, ("devices",))
    if not any(has_permission(actor.role, p) for p in needed):
        raise Forbidden("forbidden", "role %s may not send %s to a receiver" % (actor.role, kind),
                        "Bạn không có quyền gửi lệnh này tới cụm loa")


# What became of a command sent to one receiver, from its ack (firmware/core.py ``_ack``).
CMD_WAITING = "waiting"      # sent, no ack yet, not expired
CMD_DONE = "done"            # the receiver took it (ack ok)
CMD_REFUSED = "refused"      # the receiver refused it (ack not ok, with its reason)
CMD_NO_ANSWER = "no-answer"  # expired without an ack: the receiver never got it in time
COMMAND_STATES = (CMD_WAITING, CMD_DONE, CMD_REFUSED, CMD_NO_ANSWER)
_ACK_LOOKBACK = 200  # acks looked at, newest first


@dataclass
class SentCommand:
    """A command sent to one receiver (from the audit log) and the receiver's answer."""

    id: str
    kind: str
    args: dict[str, Any]
    sent_at: datetime
    sent_by: str | None
    state: str
    answered_at: datetime | None = None
    reason: str | None = None


def recent_commands(session: Session, *, settings: Settings, device_id: str,
                    now: datetime | None = None, limit: int = 5) -> list[SentCommand]:
    """The last ``limit`` commands sent to the receiver (newest first) with its confirmation:
    the ack it reported for each, else waiting until the command expires
    (``settings.command_ttl_s``), then no answer."""
    get_receiver(session, device_id=device_id)
    now = now or datetime.now(UTC)
    sent = []
    for entry in session.scalars(select(AuditEntry).where(
            AuditEntry.action == "device.command", AuditEntry.target == device_id)
            .order_by(AuditEntry.id.desc()).limit(limit)):
        detail = entry.detail if isinstance(entry.detail, dict) else {}
        if isinstance(detail.get("cmd"), str):
            sent.append(SentCommand(detail["cmd"], str(detail.get("kind")),
                                    detail.get("args") or {}, entry.at, entry.username,
                                    CMD_WAITING))
    acks: dict[str, DeviceEvent] = {}
    if sent:
        for event in session.scalars(select(DeviceEvent).where(
                DeviceEvent.device_id == device_id, DeviceEvent.kind == messages.EV_ACK)
                .order_by(DeviceEvent.id.desc()).limit(_ACK_LOOKBACK)):
            body = event.body if isinstance(event.body, dict) else {}
            if isinstance(body.get("cmd"), str):
                acks.setdefault(body["cmd"], event)
    ttl = timedelta(seconds=settings.command_ttl_s)
    for command in sent:
        ack = acks.get(command.id)
        if ack is not None:
            ok = ack.body.get("ok") is True
            command.state = CMD_DONE if ok else CMD_REFUSED
            command.answered_at = ack.t
            command.reason = None if ok else ack.body.get("reason")
        elif now >= command.sent_at + ttl:
            command.state = CMD_NO_ANSWER
    return sent


def reset_counter(session: Session, *, settings: Settings, publisher: Publisher,
                  device_id: str, actor: User | str | None = None) -> str:
    """Sign and send a ``reset_floor`` for the nonce of the receiver's latest birth: the one
    command a receiver takes below its counter floor, once per boot (docs/protocol.md). Its
    counter, the head-end's next one, becomes the receiver's floor, so a receiver that stored
    a floor far in the future (and refuses everything as "replay") takes commands again.
    Returns the command id. Conflict while the receiver is offline (its nonce may be of a
    boot that is over) or has announced no unused nonce."""
    receiver = get_receiver(session, device_id=device_id)
    if not receiver.online:
        raise Conflict("receiver-offline",
                       "receiver %r is offline: its counter can be reset once it is back"
                       % device_id,
                       "Cụm loa %r đang mất kết nối: chỉ đặt lại bộ đếm lệnh khi nó kết nối lại"
                       % device_id)
    if not receiver.reset_nonce:
        raise Conflict("no-reset-nonce",
                       "receiver %r has announced no reset nonce (already used this boot, or "
                       "firmware too old): reboot it by power, then try again" % device_id,
                       "Cụm loa %r chưa gửi mã đặt lại bộ đếm (đã dùng trong lần khởi động "
                       "này, hoặc phần mềm quá cũ): hãy tắt bật nguồn rồi thử lại" % device_id)
    command = Command(device_id, messages.RESET_FLOOR, {"nonce": receiver.reset_nonce},
                      new_command_id("rst"))
    outgoing = prepare(session, site_id=settings.site_id, commands=[command],
                       ttl_s=settings.command_ttl_s)
    audit.record(session, actor=actor, action="device.reset-counter", target=device_id,
                 detail={"cmd": command.cmd_id, "boot": receiver.session_boot})
    session.commit()
    publisher.publish_many(outgoing)
    return command.cmd_id
