"""CAP alerts wired into the head-end: who may post one (warning sources), what the database
knows for ``headend.cap.intake.receive_cap`` (the zones' areas, the site's policy, the alerts
running), and acting on its decision through the broadcasts service.

- aired: the alert tone then the Vietnamese text read by the speech engine, registered as
  media, sent as an emergency to the selected zones, its window ending at the alert's expiry
  (a receiver that comes back before then gets it; after, nothing);
- queued: kept until an operator confirms it (``confirm``), which airs it then;
- an Update replaces: the running alert's broadcast is cancelled before the new one is sent,
  so no receiver plays both; a Cancel cancels it;
- logged: kept, nothing sent; refused: nothing kept, nothing sent.

Every message kept is unique by (sender, identifier): the same message posted twice (a retry,
a replay, the API and a feed) is answered "duplicate" and acted on once. Aired, queued and
confirmed alerts are written to the emergency ledger (headend/services/ledger.py) beside the
emergencies the broadcasts service writes there.
"""

import hashlib
import hmac
import logging
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from headend.cap.errors import CapError
from headend.cap.intake import CapResult, receive_cap
from headend.cap.parse import Alert, parse_cap
from headend.cap.policy import REASON_NAMES, Decision, RunningAlert, SitePolicy
from headend.commands import Publisher
from headend.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError
from headend.keystore import (
    DeviceKeyError,
    cap_source_aad,
    kek_for,
    open_device_key,
    seal_device_key,
)
from headend.models import (
    CAP_ENDED,
    CAP_ID_LENGTH,
    CAP_LOGGED,
    CAP_ON_AIR,
    CAP_QUEUED,
    CAP_SOURCE_AUTH,
    CapAlert,
    CapSource,
    MediaItem,
    Receiver,
    User,
    Zone,
)
from headend.services import audit, broadcasts, cap_repeat, cap_resource, ledger, media, sites
from headend.settings import Settings
from protocol.topics import valid_id

log = logging.getLogger(__name__)

SOURCE_KEY_HEADER = "X-Loaxa-Source-Key"
SIGNATURE_HEADER = "X-Loaxa-Signature"
TIMESTAMP_HEADER = "X-Loaxa-Timestamp"
SIGNATURE_PREFIX = "sha256="

# Reasons this module adds to policy.REASON_NAMES: (English, Vietnamese).
NO_RECEIVERS = "no-receivers"
WIRING_REASON_NAMES = {
    NO_RECEIVERS: ("Its villages have no receiver", "Các thôn/xóm trong vùng chưa có cụm loa"),
}


class Unauthorized(ServiceError):
    status = 401


def _unauthorized(detail: str) -> Unauthorized:
    # One answer for every failure, so a caller learns nothing about which part was wrong.
    log.warning("CAP post refused: %s", detail)
    return Unauthorized("cap-unauthorized", "not a known warning source (API key or signature)",
                        "Nguồn cảnh báo không được xác thực")


