"""The site (commune) and its zones (villages: thôn, xóm, tổ dân phố), with the area (outline
and geocodes) a CAP alert's area is matched against (headend/cap/area.py)."""

import math
from typing import Any

from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session

from headend.cap import area as cap_area
from headend.errors import Conflict, Invalid, NotFound
from headend.models import NAME_LENGTH, Receiver, Site, User, Zone
from headend.services import audit
from protocol.topics import valid_id


def check_name(name: str) -> str:
    """A name an operator typed, stripped; a clear 4xx (not a database error on PostgreSQL)
    when it is too long or holds a NUL byte."""
    name = name.strip()
    if len(name) > NAME_LENGTH or "\x00" in name:
        raise Invalid("bad-name", "a name must be at most %d characters, without NUL"
                      % NAME_LENGTH, "Tên dài tối đa %d ký tự" % NAME_LENGTH)
    return name


def check_coordinates(lat: float | None, lon: float | None) -> None:
    """A pole's position as typed: finite degrees on the globe or nothing, so the map and the
    database never hold 1e308 or NaN (JSON bodies may carry NaN and Infinity)."""
    for value, limit, what, what_vi in ((lat, 90, "lat", "Vĩ độ"), (lon, 180, "lon", "Kinh độ")):
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value) or not -limit <= value <= limit:
            raise Invalid("bad-coordinates", "%s must be a number from -%d to %d"
                          % (what, limit, limit),
                          "%s phải là số từ -%d đến %d" % (what_vi, limit, limit))


def ensure_site(session: Session, *, site_id: str, name: str) -> Site:
    """The site row for this head-end, created on first start."""
    site = session.get(Site, site_id)
    if site is None:
        site = Site(id=site_id, name=name)
        session.add(site)
        session.commit()
    return site


def check_area(zone_id: str, area: Any) -> dict[str, Any] | None:
    """A zone's area as stored: the outline closed, the geocodes trimmed and sorted; None for
    none. Raises Invalid("invalid-zone-area") with what is wrong (headend/cap/area.py)."""
    if area is None:
        return None
    zone = cap_area.Zone.from_area(zone_id, area)
    return {"polygon": None if zone.polygon is None else [list(p) for p in zone.polygon],
            "geocodes": [{"valueName": name, "value": value}
                         for name, value in sorted(zone.geocodes)]}


def cap_zones(session: Session) -> list[cap_area.Zone]:
    """Every zone as the CAP area selection sees it (a zone without an area matches nothing
    but a geocode it does not have: nothing)."""
    return [cap_area.Zone.from_area(zone.id, zone.area)
            for zone in session.scalars(select(Zone).order_by(Zone.id))]


def check_volume_limit(value: Any, field: str) -> int | None:
    """A zone's volume limit as typed: a whole number 0-100, or nothing (no limit)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise Invalid("bad-volume-limit", "%s must be a whole number from 0 to 100, or null"
                      % field, "%s phải là số nguyên từ 0 đến 100, hoặc để trống"
                      % LIMIT_VI.get(field, field))
    return value


LIMIT_VI = {"volume_limit": "Giới hạn âm lượng",
            "early_volume_limit": "Giới hạn âm lượng buổi sáng sớm"}
LIMITS = tuple(LIMIT_VI)


def create_zone(session: Session, *, site_id: str, zone_id: str, name: str,
                area: Any = None, actor: User | str | None = None,
                **limits: int | None) -> Zone:
    """A zone; ``limits`` are its ``volume_limit`` and ``early_volume_limit`` (None: none)."""
    if not valid_id(zone_id):
        raise Invalid("bad-zone-id", "zone id must be 1-48 characters of A-Z a-z 0-9 _ -",
                      "Mã thôn/xóm chỉ gồm 1-48 ký tự A-Z a-z 0-9 _ -")
    if not (name or "").strip():
        raise Invalid("missing-name", "a zone needs a name", "Thôn/xóm cần có tên")
    if session.get(Zone, zone_id) is not None:
        raise Conflict("zone-exists", "zone %r already exists" % zone_id,
                       "Thôn/xóm %r đã tồn tại" % zone_id)
    area = check_area(zone_id, area)
    checked = {field: check_volume_limit(limits.get(field), field) for field in LIMITS}
    ensure_site(session, site_id=site_id, name=site_id)
    zone = Zone(id=zone_id, site_id=site_id, name=check_name(name), area=area, **checked)
    session.add(zone)
    audit.record(session, actor=actor, action="zone.create", target=zone_id,
                 detail={"name": name, "area": area is not None, **checked})
    session.commit()
    return zone


_UNCHANGED: Any = object()


def update_zone(session: Session, *, zone_id: str, name: str | None = None,
                area: Any = _UNCHANGED, actor: User | str | None = None,
                exercise: Any = None, **limits: int | None) -> Zone:
    """Rename a zone and/or set its area (``area=None`` removes it), whether all its
    receivers take CAP exercises (``exercise``; None: unchanged), and its volume limits
    (``volume_limit``, ``early_volume_limit``; None: none). The receivers get new limits
    with their window, which a change sends at the scheduler's next pass
    (programme_windows)."""
    zone = session.get(Zone, zone_id)
    if zone is None:
        raise NotFound("unknown-zone", "unknown zone %r" % zone_id,
                       "Không có thôn/xóm %r" % zone_id)
    changed: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise Invalid("missing-name", "a zone needs a name", "Thôn/xóm cần có tên")
        zone.name = changed["name"] = check_name(name)
    if area is not _UNCHANGED:
        zone.area = check_area(zone_id, area)
        changed["area"] = zone.area is not None
    for field, value in limits.items():
        if field not in LIMITS:
            raise TypeError("unknown zone limit %r" % field)
        setattr(zone, field, check_volume_limit(value, field))
        changed[field] = value
    if exercise is not None:
        if not isinstance(exercise, bool):
            raise Invalid("bad-field", "exercise is true or false",
                          "Đánh dấu diễn tập phải là true hoặc false")
        zone.exercise = changed["exercise"] = exercise
    audit.record(session, actor=actor, action="zone.update", target=zone_id, detail=changed)
    session.commit()
    return zone


def list_zones(session: Session) -> list[tuple[Zone, int, int]]:
    """Every zone with its receiver count and how many of them are online."""
    counts = {zone_id: (total, online or 0) for zone_id, total, online in session.execute(
        select(Receiver.zone_id, func.count(), func.sum(func.cast(Receiver.online, Integer)))
        .group_by(Receiver.zone_id))}
    zones = session.scalars(select(Zone).order_by(Zone.id))
    return [(zone, *counts.get(zone.id, (0, 0))) for zone in zones]
