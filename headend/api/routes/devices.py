from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel

from headend.api.deps import Admin, PublisherDep, Reader, SessionDep, SettingsDep, Technician
from headend.api.schemas import (
    CommandSent,
    DeviceCommand,
    DeviceCreate,
    DeviceDetail,
    DeviceProvisioned,
    DevicePublic,
    DeviceUpdate,
)
from headend.services import claims, devices, provisioning, rotation, telemetry

router = APIRouter(prefix="/devices", tags=["devices"])


@router.get("", response_model=list[DevicePublic])
def list_devices(session: SessionDep, _: Reader, zone: str | None = None,
                 online: bool | None = None):
    """Every receiver with its zone, online state, last report and what it is playing."""
    return devices.list_devices(session, zone_id=zone, online=online)


@router.post("", response_model=DeviceProvisioned, status_code=status.HTTP_201_CREATED)
def provision_device(body: DeviceCreate, session: SessionDep, settings: SettingsDep,
                     user: Technician):
    """Create a receiver. The answer holds its key and broker password: the only time they
    are shown."""
    made = devices.provision_device(session, site_id=settings.site_id, device_id=body.id,
                                    name=body.name, zone_id=body.zone, lat=body.lat,
                                    lon=body.lon, codec=body.codec, actor=user,
                                    settings=settings)
    provisioning.refresh_broker_accounts(session, settings=settings)
    view = devices.get_device(session, device_id=made.receiver.id)
    return DeviceProvisioned(**DevicePublic.model_validate(view).model_dump(),
                             device_key=made.device_key, mqtt_user=made.mqtt_user,
                             mqtt_password=made.mqtt_password)


@router.get("/{device_id}", response_model=DeviceDetail)
def get_device(device_id: str, session: SessionDep, _: Reader):
    return devices.get_device(session, device_id=device_id)


@router.patch("/{device_id}", response_model=DeviceDetail)
def update_device(device_id: str, body: DeviceUpdate, session: SessionDep, user: Technician):
    given = body.model_dump(exclude_unset=True)
    kwargs = {("zone_id" if k == "zone" else k): v for k, v in given.items()}
    return devices.update_device(session, device_id=device_id, actor=user, **kwargs)


@router.post("/{device_id}/commands", response_model=CommandSent,
             status_code=status.HTTP_202_ACCEPTED)
def send_command(device_id: str, body: DeviceCommand, session: SessionDep,
                 settings: SettingsDep, publisher: PublisherDep, user: Reader):
    """identify / volume / reboot / stop, signed for this receiver: identify, volume and
    reboot by a technician or admin (``devices``), stop also by an operator
    (``broadcast``). ``GET`` on the same path says whether the receiver confirmed it."""
    cmd_id = devices.send_device_command(session, settings=settings, publisher=publisher,
                                         device_id=device_id, kind=body.kind, args=body.args,
                                         actor=user)
    return CommandSent(command_id=cmd_id)


class RotationStartedPublic(BaseModel):
    device_id: str
    rotation_id: str
    command_id: str | None
    resent: bool


@router.post("/{device_id}/rotate", response_model=RotationStartedPublic,
             status_code=status.HTTP_202_ACCEPTED)
def rotate_device(device_id: str, session: SessionDep, settings: SettingsDep,
                  publisher: PublisherDep, user: Technician):
    """Rotate the receiver's key and broker password (technician or admin): the new ones go
    to it encrypted under its current key, both stay valid until it is heard under the new
    key, then the old ones are dropped (docs/security.md). Again while one is pending: the
    same offer again (``resent``)."""
    started = rotation.start_rotation(session, settings=settings, publisher=publisher,
                                      device_id=device_id, actor=user)
    return RotationStartedPublic(device_id=started.device_id, rotation_id=started.rotation_id,
                                 command_id=started.command_id, resent=started.resent)


class DeviceClaim(BaseModel):
    code: str  # the claim code on the pole's label (XXXX-XXXX), or the QR's text
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None


@router.post("/{device_id}/claim", response_model=DeviceDetail,
             responses={422: {"description": "wrong claim code"},
                        429: {"description": "too many wrong codes (see Retry-After)"}})
