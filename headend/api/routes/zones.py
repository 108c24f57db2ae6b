from typing import Annotated

from fastapi import APIRouter, Depends, status

from headend.api.deps import Reader, SessionDep, SettingsDep, require
from headend.api.schemas import ZoneCreate, ZonePublic
from headend.models import User
from headend.services import sites

router = APIRouter(prefix="/zones", tags=["zones"])


@router.get("", response_model=list[ZonePublic])
def list_zones(session: SessionDep, _: Reader):
    return [ZonePublic(id=z.id, name=z.name, receivers=n, online=on)
            for z, n, on in sites.list_zones(session)]


@router.post("", response_model=ZonePublic, status_code=status.HTTP_201_CREATED)
def create_zone(body: ZoneCreate, session: SessionDep, settings: SettingsDep,
                user: Annotated[User, Depends(require("zones"))]):
    zone = sites.create_zone(session, site_id=settings.site_id, zone_id=body.id, name=body.name,
                             actor=user)
    return ZonePublic(id=zone.id, name=zone.name)
