"""CAP area to zones, on the demo commune's villages (Ninh Hải, Hoa Lư, Ninh Bình: six villages
tiling a 4 km by 5 km box, headend/cap/ninh_binh_demo_zones.json): polygons, circles at
known distances, geocodes, areas elsewhere, and bad zone outlines."""

import math

import pytest
from cap_messages import HUE_POLYGON, VAN_LAM_POLYGON, cap_alert, cap_area, cap_info

from headend.cap.area import (
    EARTH_RADIUS_KM,
    Zone,
    parse_cap_circle,
    parse_cap_polygon,
    select_zones,
)
from headend.cap.demo_zones import demo_zones, demo_zones_document
from headend.cap.parse import parse_cap
from headend.errors import Invalid

ALL_VILLAGES = ("xuan-ang", "van-lam", "hai-nham", "dam-khe", "khe-dau-ha", "khe-dau-thuong")
TAM_COC = "20.2167,105.9333"  # the demo's centre, in Văn Lâm, 200 m from Khê Đầu Hạ
VAN_LAM_MIDDLE = "20.2094,105.9366"  # over 600 m from every neighbour


def areas_of(*areas):
    """The parsed areas of an alert whose one info carries ``areas`` (made as XML)."""
    return parse_cap(cap_alert(infos=(cap_info(areas=areas),))).infos[0].areas


def selected(*areas, zones=None):
    return select_zones(areas_of(*areas), demo_zones() if zones is None else zones)


def test_the_demo_commune_has_six_villages_that_tile_without_overlap():
    document = demo_zones_document()
    assert "Ninh Hải" in document["commune"] and "Ninh Bình" in document["commune"]
    zones = demo_zones()
    assert tuple(zone.zone_id for zone in zones) == ALL_VILLAGES
    names = [zone["name"] for zone in document["zones"]]
    assert all(name.startswith("Thôn ") for name in names)
    for zone in zones:
        assert zone.polygon[0] == zone.polygon[-1]
        assert ("vn-dvhc", "37") in zone.geocodes


@pytest.mark.parametrize("polygon, villages", [
    (VAN_LAM_POLYGON, ("van-lam",)),
    # a strip along the border of Văn Lâm and Hải Nham, across both
    ("20.203,105.940 20.203,105.946 20.212,105.946 20.212,105.940 20.203,105.940",
     ("van-lam", "hai-nham")),
    # the whole northern row, drawn from the west bank to the east
    ("20.226,105.905 20.226,105.970 20.236,105.970 20.236,105.905 20.226,105.905",
     ("dam-khe", "khe-dau-ha", "khe-dau-thuong")),
    # the province's flood plain, far larger than the commune
    ("19.9,105.6 19.9,106.2 20.5,106.2 20.5,105.6 19.9,105.6", ALL_VILLAGES),
    (HUE_POLYGON, ()),
    # just east of the commune, 1 km past Hải Nham's edge
    ("20.205,105.972 20.205,105.980 20.214,105.980 20.214,105.972 20.205,105.972", ()),
], ids=["one village", "two across a border", "a row", "a province", "another province",
        "next commune"])
def test_a_polygon_selects_the_villages_it_touches(polygon, villages):
    assert selected(cap_area(polygons=(polygon,))) == villages


def test_a_self_crossing_polygon_still_warns_the_places_it_covers():
    bow_tie = "20.205,105.932 20.214,105.940 20.205,105.940 20.214,105.932 20.205,105.932"
    assert selected(cap_area(polygons=(bow_tie,))) == ("van-lam",)