# -- warning sources -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Poster:
    """Who posted a CAP message: a warning source, or a user (an admin's token)."""

    label: str  # the source's id, or "user:<username>"
    senders: frozenset[str] | None  # the CAP senders it may use; None: any

    @property
    def actor(self) -> str:
        return ("cap:%s" % self.label)[:64]


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def add_source(session: Session, *, source_id: str, name: str, auth: str, senders: list[str],
               actor: User | str | None = None) -> tuple[CapSource, str]:
    """A new warning source; returns it and its secret (the API key or the HMAC secret), which
    is shown this once: only its hash (API key) or its sealed form (HMAC) is kept."""
    if not valid_id(source_id):
        raise Invalid("bad-source-id", "a source id is 1-48 characters of A-Z a-z 0-9 _ -",
                      "Mã nguồn cảnh báo chỉ gồm 1-48 ký tự A-Z a-z 0-9 _ -")
    if auth not in CAP_SOURCE_AUTH:
        raise Invalid("bad-source-auth", "auth must be one of %s" % ", ".join(CAP_SOURCE_AUTH),
                      "Cách xác thực phải là: %s" % ", ".join(CAP_SOURCE_AUTH))
    senders = [sender.strip() for sender in senders if sender.strip()]
    if not senders or any(len(sender) > CAP_ID_LENGTH for sender in senders):
        raise Invalid("bad-source-senders", "a source needs at least one CAP sender it uses",
                      "Nguồn cảnh báo cần ít nhất một địa chỉ gửi (sender)")
    if session.get(CapSource, source_id) is not None:
        raise Conflict("source-exists", "CAP source %r already exists" % source_id,
                       "Nguồn cảnh báo %r đã có" % source_id)
    secret = secrets.token_hex(32)
    source = CapSource(id=source_id, name=sites.check_name(name or source_id), auth=auth,
                       senders=senders)
    if auth == "api-key":
        source.key_sha256 = _key_hash(secret)
    else:
        source.hmac_secret = seal_device_key(kek_for(session), cap_source_aad(source_id), secret)
    session.add(source)
    audit.record(session, actor=actor, action="cap-source.create", target=source_id,
                 detail={"auth": auth, "senders": senders})
    session.commit()
    return source, secret


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Loaxa-Signature a source sends: HMAC-SHA256 with its secret over the timestamp
    header, a dot and the raw body (so a captured post cannot be re-sent with a new time)."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def authenticate_source(session: Session, *, settings: Settings, headers: Mapping[str, str],
                        body: bytes, now: datetime) -> Poster:
    """The source of a post by its API key header, or by its HMAC signature and timestamp
    (within ``settings.cap_signature_window_s`` of now). Raises Unauthorized (401)."""
    key = headers.get(SOURCE_KEY_HEADER)
    if key:
        source = session.scalar(select(CapSource).where(
            CapSource.key_sha256 == _key_hash(key), CapSource.auth == "api-key",
            CapSource.active.is_(True)))
        if source is None:
            raise _unauthorized("unknown API key")
        return Poster(source.id, frozenset(source.senders))
    signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise _unauthorized("neither %s nor %s and %s"
                            % (SOURCE_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER))
    try:
        at = int(timestamp)
    except ValueError:
        raise _unauthorized("timestamp %r is not Unix seconds" % timestamp[:20]) from None
    if abs(now.timestamp() - at) > settings.cap_signature_window_s:
        raise _unauthorized("timestamp %d is more than %d s from now"
                            % (at, settings.cap_signature_window_s))
    kek = kek_for(session)
    for source in session.scalars(select(CapSource).where(
            CapSource.auth == "hmac", CapSource.active.is_(True))):
        try:
            secret = open_device_key(kek, cap_source_aad(source.id), source.hmac_secret or "")
        except DeviceKeyError:  # sealed under another KEK: that source cannot post
            log.error("CAP source %s: its HMAC secret does not open (re-add it)", source.id)
            continue
        if hmac.compare_digest(sign(secret, timestamp, body), signature):
            return Poster(source.id, frozenset(source.senders))
    raise _unauthorized("no source's secret makes this signature")


def user_poster(user: User) -> Poster:
    """An admin posting a CAP message with their own token (tests, a manual feed)."""
    return Poster("user:%s" % user.username, None)


# -- what the database knows -----------------------------------------------------------------

def site_policy(settings: Settings) -> SitePolicy:
    return SitePolicy.from_dict(settings.cap_policy)


def _is_current(row: CapAlert, now: datetime) -> bool:
    return row.state in (CAP_QUEUED, CAP_ON_AIR) and (row.expires is None or row.expires > now)


def _running_lookup(session: Session, sender: str, now: datetime):
    """The running-alert lookup receive_cap takes: by identifier, among ``sender``'s own
    alerts (an agency updates and cancels only its own; policy.py checks that too)."""

    def find(identifier: str) -> RunningAlert | None:
        row = session.scalar(select(CapAlert).where(CapAlert.sender == sender,
                                                    CapAlert.identifier == identifier))
        if row is None or not _is_current(row, now):
            return None
        return RunningAlert(identifier=row.identifier, sender=row.sender, broadcast_id=row.id)

    return find


def _zones_with_receivers(session: Session, zones: tuple[str, ...],
                          exercise: bool = False) -> tuple[str, ...]:
    """The zones holding a receiver (for an exercise: one marked for exercises)."""
    if not zones:
        return ()
    query = select(Receiver.zone_id).where(Receiver.zone_id.in_(zones))
    if exercise:
        query = query.where(_marked_for_exercises())
    have = set(session.scalars(query.group_by(Receiver.zone_id).having(func.count() > 0)))
    return tuple(zone for zone in zones if zone in have)


def _without_receivers(decision: Decision) -> Decision:
    """As Decision.nothing_to_air, for zones that exist but hold no receiver."""
    if decision.action == "replace":
        return replace(decision, outcome="aired", reason=NO_RECEIVERS, action="stop")
    return replace(decision, outcome="logged", reason=NO_RECEIVERS, action=None, targets=())


# -- acting on the decision ------------------------------------------------------------------

