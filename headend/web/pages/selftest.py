"""Kiểm tra định kỳ: the latest periodic test, the receivers that failed it or did not answer
first, and a button to run it now (technician, admin)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import RedirectResponse

from headend.api.deps import PublisherDep, SessionDep, SettingsDep
from headend.errors import NotFound
from headend.models import User
from headend.services import selftests
from headend.web.csrf import CsrfChecked
from headend.web.forms import zone_names
from headend.web.guard import PageRoute, PageUser, allowed
from headend.web.rendering import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API
Technician = Annotated[User, Depends(allowed("devices"))]


@router.get("/selftest")
def selftest_page(request: Request, session: SessionDep, settings: SettingsDep,
                  _user: PageUser):
    try:
        run = selftests.latest_run(session, settings=settings)
    except NotFound:
        run = None
    rows = run["receivers"] if run else []
    return render(request, "selftest.html", {
        "run": run, "next_run": selftests.next_slot(settings), "zone_names": zone_names(session),
        "failed": [r for r in rows if r["state"] in ("failed", "no-answer")],
        "passed": [r for r in rows if r["state"] == "passed"],
        "waiting": [r for r in rows if r["state"] == "waiting"]})


@router.post("/selftest")
def selftest_run(session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
                 user: Technician, _: CsrfChecked):
    selftests.start_run(session, settings=settings, publisher=publisher, actor=user)
    return RedirectResponse("/selftest", status.HTTP_303_SEE_OTHER)
