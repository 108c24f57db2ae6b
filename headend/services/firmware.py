"""Firmware bundles on the head-end, and updates rolled out to receivers.

``store_bundle`` takes the tar ``loaxa device bundle`` writes (tools/device_bundle.py:
``manifest.json`` and ``files/...``), checks it whole before keeping anything (the manifest's
own hash, then every file's size and SHA-256 against it, no file it does not list, paths that
stay inside the bundle) and keeps it under ``{data_dir}/firmware/{version}/``, from where
headend/media_http.py serves it to receivers with HTTP Range. ``rollout`` signs an ``update``
for each receiver given (headend/commands.py) naming the bundle by the SHA-256 of its
manifest.json bytes; ``progress`` reads each receiver's state from what it reported since:
its ack, its ``update`` events, and its births (``fw`` and the ``ota`` outcome, kept on the
receiver by the ingest).

Waves (``start_waves``): one canary receiver, then the rest of its village, then the rest of
the commune (``default_waves``), or waves given. ``advance`` (the MQTT service's sweep calls it)
sends the next wave once every receiver of the one under way reports the version updated, and
pauses the plan at the first receiver that refused, failed or rolled back, with why; an update
that found its receiver offline is sent again once it is back, one refused because something
played after ``BUSY_RETRY_S``; ``resume`` goes on from there with the next wave.
"""

import hashlib
import io
import json
import logging
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from firmware import ota
from headend.commands import Command, Publisher, prepare
from headend.errors import Conflict, Invalid, NotFound
from headend.models import (
    DeviceEvent,
    FirmwareBundle,
    FirmwareRollout,
    FirmwareWavePlan,
    Receiver,
    User,
)
from headend.planning import new_command_id
from headend.services import audit
from headend.services.devices import get_receiver
from headend.settings import Settings
from protocol import messages
from tools.device_bundle import FILES, FORMAT, MANIFEST, manifest_hash

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 65536  # the ``update`` command's ``msize`` limit


def firmware_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "firmware"


def bundle_url(settings: Settings, version: str) -> str:
    return "%s/firmware/%s" % (settings.public_base_url.rstrip("/"), version)


def _bad(message: str, message_vi: str) -> Invalid:
    return Invalid("bad-bundle", "not a firmware bundle: " + message,
                   "Không phải gói phần mềm hợp lệ: " + message_vi)