def alert_media(session: Session, *, settings: Settings, text: str, title: str,
                actor: User | str) -> MediaItem:
    """The alert tone then ``text`` read by the speech engine, registered as media (renditions
    for every receiver's codec). Raises ServiceError("tts-failed", 503) when it cannot speak."""
    from audio.tones import dress
    from audio.tts import TtsError, synthesize_to_file

    incoming = settings.resolved_media_dir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=incoming))
    try:
        try:
            speech = synthesize_to_file(text, folder / "speech.wav", voice=settings.cap_voice)
        except (TtsError, ValueError) as exc:
            error = ServiceError("tts-failed", "the alert could not be read aloud: %s" % exc,
                                 "Không đọc được bản tin cảnh báo thành tiếng: %s" % exc)
            error.status = 503
            raise error from None
        dressed = dress(speech, folder / "canh-bao.wav", kind="emergency")
        return media.ingest_media(session, settings=settings, src_path=dressed, filename=None,
                                  title=title, actor=actor)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _end(session: Session, *, settings: Settings, publisher: Publisher, target_ids: list[str],
         actor: User | str, ended_by: str, now: datetime) -> None:
    """Stop the stored alerts ``target_ids``: their broadcasts are cancelled (receivers holding
    them get ``stop``, those offline get it when they come back), queued ones just end."""
    for row in session.scalars(select(CapAlert).where(CapAlert.id.in_(target_ids))):
        if row.broadcast_id is not None:
            try:
                broadcasts.cancel_broadcast(session, settings=settings, publisher=publisher,
                                            broadcast_id=row.broadcast_id, actor=actor, now=now)
            except Conflict:  # already over everywhere: nothing to stop
                pass
        row.state, row.ended_by, row.ended_at = CAP_ENDED, ended_by[:64], now
    session.commit()


def _title(row: CapAlert) -> str:
    return (row.headline or "Cảnh báo %s" % row.identifier)[:300]


def _marked_for_exercises():
    """A receiver marked for exercises, or in a zone marked for them."""
    return or_(Receiver.exercise.is_(True),
               Receiver.zone_id.in_(select(Zone.id).where(Zone.exercise.is_(True))))


def _exercise_receivers(session: Session, zones: list[str] | tuple[str, ...]) -> list[str]:
    """The receivers of ``zones`` marked for exercises (themselves or by their zone)."""
    if not zones:
        return []
    return list(session.scalars(select(Receiver.id).where(
        Receiver.zone_id.in_(list(zones)), _marked_for_exercises()).order_by(Receiver.id)))


def _air(session: Session, *, settings: Settings, publisher: Publisher, row: CapAlert,
         actor: User | str, now: datetime) -> None:
    """Make the alert's media (its attached audio when it came with a usable one, else the
    text read aloud), stop what it replaces, then send it: the stop reaches every receiver
    before the replacement's play, so none plays both. An exercise goes to the receivers
    marked for exercises only. Its window ends when its next airing is due (cap_repeat.py)."""
    if row.media_id is not None:
        media_id = row.media_id
    else:
        media_id = alert_media(session, settings=settings, text=row.spoken_text or row.text or "",
                               title=_title(row), actor=actor).id
    if row.targets:
        _end(session, settings=settings, publisher=publisher, target_ids=list(row.targets),
             actor=actor, ended_by="cap:%s" % row.identifier, now=now)
    targets: dict[str, Any] = {"zones": list(row.zones)}
    if row.status == "Exercise":
        targets = {"devices": _exercise_receivers(session, row.zones)}
        log.info("CAP exercise %s airs on the %d receivers marked for exercises", row.identifier,
                 len(targets["devices"]))
    broadcast = broadcasts.send_emergency(
        session, settings=settings, publisher=publisher, media_id=media_id, targets=targets,
        actor=actor, now=now, valid_until=cap_repeat.window_end(
            now, row.expires, site_policy(settings).repeat_interval))
    row.broadcast_id = broadcast.id


def _check_lengths(alert: Alert) -> None:
    for what, value in (("identifier", alert.identifier), ("sender", alert.sender)):
        if len(value) > CAP_ID_LENGTH:
            raise CapError("invalid-cap", "the %s is longer than %d characters"
                           % (what, CAP_ID_LENGTH))


def answer(result: CapResult, *, broadcast_id: str | None = None,
           alert_id: str | None = None) -> dict:
    """The API's answer: ``{"identifier", "outcome", "reason", "zones", "broadcast_id", ...}``
    (docs/cap.md), with the stored alert's id when it was kept."""
    return dict(result.as_dict(), broadcast_id=broadcast_id, alert_id=alert_id)


