"""From a CAP ``area`` (polygons, circles, geocodes) to the site's zones (villages) it touches.

Coordinates are WGS 84 latitude, longitude in degrees, in that order, as CAP writes them
("21.0,105.8 21.1,105.9 ..."); shapely holds them as x = longitude, y = latitude.

- A CAP polygon selects a zone whose outline it intersects, borders included: warning the
  village next door is the cheaper mistake than missing one. The test is planar in degrees,
  which is how CAP polygons are drawn (CAP does not say its edges are geodesics).
- A CAP circle ("lat,lon radius_km") selects a zone that has a point within radius_km of the
  centre. The zone is projected to an azimuthal equidistant plane centred on the circle's
  centre (spherical Earth, mean radius 6371.0088 km), where "within r of the centre" is exactly
  a disc of radius r, after its edges are cut into pieces of at most 0.005 degrees (about
  550 m) so that they stay straight in that plane. Accuracy: the sphere against the WGS 84
  ellipsoid, within 0.5 % of the radius (50 m on a 10 km circle); edge straightening adds
  under a metre.
- A CAP geocode selects a zone that carries the same (valueName, value) pair, exactly.

No CAP polygon or circle crosses the antimeridian here (Vietnam is far from it); one that
would is read as drawn, in plain longitudes.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Point, Polygon

from headend.cap.errors import CapError
from headend.errors import Invalid

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
_SEGMENT_DEGREES = 0.005
_MIN_CAP_POLYGON_POINTS = 4  # CAP 1.2: at least four pairs, the first repeated as the last

LatLon = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Circle:
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True, slots=True)
class Zone:
    """A zone as the selection sees it: its id, its outline (closed, (lat, lon) points) or
    None, and the (valueName, value) geocodes it answers to."""

    zone_id: str
    polygon: tuple[LatLon, ...] | None = None
    geocodes: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_area(cls, zone_id: str, area: dict | None) -> "Zone":
        """A zone from the API's shape: ``{"polygon": [[lat, lon], ...] or None,
        "geocodes": [{"valueName": ..., "value": ...} or [valueName, value], ...]}``.
        Raises Invalid("invalid-zone-area") on a bad outline or geocode."""
        area = area or {}
        if not isinstance(area, dict):
            raise _zone_error("the area must be an object with a polygon and geocodes")
        polygon = area.get("polygon")
        return cls(
            zone_id=zone_id,
            polygon=None if polygon is None else zone_polygon(polygon),
            geocodes=zone_geocodes(area.get("geocodes") or ()),
        )


def _zone_error(detail: str) -> Invalid:
    return Invalid("invalid-zone-area", "bad zone area: %s" % detail,
                   "vùng của thôn/xóm không hợp lệ: %s" % detail)


def _coordinate(lat, lon) -> LatLon | None:
    """(lat, lon) as floats if both are finite and in range, else None."""
    if isinstance(lat, bool) or isinstance(lon, bool):
        return None
    try:
        lat, lon = float(lat), float(lon)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    return lat, lon


def _shape(points: Iterable[LatLon]):
    """A shapely polygon from (lat, lon) points; a self-crossing one is repaired rather than
    refused (an agency's hand-drawn bow tie still means those places)."""
    polygon = Polygon([(lon, lat) for lat, lon in points])
    return polygon if polygon.is_valid else shapely.make_valid(polygon)


# --- CAP's own text forms (parse.py calls these while reading an area) ---

def parse_cap_polygon(text: str) -> tuple[LatLon, ...]:
    """A CAP <polygon>: whitespace-separated "lat,lon" pairs, at least four, closed."""
    points = []
    for pair in text.split():
        parts = pair.split(",")
        point = _coordinate(*parts) if len(parts) == 2 else None
        if point is None:
            raise CapError("invalid-cap", "polygon point %r is not a latitude,longitude in range"
                           % pair[:40])
        points.append(point)
    if len(points) < _MIN_CAP_POLYGON_POINTS:
        raise CapError("invalid-cap", "a polygon needs at least %d points, it has %d"
                       % (_MIN_CAP_POLYGON_POINTS, len(points)))
    if points[0] != points[-1]:
        raise CapError("invalid-cap", "a polygon must end on its first point (it is not closed)")
    return tuple(points)


def parse_cap_circle(text: str) -> Circle:
    """A CAP <circle>: "lat,lon radius" with the radius in kilometres."""
    parts = text.split()
    centre = None
    radius = None
    if len(parts) == 2 and parts[0].count(",") == 1:
        centre = _coordinate(*parts[0].split(","))
        try:
            radius = float(parts[1])
        except ValueError:
            radius = None
    if centre is None or radius is None or not math.isfinite(radius) or radius < 0:
        raise CapError("invalid-cap", "circle %r is not \"latitude,longitude radius_km\""
                       % text.strip()[:60])
    if radius > math.pi * EARTH_RADIUS_KM:
        raise CapError("invalid-cap", "a circle's radius of %g km is more than the Earth has"
                       % radius)
    return Circle(centre[0], centre[1], radius)


# --- a zone's outline and geocodes, as the zones API receives them ---

def zone_polygon(points) -> tuple[LatLon, ...]:
    """A zone's outline from ``[[lat, lon], ...]``: at least three distinct points in range,
    closed here if the operator did not repeat the first point, not crossing itself."""
    if not isinstance(points, (list, tuple)):
        raise _zone_error("the polygon must be a list of [latitude, longitude] points")
    outline = []
    for point in points:
        coordinate = (_coordinate(*point) if isinstance(point, (list, tuple)) and len(point) == 2
                      else None)
        if coordinate is None:
            raise _zone_error("point %r is not a [latitude, longitude] in range" % (point,))
        outline.append(coordinate)
    if len(set(outline)) < 3:
        raise _zone_error("a polygon needs at least three different points")
    if outline[0] != outline[-1]:
        outline.append(outline[0])
    if not Polygon([(lon, lat) for lat, lon in outline]).is_valid:
        raise _zone_error("the outline crosses itself or has no area")
    return tuple(outline)


def zone_geocodes(geocodes) -> frozenset[tuple[str, str]]:
    """(valueName, value) pairs from ``[{"valueName": n, "value": v}]`` or ``[[n, v]]``."""
    pairs = set()
    for geocode in geocodes:
        if isinstance(geocode, dict):
            pair = (geocode.get("valueName"), geocode.get("value"))
        elif isinstance(geocode, (list, tuple)) and len(geocode) == 2:
            pair = tuple(geocode)
        else:
            pair = (None, None)
        if not all(isinstance(part, str) and part.strip() for part in pair):
            raise _zone_error("geocode %r is not a valueName and a value" % (geocode,))
        pairs.add((pair[0].strip(), pair[1].strip()))
    return frozenset(pairs)


# --- selection ---

def _azimuthal_equidistant(centre: Circle):
    """A function mapping (lon, lat) degree arrays to km in the plane centred on ``centre``,
    where the distance to the origin is the great-circle distance to the centre."""
    lat0, lon0 = math.radians(centre.lat), math.radians(centre.lon)

    def project(coords: np.ndarray) -> np.ndarray:
        lon = np.radians(coords[:, 0])
        lat = np.radians(coords[:, 1])
        dlon = lon - lon0
        # haversine for the angle: stable for the small distances of a village
        a = np.sin((lat - lat0) / 2) ** 2 + math.cos(lat0) * np.cos(lat) * np.sin(dlon / 2) ** 2
        angle = 2 * np.arctan2(np.sqrt(a), np.sqrt(np.clip(1 - a, 0, None)))
        azimuth = np.arctan2(np.sin(dlon) * np.cos(lat),
                             math.cos(lat0) * np.sin(lat)
                             - math.sin(lat0) * np.cos(lat) * np.cos(dlon))
        distance = EARTH_RADIUS_KM * angle
        return np.column_stack((distance * np.sin(azimuth), distance * np.cos(azimuth)))

    return project


def _circle_bounds(circle: Circle):
    """(min_lon, min_lat, max_lon, max_lat) in degrees around the circle, a little wide, or
    None when it reaches a pole or half the globe (no cheap test then)."""
    reach = math.degrees(circle.radius_km / EARTH_RADIUS_KM) * 1.01 + 1e-6
    if abs(circle.lat) + reach >= 89.0:
        return None
    # the widest longitude a spherical cap reaches, from its centre's latitude
    ratio = math.sin(math.radians(reach)) / math.cos(math.radians(circle.lat))
    if ratio >= 1.0:
        return None
    spread = math.degrees(math.asin(ratio)) * 1.01 + 1e-6
    return (circle.lon - spread, circle.lat - reach, circle.lon + spread, circle.lat + reach)


def _circle_touches(circle: Circle, bounds, outline) -> bool:
    if bounds is not None:
        west, south, east, north = outline.bounds
        if east < bounds[0] or west > bounds[2] or north < bounds[1] or south > bounds[3]:
            return False
    project = _azimuthal_equidistant(circle)
    vertices = project(np.asarray(shapely.get_coordinates(outline)))
    farthest = float(np.max(np.hypot(vertices[:, 0], vertices[:, 1])))
    if farthest > EARTH_RADIUS_KM * math.pi / 2:
        # Past a quarter of the globe the plane folds over: judge by the vertices alone.
        return float(np.min(np.hypot(vertices[:, 0], vertices[:, 1]))) <= circle.radius_km
    projected = shapely.transform(shapely.segmentize(outline, _SEGMENT_DEGREES), project)
    return projected.distance(Point(0.0, 0.0)) <= circle.radius_km


def select_zones(areas: Iterable, zones: Iterable[Zone]) -> tuple[str, ...]:
    """The ids of the zones any of ``areas`` touches, in the order ``zones`` came. ``areas``
    are objects with ``polygons``, ``circles`` and ``geocodes``, as parse.py makes them. An
    empty tuple means nothing matched: nothing airs, and the caller tells the operator."""
    areas = tuple(areas)
    geocodes = {pair for area in areas for pair in area.geocodes}
    polygons = [_shape(polygon) for area in areas for polygon in area.polygons]
    for polygon in polygons:
        shapely.prepare(polygon)  # each is tested against every zone
    circles = [(circle, _circle_bounds(circle)) for area in areas for circle in area.circles]
    selected = []
    for zone in zones:
        if geocodes.intersection(zone.geocodes):
            selected.append(zone.zone_id)
            continue
        if zone.polygon is None:
            continue
        outline = _shape(zone.polygon)
        if any(polygon.intersects(outline) for polygon in polygons) or any(
                _circle_touches(circle, bounds, outline) for circle, bounds in circles):
            selected.append(zone.zone_id)
    return tuple(selected)
