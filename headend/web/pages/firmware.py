"""Cập nhật phần mềm: the firmware bundles uploaded, their rollouts in waves and where each
receiver is; a technician resumes a paused rollout here (uploading and starting one is the
API's, POST /api/v1/firmware and /api/v1/firmware/{version}/waves)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import RedirectResponse

from headend.api.deps import PublisherDep, SessionDep, SettingsDep
from headend.models import User
from headend.services import firmware
from headend.services.devices import list_devices
from headend.web.csrf import CsrfChecked
from headend.web.guard import PageRoute, PageUser, allowed
from headend.web.rendering import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

DevicesUser = Annotated[User, Depends(allowed("devices"))]


@router.get("/firmware")
def firmware_page(request: Request, session: SessionDep, _user: PageUser):
    names = {d.id: d.name for d in list_devices(session)}
    bundles = []
    for bundle in reversed(firmware.list_bundles(session)):
        plans = firmware.plans(session, version=bundle.version)
        progress = firmware.progress(session, version=bundle.version)
        bundles.append({"b": bundle, "plan": plans[-1] if plans else None,
                        "receivers": progress})
    return render(request, "firmware.html", {"bundles": bundles, "names": names})


@router.post("/firmware/waves/{plan_id}/resume")
def resume_rollout(plan_id: int, session: SessionDep, settings: SettingsDep,
                   publisher: PublisherDep, user: DevicesUser, _: CsrfChecked):
    firmware.resume(session, settings=settings, publisher=publisher, plan_id=plan_id,
                    actor=user)
    return RedirectResponse("/firmware", status.HTTP_303_SEE_OTHER)