@pytest.mark.parametrize("circle, villages", [
    (VAN_LAM_MIDDLE + " 0.5", ("van-lam",)),
    (TAM_COC + " 0", ("van-lam",)),  # a point: the village it lies in
    (TAM_COC + " 3", ALL_VILLAGES),
    # Hà Nội's centre is about 88 km north of the commune's northern edge, 90 km of its
    # southern row's
    ("21.0285,105.8542 80", ()),
    ("21.0285,105.8542 89", ("dam-khe", "khe-dau-ha", "khe-dau-thuong")),
    ("21.0285,105.8542 100", ALL_VILLAGES),
    ("16.4637,107.5909 50", ()),  # Huế
])
def test_a_circle_selects_the_villages_within_its_radius(circle, villages):
    assert selected(cap_area(circles=(circle,))) == villages


def square(zone_id, south, west, side_degrees=0.01):
    north, east = south + side_degrees, west + side_degrees
    return Zone(zone_id, ((south, west), (south, east), (north, east), (north, west),
                          (south, west)))


@pytest.mark.parametrize("direction", ["north", "east"])
def test_a_circle_is_accurate_to_one_percent_of_its_radius(direction):
    """A village whose nearest edge is 0.1 degree from the centre, due north or due east, at
    Ninh Bình's latitude. On the WGS 84 ellipsoid that is 11.07 km north (a meridian degree
    is 110.70 km at 20 N) and 10.47 km east (a parallel degree is 104.65 km): a circle 1 %
    larger reaches it, one 1 % smaller does not."""
    lat, lon = 20.2, 105.93
    if direction == "north":
        zone, distance_km = square("north", lat + 0.1, lon - 0.005), 11.070
    else:
        zone, distance_km = square("east", lat - 0.005, lon + 0.1), 10.465
    reach = "%s,%s %.3f" % (lat, lon, distance_km * 1.01)
    short = "%s,%s %.3f" % (lat, lon, distance_km * 0.99)
    assert selected(cap_area(circles=(reach,)), zones=[zone]) == (zone.zone_id,)
    assert selected(cap_area(circles=(short,)), zones=[zone]) == ()


def test_a_circle_reaches_a_long_edge_between_its_vertices():
    """A zone whose two nearest vertices are both outside the circle, but whose straight edge
    between them passes 2 km from the centre: the edge counts, not only the corners."""
    lat, lon = 20.0, 106.0
    edge_lat = lat + 2.0 / (EARTH_RADIUS_KM * math.pi / 180)  # 2 km north on the sphere
    wide = Zone("wide", ((edge_lat, lon - 0.3), (edge_lat, lon + 0.3), (edge_lat + 0.1, lon + 0.3),
                         (edge_lat + 0.1, lon - 0.3), (edge_lat, lon - 0.3)))
    assert selected(cap_area(circles=("%s,%s 2.05" % (lat, lon),)), zones=[wide]) == ("wide",)
    assert selected(cap_area(circles=("%s,%s 1.95" % (lat, lon),)), zones=[wide]) == ()


def test_a_circle_across_the_globe_is_judged_by_distance():
    """Near the antipode the flat projection folds over; the nearest corner of this Peruvian
    square is 19,914.5 km from Tam Cốc on the sphere."""
    zone = square("far", -20.0, -75.0)
    assert selected(cap_area(circles=(TAM_COC + " 5000",)), zones=[zone]) == ()
    assert selected(cap_area(circles=(TAM_COC + " 19900",)), zones=[zone]) == ()
    assert selected(cap_area(circles=(TAM_COC + " 19930",)), zones=[zone]) == ("far",)


@pytest.mark.parametrize("geocodes, villages", [
    ((("loaxa-demo", "ninh-hai"),), ALL_VILLAGES),
    ((("loaxa-demo", "ninh-hai/van-lam"), ("loaxa-demo", "ninh-hai/dam-khe")),
     ("van-lam", "dam-khe")),
    ((("vn-dvhc", "37"),), ALL_VILLAGES),  # the whole province
    ((("vn-dvhc", "46"),), ()),  # Thừa Thiên Huế
    ((("other-scheme", "37"),), ()),  # the same value under another name is another code
    ((("vn-dvhc", " 37 "),), ALL_VILLAGES),  # surrounding spaces are not part of a code
])
def test_a_geocode_selects_the_villages_that_carry_it(geocodes, villages):
    assert selected(cap_area(geocodes=geocodes)) == villages


