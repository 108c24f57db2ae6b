"""Cảnh báo: what is wrong with the receivers now, and what was (headend/services/alerts.py)."""

from fastapi import APIRouter, Request

from headend.api.deps import SessionDep
from headend.services import alerts
from headend.services.devices import list_devices
from headend.web.guard import PageRoute, PageUser
from headend.web.rendering import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

RECENT = 100


@router.get("/alerts")
def alerts_page(request: Request, session: SessionDep, _user: PageUser):
    devices = {d.id: d for d in list_devices(session)}
    now_open = alerts.open_alerts(session)
    over = [a for a in alerts.recent_alerts(session, RECENT) if a.cleared_at is not None]
    return render(request, "alerts.html", {
        "open": [{"a": a, "device": devices.get(a.device_id)} for a in now_open],
        "over": [{"a": a, "device": devices.get(a.device_id)} for a in over],
        "title": alerts.title})
