from typing import Annotated

from fastapi import APIRouter, Depends, status

from headend.api.deps import Reader, SessionDep, SettingsDep, require
from headend.api.schemas import ZoneCreate, ZonePublic, ZoneUpdate
from headend.models import User
from headend.services import sites

router = APIRouter(prefix="/zones", tags=["zones"])
ZoneEditor = Annotated[User, Depends(require("zones"))]


@router.get("", response_model=list[ZonePublic])
def list_zones(session: SessionDep, _: Reader):
    return [ZonePublic(id=z.id, name=z.name, receivers=n, online=on, area=z.area)
            for z, n, on in sites.list_zones(session)]


@router.post("", response_model=ZonePublic, status_code=status.HTTP_201_CREATED)
def create_zone(body: ZoneCreate, session: SessionDep, settings: SettingsDep, user: ZoneEditor):
    """A zone (village); its optional ``area`` is what CAP alerts' areas are matched to."""
    zone = sites.create_zone(session, site_id=settings.site_id, zone_id=body.id, name=body.name,
                             area=body.area, actor=user)
    return ZonePublic(id=zone.id, name=zone.name, area=zone.area)


@router.patch("/{zone_id}", response_model=ZonePublic)
def update_zone(zone_id: str, body: ZoneUpdate, session: SessionDep, user: ZoneEditor):
    """Rename a zone or set its area; ``"area": null`` removes the area."""
    changes = {"area": body.area} if "area" in body.model_fields_set else {}
    zone = sites.update_zone(session, zone_id=zone_id, name=body.name, actor=user, **changes)
    return ZonePublic(id=zone.id, name=zone.name, area=zone.area)