def read_bundle_tar(data: bytes) -> tuple[bytes, dict[str, Any], dict[str, bytes]]:
    """(manifest.json bytes, manifest, {board path: bytes}) of a bundle tar, every file
    checked against the manifest; Invalid("bad-bundle") with the reason otherwise."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError):
        raise _bad("the upload is not a tar archive", "tệp tải lên không phải tệp tar") from None
    blobs: dict[str, bytes] = {}
    for member in members:
        if member.isdir():
            continue
        if not member.isfile():
            raise _bad("%s is not a plain file" % member.name,
                       "%s không phải tệp thường" % member.name)
        extracted = tar.extractfile(member)
        blobs[member.name] = extracted.read() if extracted is not None else b""
    raw = blobs.pop(MANIFEST, None)
    if raw is None or len(raw) > MAX_MANIFEST_BYTES:
        raise _bad("no %s (or larger than 64 KB)" % MANIFEST,
                   "thiếu %s (hoặc lớn hơn 64 KB)" % MANIFEST)
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise _bad("%s is not JSON" % MANIFEST, "%s không phải JSON" % MANIFEST) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or manifest_hash(manifest) != manifest.get("manifest_sha256"):
        raise _bad("%s is damaged or of another format" % MANIFEST,
                   "%s bị hỏng hoặc khác định dạng" % MANIFEST)
    version = manifest.get("version")
    if not ota.valid_version(version):
        raise _bad("version %r: letters, digits and . _ + - only" % (version,),
                   "phiên bản %r không hợp lệ" % (version,))
    try:
        files = ota.parse_manifest(manifest, version)
    except ota.OtaError as exc:
        raise _bad(str(exc), str(exc)) from None
    contents: dict[str, bytes] = {}
    for path, size, sha in files:
        blob = blobs.pop(FILES + path, None)
        if blob is None:
            raise _bad("%s is in the manifest, not in the archive" % path,
                       "%s có trong danh sách nhưng không có trong gói" % path)
        if len(blob) != size or hashlib.sha256(blob).hexdigest() != sha:
            raise _bad("%s does not match its manifest hash" % path,
                       "%s không khớp mã băm trong danh sách" % path)
        contents[path] = blob
    if blobs:
        extra = sorted(blobs)[0]
        raise _bad("%s is not in the manifest" % extra, "%s không có trong danh sách" % extra)
    return raw, manifest, contents


def store_bundle(session: Session, *, settings: Settings, data: bytes,
                 actor: User | str | None = None) -> FirmwareBundle:
    """Keep an uploaded bundle (the same one again is no change); Conflict for a version
    already stored with other contents."""
    raw, manifest, contents = read_bundle_tar(data)
    version = manifest["version"]
    sha = hashlib.sha256(raw).hexdigest()
    existing = session.get(FirmwareBundle, version)
    if existing is not None:
        if existing.manifest_sha256 == sha:
            return existing
        raise Conflict("bundle-exists",
                       "firmware %s is already stored with other contents: give the new build "
                       "another version" % version,
                       "Phiên bản phần mềm %s đã có với nội dung khác: hãy đặt phiên bản mới"
                       % version)
    root = firmware_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        (staging / MANIFEST).write_bytes(raw)
        for path, blob in contents.items():
            target = staging / FILES.lstrip("/") / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
        final = root / version
        if final.exists():  # files left by an upload whose row never committed
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    commit = manifest.get("source_commit")
    bundle = FirmwareBundle(version=version, manifest_sha256=sha, manifest_size=len(raw),
                            total_size=sum(len(b) for b in contents.values()),
                            files=len(contents),
                            source_commit=commit[:64] if isinstance(commit, str) else None,
                            uploaded_by=actor.username if isinstance(actor, User) else actor)
    session.add(bundle)
    audit.record(session, actor=actor, action="firmware.upload", target=version,
                 detail={"manifest_sha256": sha, "files": len(contents)})
    session.commit()
    return bundle


def list_bundles(session: Session) -> list[FirmwareBundle]:
    return list(session.scalars(select(FirmwareBundle).order_by(FirmwareBundle.uploaded_at)))


def get_bundle(session: Session, *, version: str) -> FirmwareBundle:
    bundle = session.get(FirmwareBundle, version) if ota.valid_version(version) else None
    if bundle is None:
        raise NotFound("unknown-firmware", "no firmware %r uploaded" % version,
                       "Chưa tải lên phần mềm phiên bản %r" % version)
    return bundle


def update_args(settings: Settings, bundle: FirmwareBundle) -> dict[str, Any]:
    """The ``update`` command's arguments for ``bundle`` (docs/protocol.md)."""
    return {"ver": bundle.version, "man": bundle.manifest_sha256, "msize": bundle.manifest_size,
            "url": bundle_url(settings, bundle.version), "total": bundle.total_size}


def rollout(session: Session, *, settings: Settings, publisher: Publisher, version: str,
            device_ids: list[str], actor: User | str | None = None) -> list[FirmwareRollout]:
    """Sign and send the ``update`` to each receiver of ``device_ids``."""
    bundle = get_bundle(session, version=version)
    if not device_ids:
        raise Invalid("no-devices", "name the receivers to update",
                      "Hãy chọn các cụm loa cần cập nhật")
    receivers = [get_receiver(session, device_id=d) for d in dict.fromkeys(device_ids)]
    args = update_args(settings, bundle)
    messages.check_args(messages.UPDATE, args)
    commands = [Command(r.id, messages.UPDATE, dict(args), new_command_id("upd"))
                for r in receivers]
    outgoing = prepare(session, site_id=settings.site_id, commands=commands,
                       ttl_s=settings.command_ttl_s)
    by = actor.username if isinstance(actor, User) else actor
    rows = [FirmwareRollout(version=version, device_id=r.id, command_id=c.cmd_id,
                            boot_at_send=r.session_boot, sent_by=by)
            for r, c in zip(receivers, commands, strict=True)]
    session.add_all(rows)
    audit.record(session, actor=actor, action="firmware.rollout", target=version,
                 detail={"devices": [r.id for r in receivers]})
    session.commit()
    publisher.publish_many(outgoing)
    return rows


@dataclass
class Progress:
    device_id: str
    state: str   # sent, accepted, refused, staged, failed, trial, updated, rolled-back
    reason: str | None
    firmware: str | None
    command_id: str
    sent_at: datetime


