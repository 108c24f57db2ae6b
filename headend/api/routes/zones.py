from typing import Annotated

from fastapi import APIRouter, Depends, status

from headend.api.deps import Reader, SessionDep, SettingsDep, require
from headend.api.schemas import ZoneCreate, ZonePublic, ZoneUpdate
from headend.models import User, Zone
from headend.services import sites

router = APIRouter(prefix="/zones", tags=["zones"])
ZoneEditor = Annotated[User, Depends(require("zones"))]


def _public(zone: Zone, receivers: int = 0, online: int = 0) -> ZonePublic:
    return ZonePublic(id=zone.id, name=zone.name, receivers=receivers, online=online,
                      area=zone.area, volume_limit=zone.volume_limit,
                      early_volume_limit=zone.early_volume_limit,
                      exercise=bool(zone.exercise))


@router.get("", response_model=list[ZonePublic])
def list_zones(session: SessionDep, _: Reader):
    return [_public(z, n, on) for z, n, on in sites.list_zones(session)]


@router.post("", response_model=ZonePublic, status_code=status.HTTP_201_CREATED)
def create_zone(body: ZoneCreate, session: SessionDep, settings: SettingsDep, user: ZoneEditor):
    """A zone (village); its optional ``area`` is what CAP alerts' areas are matched to, its
    volume limits what its receivers may play (all day, and in the early-morning hours)."""
    zone = sites.create_zone(session, site_id=settings.site_id, zone_id=body.id, name=body.name,
                             area=body.area, actor=user, volume_limit=body.volume_limit,
                             early_volume_limit=body.early_volume_limit)
    return _public(zone)


@router.patch("/{zone_id}", response_model=ZonePublic)
def update_zone(zone_id: str, body: ZoneUpdate, session: SessionDep, user: ZoneEditor):
    """Rename a zone, set its area (``"area": null`` removes it) or its volume limits (null:
    none; absent: unchanged)."""
    changes = {field: getattr(body, field) for field in ("area",) + sites.LIMITS
               if field in body.model_fields_set}
    zone = sites.update_zone(session, zone_id=zone_id, name=body.name, actor=user,
                             exercise=body.exercise, **changes)
    return _public(zone)