def _duplicate(alert: Alert, existing: CapAlert) -> tuple[dict, int]:
    return {"identifier": alert.identifier, "outcome": "logged", "reason": "duplicate",
            "action": None, "targets": [], "zones": [], "receiver_flag": None,
            "broadcast_id": existing.broadcast_id, "alert_id": existing.id}, 200


def receive(session: Session, *, settings: Settings, publisher: Publisher, body: bytes,
            poster: Poster, now: datetime | None = None) -> tuple[dict, int]:
    """Handle one posted CAP message; returns (answer, HTTP status). A message that cannot be
    read raises CapError (4xx); a sender the source may not use raises Forbidden (403);
    neither is kept."""
    now = now or datetime.now(UTC)
    alert = parse_cap(body)  # the sender first: the running alerts are looked up by it
    _check_lengths(alert)
    if poster.senders is not None and alert.sender not in poster.senders:
        log.warning("CAP source %s may not send as %r", poster.label, alert.sender[:80])
        raise Forbidden("cap-sender", "this source may not send alerts as %r" % alert.sender,
                        "Nguồn cảnh báo này không được gửi với tên %r" % alert.sender)
    existing = session.scalar(select(CapAlert).where(CapAlert.sender == alert.sender,
                                                     CapAlert.identifier == alert.identifier))
    if existing is not None:
        return _duplicate(alert, existing)
    result = receive_cap(body, zones=sites.cap_zones(session), policy=site_policy(settings),
                         running=_running_lookup(session, alert.sender, now), now=now,
                         has_exercise_receivers=lambda zones: bool(
                             _exercise_receivers(session, zones)))
    decision = result.decision
    if decision.outcome == "refused":
        return answer(result), result.http_status
    zones = result.zones
    if decision.will_air and decision.action != "stop":
        zones = _zones_with_receivers(session, result.zones, exercise=alert.status == "Exercise")
        if not zones:
            decision = _without_receivers(decision)
            result = replace(result, decision=decision, zones=())
    if not decision.will_air:
        state = CAP_LOGGED
    elif decision.action == "stop":
        state = CAP_ENDED
    elif decision.outcome == "queued":
        state = CAP_QUEUED
    else:
        state = CAP_ON_AIR
    info = decision.info
    row = CapAlert(
        id="c%s" % secrets.token_hex(6), identifier=alert.identifier, sender=alert.sender,
        sent=alert.sent, status=alert.status, msg_type=alert.msg_type, outcome=decision.outcome,
        reason=decision.reason, action=decision.action, state=state, zones=list(zones),
        targets=[target.broadcast_id for target in decision.targets],
        headline=info.headline if info is not None else None, text=decision.text or None,
        spoken_text=decision.spoken_text or None, expires=decision.ends_at,
        xml_sha256=hashlib.sha256(body).hexdigest(), source=poster.label[:64], received_at=now)
    # Kept first: a second post of the same message, even at the same moment, meets the
    # unique (sender, identifier) and is a duplicate, never a second emergency.
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return _duplicate(alert, session.scalar(select(CapAlert).where(
            CapAlert.sender == alert.sender, CapAlert.identifier == alert.identifier)))
    actor = poster.actor
    if state in (CAP_ON_AIR, CAP_QUEUED):
        # An attached audio resource is fetched now, while the message is fresh (a queued one
        # may be confirmed hours later); unusable, the text is read aloud instead.
        row.media_id = cap_resource.media_for(session, settings=settings, info=info,
                                              title=_title(row), actor=actor, target=row.id)
        session.commit()
    if state == CAP_ON_AIR:
        try:
            _air(session, settings=settings, publisher=publisher, row=row, actor=actor, now=now)
        except BaseException:
            session.rollback()
            # Not aired: forgotten, so the sender may post it again.
            session.execute(delete(CapAlert).where(CapAlert.id == row.id))
            session.commit()
            raise
    elif state == CAP_ENDED:
        _end(session, settings=settings, publisher=publisher, target_ids=list(row.targets),
             actor=actor, ended_by="cap:%s" % alert.identifier, now=now)
    if decision.will_air:
        ledger.append(session, event="cap.received", actor=actor, broadcast_id=row.broadcast_id,
                      cap_identifier=alert.identifier, at=now,
                      detail={"alert_id": row.id, "sender": alert.sender,
                              "status": alert.status, "msg_type": alert.msg_type,
                              "outcome": decision.outcome, "reason": decision.reason,
                              "action": decision.action, "zones": list(zones),
                              "exercise": alert.status == "Exercise",
                              "resource_media_id": row.media_id,
                              "xml_sha256": row.xml_sha256})
    session.commit()
    return answer(result, broadcast_id=row.broadcast_id, alert_id=row.id), result.http_status