def _state(row: FirmwareRollout, receiver: Receiver,
           events: list[DeviceEvent]) -> tuple[str, str | None]:
    outcome = receiver.ota or {}
    if outcome.get("ota_ver") == row.version and outcome.get("ota") == ota.ROLLED_BACK:
        return "rolled-back", outcome.get("ota_why")
    if receiver.firmware == row.version:
        return ("trial" if outcome.get("ota") == ota.TRIAL else "updated"), None
    state, reason = "sent", None
    for event in events:
        body = event.body
        if event.kind == messages.EV_ACK and body.get("cmd") == row.command_id:
            state, reason = ("accepted", None) if body.get("ok") else ("refused",
                                                                        body.get("reason"))
        elif event.kind == messages.EV_UPDATE and body.get("ver") == row.version:
            state, reason = ("staged", None) if body.get("ok") else ("failed",
                                                                      body.get("reason"))
    return state, reason


def progress(session: Session, *, version: str) -> list[Progress]:
    """Each receiver of the version's latest rollout to it, and where it is."""
    get_bundle(session, version=version)
    latest: dict[str, FirmwareRollout] = {}
    for row in session.scalars(select(FirmwareRollout).where(FirmwareRollout.version == version)
                               .order_by(FirmwareRollout.id)):
        latest[row.device_id] = row
    out = []
    for device_id, row in sorted(latest.items()):
        receiver = session.get(Receiver, device_id)
        if receiver is None:
            continue
        events = list(session.scalars(
            select(DeviceEvent).where(DeviceEvent.device_id == device_id,
                                      DeviceEvent.kind.in_((messages.EV_ACK, messages.EV_UPDATE)),
                                      DeviceEvent.received_at >= row.sent_at)
            .order_by(DeviceEvent.t, DeviceEvent.seq)))
        state, reason = _state(row, receiver, events)
        out.append(Progress(device_id, state, reason, receiver.firmware, row.command_id,
                            row.sent_at))
    return out


# -- waves ---------------------------------------------------------------------------------

PLAN_RUNNING = "running"
PLAN_PAUSED = "paused"
PLAN_DONE = "done"
FAILED_STATES = ("refused", "failed", "rolled-back")
DONE_STATES = ("updated",)
BUSY_RETRY_S = 120  # a receiver that refused because it was playing is asked again after


def _busy(p: "Progress") -> bool:
    """Refused because something played: not a failure, the update is sent again later."""
    return p.state == "refused" and p.reason == "busy"


def default_waves(session: Session, *, canary: str | None = None) -> list[list[str]]:
    """One canary (``canary``, or the first receiver of the first village), then the rest of
    its village, then every other receiver of the commune; empty waves left out."""
    receivers = list(session.scalars(select(Receiver).order_by(Receiver.zone_id, Receiver.id)))
    if not receivers:
        raise Invalid("no-devices", "no receivers to update", "Chưa có cụm loa nào để cập nhật")
    first = get_receiver(session, device_id=canary) if canary else receivers[0]
    village = [r.id for r in receivers if r.zone_id == first.zone_id and r.id != first.id]
    rest = [r.id for r in receivers if r.zone_id != first.zone_id]
    return [w for w in ([first.id], village, rest) if w]


def start_waves(session: Session, *, settings: Settings, publisher: Publisher, version: str,
                waves: list[list[str]], actor: User | str | None = None) -> FirmwareWavePlan:
    """Begin a rollout in ``waves``: the first goes now."""
    get_bundle(session, version=version)
    waves = [list(dict.fromkeys(w)) for w in waves if w]
    seen: set[str] = set()
    for wave in waves:
        for device_id in wave:
            get_receiver(session, device_id=device_id)
            if device_id in seen:
                raise Invalid("bad-waves", "receiver %r is in two waves" % device_id,
                              "Cụm loa %r nằm trong hai đợt" % device_id)
            seen.add(device_id)
    if not waves:
        raise Invalid("no-devices", "name the receivers to update",
                      "Hãy chọn các cụm loa cần cập nhật")
    running = session.scalars(select(FirmwareWavePlan).where(
        FirmwareWavePlan.state == PLAN_RUNNING)).first()
    if running is not None:
        raise Conflict("rollout-running",
                       "the rollout of %s is still running: wait for it or let it pause"
                       % running.version,
                       "Đợt cập nhật %s vẫn đang chạy: hãy chờ nó xong hoặc tạm dừng"
                       % running.version)
    plan = FirmwareWavePlan(version=version, waves=waves, wave=0, state=PLAN_RUNNING,
                            created_by=actor.username if isinstance(actor, User) else actor)
    session.add(plan)
    session.flush()
    rollout(session, settings=settings, publisher=publisher, version=version,
            device_ids=waves[0], actor=actor)  # commits
    return plan


