"""The demo commune's villages (ninh_binh_demo_zones.json): Ninh Hải, Hoa Lư, Ninh Bình.

Plausible outlines around the commune's real position, not surveyed boundaries; the JSON's
"about" and docs/cap.md say where the coordinates come from. Each zone has the shape the zones
API takes: ``{"id", "name", "area": {"polygon": [[lat, lon], ...], "geocodes": [...]}}``.
"""

import json
from functools import cache
from pathlib import Path

from headend.cap.area import Zone

DEMO_ZONES_PATH = Path(__file__).with_name("ninh_binh_demo_zones.json")


@cache
def demo_zones_document() -> dict:
    return json.loads(DEMO_ZONES_PATH.read_text(encoding="utf-8"))


def demo_zones() -> tuple[Zone, ...]:
    return tuple(Zone.from_area(zone["id"], zone["area"])
                 for zone in demo_zones_document()["zones"])
