"""Cụm loa: every receiver with its state, refreshed in place by static/loaxa.js."""

from fastapi import APIRouter, Request

from headend.api.deps import SessionDep
from headend.services.devices import list_devices
from headend.services.sites import list_zones
from headend.web.guard import PageRoute, PageUser, is_fragment
from headend.web.present import signal_text, supply_text
from headend.web.rendering import render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API


@router.get("/receivers")
def receivers_page(request: Request, session: SessionDep, _user: PageUser,
                   zone: str | None = None):
    t = translator_of(request)
    devices = list_devices(session, zone_id=zone or None)
    rows = []
    for device in devices:
        supply, supply_ok = supply_text(t, device)
        rows.append({"device": device, "signal": signal_text(t, device), "supply": supply,
                     "supply_ok": supply_ok})
    context = {"rows": rows, "zones": list_zones(session), "zone": zone or "",
               "online": sum(1 for d in devices if d.online), "total": len(devices),
               "playing": sum(1 for d in devices if d.now_playing)}
    return render(request, "_receivers_live.html" if is_fragment(request) else "receivers.html",
                  context)