def confirm(session: Session, *, settings: Settings, publisher: Publisher, alert_id: str,
            user: User, now: datetime | None = None) -> CapAlert:
    """An operator's one-click confirmation of a queued alert: it airs now (replacing what it
    updates). Refused when it is not waiting (409) or has expired (409)."""
    now = now or datetime.now(UTC)
    broadcasts.check_may_send(user, "emergency")
    row = get_alert(session, alert_id=alert_id)
    if row.state != CAP_QUEUED:
        raise Conflict("not-queued", "CAP alert %s is not waiting for confirmation (%s)"
                       % (row.id, row.state), "Bản tin cảnh báo này không chờ xác nhận")
    if row.expires is not None and row.expires <= now:
        raise Conflict("expired", "CAP alert %s has expired" % row.id,
                       "Bản tin cảnh báo đã hết hạn")
    # Taken by one confirmation only: two operators clicking at once air it once.
    taken = session.execute(update(CapAlert).where(CapAlert.id == row.id,
                                                   CapAlert.state == CAP_QUEUED)
                            .values(state=CAP_ON_AIR, confirmed_by=user.username[:64],
                                    confirmed_at=now))
    session.commit()
    if taken.rowcount != 1:
        raise Conflict("not-queued", "CAP alert %s was just confirmed or ended" % row.id,
                       "Bản tin cảnh báo vừa được xác nhận hoặc đã kết thúc")
    session.refresh(row)
    try:
        _air(session, settings=settings, publisher=publisher, row=row, actor=user, now=now)
    except BaseException:
        session.rollback()
        session.execute(update(CapAlert).where(CapAlert.id == row.id).values(
            state=CAP_QUEUED, confirmed_by=None, confirmed_at=None))
        session.commit()
        raise
    ledger.append(session, event="cap.confirm", actor=user, broadcast_id=row.broadcast_id,
                  cap_identifier=row.identifier, at=now,
                  detail={"alert_id": row.id, "sender": row.sender, "zones": list(row.zones)})
    audit.record(session, actor=user, action="cap.confirm", target=row.id,
                 detail={"identifier": row.identifier, "broadcast_id": row.broadcast_id})
    session.commit()
    return row


def get_alert(session: Session, *, alert_id: str) -> CapAlert:
    row = session.get(CapAlert, alert_id)
    if row is None:
        raise NotFound("unknown-cap-alert", "unknown CAP alert %r" % alert_id,
                       "Không có bản tin cảnh báo %r" % alert_id)
    return row


def list_alerts(session: Session, *, limit: int = 200) -> list[CapAlert]:
    return list(session.scalars(select(CapAlert).order_by(CapAlert.received_at.desc())
                                .limit(limit)))


def reason_names(reason: str) -> tuple[str, str] | None:
    """(English, Vietnamese) for a stored alert's reason, for the pages."""
    return REASON_NAMES.get(reason) or WIRING_REASON_NAMES.get(reason)


def describe(row: CapAlert, now: datetime | None = None) -> dict[str, Any]:
    """A stored alert as GET /api/v1/cap shows it."""
    now = now or datetime.now(UTC)
    names = reason_names(row.reason)
    return {"id": row.id, "identifier": row.identifier, "sender": row.sender, "sent": row.sent,
            "status": row.status, "msg_type": row.msg_type, "outcome": row.outcome,
            "reason": row.reason,
            "reason_text": {"en": names[0], "vi": names[1]} if names else None,
            "action": row.action, "state": row.state,
            "current": _is_current(row, now), "zones": row.zones, "targets": row.targets,
            "headline": row.headline, "text": row.text, "broadcast_id": row.broadcast_id,
            "expires": row.expires, "source": row.source, "received_at": row.received_at,
            "confirmed_by": row.confirmed_by, "confirmed_at": row.confirmed_at,
            "ended_by": row.ended_by, "ended_at": row.ended_at, "xml_sha256": row.xml_sha256}


def waiting(session: Session, *, now: datetime | None = None) -> list[CapAlert]:
    """Queued alerts an operator may still confirm (not expired), oldest first."""
    now = now or datetime.now(UTC)
    return [row for row in session.scalars(select(CapAlert).where(CapAlert.state == CAP_QUEUED)
                                           .order_by(CapAlert.received_at))
            if _is_current(row, now)]


def for_broadcast(session: Session, *, broadcast_id: str) -> CapAlert | None:
    """The CAP alert that aired as this broadcast, if one did."""
    return session.scalar(select(CapAlert).where(CapAlert.broadcast_id == broadcast_id)
                          .limit(1))