def _step(session: Session, plan: FirmwareWavePlan, *, settings: Settings,
          publisher: Publisher) -> None:
    wave = set(plan.waves[plan.wave])
    states = [p for p in progress(session, version=plan.version) if p.device_id in wave]
    for p in states:
        if p.state in FAILED_STATES and not _busy(p):
            plan.state = PLAN_PAUSED
            plan.reason = ("%s: %s%s" % (p.device_id, p.state,
                                         " (%s)" % p.reason if p.reason else ""))[:200]
            session.commit()
            log.warning("firmware %s rollout paused at wave %d: %s", plan.version,
                        plan.wave + 1, plan.reason)
            return
    # A receiver that was offline when its update went out never got it (the command expired
    # after ``command_ttl_s``): sent again once it is online, so the wave does not wait forever.
    now = datetime.now(UTC)
    again = []
    for p in states:
        receiver = session.get(Receiver, p.device_id)
        sent_at = p.sent_at if p.sent_at.tzinfo else p.sent_at.replace(tzinfo=UTC)
        waited = (now - sent_at).total_seconds()
        if receiver is None or not receiver.online:
            continue
        if (p.state == "sent" and waited > settings.command_ttl_s) or (
                _busy(p) and waited > BUSY_RETRY_S):
            again.append(p.device_id)
    if again:
        rollout(session, settings=settings, publisher=publisher, version=plan.version,
                device_ids=again, actor="rollout")  # commits
        return
    if len(states) < len(wave) or any(p.state not in DONE_STATES for p in states):
        return
    plan.wave += 1
    if plan.wave >= len(plan.waves):
        plan.state = PLAN_DONE
        session.commit()
        return
    rollout(session, settings=settings, publisher=publisher, version=plan.version,
            device_ids=plan.waves[plan.wave], actor="rollout")  # commits


def advance(session: Session, *, settings: Settings, publisher: Publisher) -> None:
    """Move every running plan on (the MQTT service's sweep calls this)."""
    for plan in list(session.scalars(select(FirmwareWavePlan)
                                     .where(FirmwareWavePlan.state == PLAN_RUNNING))):
        _step(session, plan, settings=settings, publisher=publisher)


def get_plan(session: Session, *, plan_id: int) -> FirmwareWavePlan:
    plan = session.get(FirmwareWavePlan, plan_id)
    if plan is None:
        raise NotFound("unknown-rollout", "no rollout %r" % plan_id,
                       "Không có đợt cập nhật %r" % plan_id)
    return plan


def resume(session: Session, *, settings: Settings, publisher: Publisher, plan_id: int,
           actor: User | str | None = None) -> FirmwareWavePlan:
    """A paused plan goes on with its next wave (the one that failed stays as it is)."""
    plan = get_plan(session, plan_id=plan_id)
    if plan.state != PLAN_PAUSED:
        raise Conflict("not-paused", "rollout %d is %s, not paused" % (plan.id, plan.state),
                       "Đợt cập nhật %d không ở trạng thái tạm dừng" % plan.id)
    audit.record(session, actor=actor, action="firmware.resume", target=plan.version,
                 detail={"plan": plan.id, "after_wave": plan.wave + 1, "reason": plan.reason})
    plan.wave += 1
    plan.reason = None
    if plan.wave >= len(plan.waves):
        plan.state = PLAN_DONE
        session.commit()
        return plan
    plan.state = PLAN_RUNNING
    rollout(session, settings=settings, publisher=publisher, version=plan.version,
            device_ids=plan.waves[plan.wave], actor=actor)
    return plan


def plans(session: Session, *, version: str) -> list[FirmwareWavePlan]:
    get_bundle(session, version=version)
    return list(session.scalars(select(FirmwareWavePlan)
                                .where(FirmwareWavePlan.version == version)
                                .order_by(FirmwareWavePlan.id)))
