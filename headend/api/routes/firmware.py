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