def test_areas_add_up_and_each_village_is_listed_once_in_the_commune_s_order():
    areas = (cap_area(polygons=(VAN_LAM_POLYGON,)),
             cap_area(geocodes=(("loaxa-demo", "ninh-hai/dam-khe"),)),
             cap_area(circles=(VAN_LAM_MIDDLE + " 0.3",)))
    assert selected(*areas) == ("van-lam", "dam-khe")


def test_an_area_with_only_a_description_selects_nothing():
    assert selected(cap_area(description="Các xã ven sông Hoàng Long")) == ()


def test_zones_without_an_outline_match_by_geocode_only():
    zones = [Zone.from_area("office", {"geocodes": [["loaxa-demo", "ninh-hai"]]}),
             Zone.from_area("nothing", None)]
    assert selected(cap_area(geocodes=(("loaxa-demo", "ninh-hai"),)), zones=zones) == ("office",)
    assert selected(cap_area(circles=(TAM_COC + " 50",)), zones=zones) == ()


def test_a_zone_outline_from_the_api_is_closed_for_the_operator():
    zone = Zone.from_area("ruong", {"polygon": [[20.21, 105.93], [20.21, 105.94], [20.22, 105.94]],
                                    "geocodes": [{"valueName": "vn-dvhc", "value": "37"}]})
    assert zone.polygon == ((20.21, 105.93), (20.21, 105.94), (20.22, 105.94), (20.21, 105.93))
    assert zone.geocodes == frozenset({("vn-dvhc", "37")})


@pytest.mark.parametrize("area, words", [
    ({"polygon": [[20.21, 105.93], [20.21, 105.94]]}, "three different points"),
    ({"polygon": [[20.21, 105.93], [20.21, 105.94], [20.21, 105.93]]}, "three different points"),
    ({"polygon": [[91, 105.93], [20.21, 105.94], [20.22, 105.94]]}, "in range"),
    ({"polygon": [[20.21, 185.0], [20.21, 105.94], [20.22, 105.94]]}, "in range"),
    ({"polygon": [[20.21, "x"], [20.21, 105.94], [20.22, 105.94]]}, "in range"),
    ({"polygon": [[20.21, True], [20.21, 105.94], [20.22, 105.94]]}, "in range"),
    ({"polygon": [[20.21], [20.21, 105.94], [20.22, 105.94]]}, "in range"),
    ({"polygon": "20.21,105.93 20.21,105.94"}, "list"),
    ({"polygon": [[20.20, 105.93], [20.21, 105.94], [20.20, 105.94], [20.21, 105.93]]},
     "crosses itself"),
    ({"geocodes": [{"valueName": "vn-dvhc"}]}, "valueName and a value"),
    ({"geocodes": ["37"]}, "valueName and a value"),
    ("polygon", "an object"),
], ids=["two points", "a line", "latitude", "longitude", "a word", "a boolean", "half a point",
        "a string", "a bow tie", "a geocode without value", "a bare geocode", "not an object"])
def test_a_bad_zone_area_is_refused_in_both_languages(area, words):
    with pytest.raises(Invalid) as refused:
        Zone.from_area("bad", area)
    assert refused.value.code == "invalid-zone-area"
    assert words in refused.value.message
    assert refused.value.message_vi.startswith("vùng của thôn/xóm không hợp lệ")


def test_cap_coordinate_text_forms():
    assert parse_cap_polygon(" 20.2,105.9\n20.2,106.0\t20.3,106.0 20.2,105.9 ") == (
        (20.2, 105.9), (20.2, 106.0), (20.3, 106.0), (20.2, 105.9))
    circle = parse_cap_circle("20.2167,105.9333 2.5")
    assert (circle.lat, circle.lon, circle.radius_km) == (20.2167, 105.9333, 2.5)