def claim_device(device_id: str, body: DeviceClaim, request: Request, session: SessionDep,
                 user: Technician):
    """Register the receiver found on a pole: its id and the claim code from its label put it
    in ``zone`` at (lat, lon). A wrong code is refused (422 ``wrong-claim-code``) and audited;
    repeated wrong codes back off (429)."""
    from headend.api.routes.auth import client_address

    return claims.claim_device(session, throttle=claims.claim_throttle_of(request.app.state),
                               address=client_address(request), device_id=device_id,
                               code=body.code, zone_id=body.zone, lat=body.lat, lon=body.lon,
                               actor=user)


class SentCommandPublic(BaseModel):
    id: str
    kind: str
    args: dict[str, Any]
    sent_at: datetime
    sent_by: str | None
    state: Literal["waiting", "done", "refused", "no-answer"]
    answered_at: datetime | None  # when the receiver acked it (its own clock, network time)
    reason: str | None  # why it refused


@router.get("/{device_id}/commands", response_model=list[SentCommandPublic])
def list_commands(device_id: str, session: SessionDep, settings: SettingsDep, _: Reader,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20):
    """The latest commands sent to this receiver from the API or its page, newest first, with
    its confirmation: ``done`` (it acked), ``refused`` (with its reason), ``waiting``, or
    ``no-answer`` once the command expired unacknowledged (``LOAXA_COMMAND_TTL_S``)."""
    return devices.recent_commands(session, settings=settings, device_id=device_id,
                                   limit=limit)


class TelemetryPoint(BaseModel):
    t: datetime  # the bucket's start (UTC)
    min: float
    avg: float
    max: float
    n: int  # samples in the bucket


class TelemetryField(BaseModel):
    unit: str
    points: list[TelemetryPoint]


class TelemetrySeries(BaseModel):
    device_id: str
    since: datetime
    until: datetime
    step: int
    fields: dict[str, TelemetryField]


def _utc(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get("/{device_id}/telemetry", response_model=TelemetrySeries)
def device_telemetry(device_id: str, session: SessionDep, _: Reader,
                     field: Annotated[list[str] | None, Query()] = None,
                     since: datetime | None = None, until: datetime | None = None,
                     step: int | None = None):
    """A receiver's telemetry history in buckets of ``step`` seconds over [since, until):
    min / mean / max of each ``field`` (repeat it or separate by commas; default: all) in its
    unit. Defaults: until now, since a day before, ``step`` so that about 288 buckets fill the
    range. Times without a zone are UTC. Finer than an hour only within the raw retention
    (``LOAXA_TELEMETRY_RAW_DAYS``)."""
    devices.get_receiver(session, device_id=device_id)
    fields = telemetry.check_fields(field)
    until_at = _utc(until, datetime.now(UTC))
    since_at = _utc(since, until_at - timedelta(days=1))
    if step is None:
        step = max(60, int((until_at - since_at).total_seconds() // 288))
    found = telemetry.series(session, device_id=device_id, since=since_at, until=until_at,
                             step=step, fields=fields)
    return TelemetrySeries(
        device_id=device_id, since=since_at, until=until_at, step=step,
        fields={name: TelemetryField(unit=telemetry.BY_NAME[name].unit,
                                     points=[TelemetryPoint(**vars(p)) for p in points])
                for name, points in found.items()})

@router.post("/{device_id}/reset-counter", response_model=CommandSent,
             status_code=status.HTTP_202_ACCEPTED)
def reset_counter(device_id: str, session: SessionDep, settings: SettingsDep,
                  publisher: PublisherDep, user: Admin):
    """Bring the receiver's command-counter floor back down to the head-end's counter, with a
    signed ``reset_floor`` for the nonce of its latest birth (good once, this boot only): for a
    receiver that refuses every command as a replay. Admin only; 409 while it is offline or
    has announced no nonce."""
    cmd_id = devices.reset_counter(session, settings=settings, publisher=publisher,
                                   device_id=device_id, actor=user)
    return CommandSent(command_id=cmd_id)
