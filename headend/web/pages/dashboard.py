"""Tổng quan: the home page after login, the fleet at a glance (headend/services/dashboard.py),
its live part re-fetched every few seconds by static/loaxa.js like the receivers list."""

from fastapi import APIRouter, Request

from headend.api.deps import SessionDep, SettingsDep
from headend.api.routes.dashboard import live_sessions
from headend.services.dashboard import overview
from headend.services.devices import RECEIVER_STATES
from headend.web.guard import PageRoute, PageUser, is_fragment
from headend.web.rendering import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

REFRESH_S = 5


@router.get("/")
def dashboard_page(request: Request, session: SessionDep, settings: SettingsDep,
                   _user: PageUser):
    board = overview(session, settings=settings, live_sessions=live_sessions(request))
    context = {"board": board, "states": RECEIVER_STATES, "every": REFRESH_S}
    return render(request, "_dashboard_live.html" if is_fragment(request) else "dashboard.html",
                  context)
