"""Firmware bundles and over-the-air updates (headend/services/firmware.py)."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field

from headend.api.deps import PublisherDep, Reader, SessionDep, SettingsDep, Technician
from headend.errors import Invalid
from headend.services import firmware

router = APIRouter(prefix="/firmware", tags=["firmware"])

MAX_BUNDLE_MB = 16  # a bundle is a few hundred KB; an ESP32's flash holds 4-16 MB


class BundlePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: str
    manifest_sha256: str
    manifest_size: int
    total_size: int
    files: int
    source_commit: str | None
    uploaded_by: str | None
    uploaded_at: datetime


class RolloutRequest(BaseModel):
    devices: list[str] = Field(min_length=1, max_length=5000)


class ReceiverProgress(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    device_id: str
    state: str
    reason: str | None
    firmware: str | None
    command_id: str
    sent_at: datetime


@router.get("", response_model=list[BundlePublic])
def list_bundles(session: SessionDep, _: Reader):
    """Every uploaded bundle, oldest first."""
    return firmware.list_bundles(session)


@router.post("", response_model=BundlePublic, status_code=status.HTTP_201_CREATED)
def upload_bundle(session: SessionDep, settings: SettingsDep, user: Technician,
                  file: Annotated[UploadFile, File(description="loaxa-firmware-<v>.tar")]):
    """Upload the tar of ``loaxa device bundle``: kept only if every file matches its
    manifest."""
    data = file.file.read(MAX_BUNDLE_MB * 1024 * 1024 + 1)
    if len(data) > MAX_BUNDLE_MB * 1024 * 1024:
        raise Invalid("too-large", "a bundle is at most %d MB" % MAX_BUNDLE_MB,
                      "Gói phần mềm tối đa %d MB" % MAX_BUNDLE_MB)
    return firmware.store_bundle(session, settings=settings, data=data, actor=user)


@router.post("/{version}/rollout", response_model=list[ReceiverProgress],
             status_code=status.HTTP_202_ACCEPTED)
def rollout(version: str, body: RolloutRequest, session: SessionDep, settings: SettingsDep,
            publisher: PublisherDep, user: Technician):
    """Send the signed ``update`` for this version to the receivers given."""
    firmware.rollout(session, settings=settings, publisher=publisher, version=version,
                     device_ids=body.devices, actor=user)
    return firmware.progress(session, version=version)


@router.get("/{version}/rollout", response_model=list[ReceiverProgress])
def rollout_progress(version: str, session: SessionDep, _: Reader):
    """Where each receiver told to update to this version is: sent, accepted, refused,
    staged, failed, trial, updated or rolled-back (with the reason it gave)."""
    return firmware.progress(session, version=version)


class WavesRequest(BaseModel):
    """Either the waves, or a canary (none: the first receiver of the first village) from which
    the default waves follow: the canary, the rest of its village, the rest of the commune."""

    waves: list[list[str]] | None = Field(default=None, min_length=1, max_length=20)
    canary: str | None = None


class WavePlanPublic(BaseModel):
    id: int
    version: str
    waves: list[list[str]]
    wave: int  # the wave under way, counted from 0
    state: str  # running, paused, done
    reason: str | None
    receivers: list[ReceiverProgress]


def plan_public(session, plan) -> WavePlanPublic:
    members = {d for wave in plan.waves for d in wave}
    return WavePlanPublic(id=plan.id, version=plan.version, waves=plan.waves, wave=plan.wave,
                          state=plan.state, reason=plan.reason,
                          receivers=[ReceiverProgress.model_validate(p)
                                     for p in firmware.progress(session, version=plan.version)
                                     if p.device_id in members])


@router.post("/{version}/waves", response_model=WavePlanPublic,
             status_code=status.HTTP_202_ACCEPTED)
def start_waves(version: str, body: WavesRequest, session: SessionDep, settings: SettingsDep,
                publisher: PublisherDep, user: Technician):
    """Roll out in waves: the first now, each next one when every receiver of the last is
    updated; the first refusal, failure or rollback pauses it."""
    waves = body.waves or firmware.default_waves(session, canary=body.canary)
    plan = firmware.start_waves(session, settings=settings, publisher=publisher,
                                version=version, waves=waves, actor=user)
    return plan_public(session, plan)


@router.get("/{version}/waves", response_model=list[WavePlanPublic])
def list_waves(version: str, session: SessionDep, _: Reader):
    return [plan_public(session, p) for p in firmware.plans(session, version=version)]


@router.post("/waves/{plan_id}/resume", response_model=WavePlanPublic)
def resume_waves(plan_id: int, session: SessionDep, settings: SettingsDep,
                 publisher: PublisherDep, user: Technician):
    """Go on with the next wave of a paused rollout."""
    plan = firmware.resume(session, settings=settings, publisher=publisher, plan_id=plan_id,
                           actor=user)
    return plan_public(session, plan)
