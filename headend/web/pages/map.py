"""Bản đồ: receivers at their coordinates, coloured by state, and the villages.

Leaflet (npm ``leaflet``, its files served from /static: a commune PC has no internet) draws
the map in static/map.js from the JSON this page embeds. Tiles come from
``settings.map_tile_url`` when set; without them the map is a plain background with each
village's outline (a zone's ``area`` polygon, when it has one) or its name placed among its
receivers, and the receivers' dots. The same receivers are listed under the map, so the page
says everything without JavaScript too.
"""

import json
from typing import Any

from fastapi import APIRouter, Request

from headend.api.deps import SessionDep, SettingsDep
from headend.i18n import Translator
from headend.services.devices import list_devices
from headend.services.sites import list_zones
from headend.web.guard import PageRoute, PageUser
from headend.web.present import supply_text
from headend.web.rendering import render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

STATES = ("online", "fault", "offline")


def device_state(t: Translator, device: Any) -> dict[str, str]:
    """online, offline, or fault (online but on battery or with an amplifier fault), with the
    words for it: the map's colour and the receiver page's badge."""
    if not device.online:
        reason = t.maybe("offline", device.offline_reason)
        return {"key": "offline", "label": t("receivers.offline"), "reason": reason}
    supply, ok = supply_text(t, device)
    if not ok:
        return {"key": "fault", "label": t("state.fault"), "reason": supply}
    return {"key": "online", "label": t("receivers.online"), "reason": ""}


def zone_outline(zone: Any) -> list[list[float]] | None:
    """A zone's polygon as [[lat, lon], ...] if it has a usable one (``Zone.area``, the CAP
    work's outlines), else None."""
    area = getattr(zone, "area", None)
    polygon = area.get("polygon") if isinstance(area, dict) else None
    if not isinstance(polygon, list) or len(polygon) < 3:
        return None
    points = []
    for pair in polygon:
        if (not isinstance(pair, list | tuple) or len(pair) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in pair)):
            return None
        points.append([float(pair[0]), float(pair[1])])
    return points


def map_data(t: Translator, devices, zones, *, tiles: str, attribution: str) -> dict:
    """What static/map.js draws: receivers with coordinates, villages, the tile layer."""
    receivers = []
    placed: dict[str, list[tuple[float, float]]] = {}
    for device in devices:
        if device.lat is None or device.lon is None:
            continue
        state = device_state(t, device)
        receivers.append({"id": device.id, "name": device.name, "lat": device.lat,
                          "lon": device.lon, "state": state["key"], "label": state["label"],
                          "reason": state["reason"], "zone": device.zone_name or "",
                          "url": "/receivers/%s" % device.id})
        if device.zone:
            placed.setdefault(device.zone, []).append((device.lat, device.lon))
    villages = []
    for zone, _total, _online in zones:
        outline = zone_outline(zone)
        spots = placed.get(zone.id, [])
        if outline is None and not spots:
            continue
        source = outline or [list(p) for p in spots]
        centre = [sum(p[0] for p in source) / len(source),
                  sum(p[1] for p in source) / len(source)]
        villages.append({"id": zone.id, "name": zone.name, "polygon": outline,
                         "centre": centre})
    return {"tiles": tiles, "attribution": attribution, "receivers": receivers,
            "villages": villages,
            "labels": {"open": t("map.open"), "zone": t("receivers.col.zone")}}


@router.get("/map")
def map_page(request: Request, session: SessionDep, settings: SettingsDep, _user: PageUser):
    t = translator_of(request)
    devices = list_devices(session)
    zones = list_zones(session)
    data = map_data(t, devices, zones, tiles=settings.map_tile_url,
                    attribution=settings.map_tile_attribution)
    rows = [{"d": d, "state": device_state(t, d)} for d in devices]
    counts = {key: sum(1 for r in rows if r["state"]["key"] == key) for key in STATES}
    # No "<" inside the embedded JSON: a name can neither close nor confuse the script element.
    embedded = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    return render(request, "map.html", {
        "rows": rows, "counts": counts, "states": STATES, "map_json": embedded,
        "placed": len(data["receivers"]), "unplaced": [r for r in rows if r["d"].lat is None
                                                       or r["d"].lon is None],
        "tiles": bool(settings.map_tile_url)})
