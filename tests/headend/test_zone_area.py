"""A zone's area (outline and geocodes) through the zones API: validated, kept, returned, and
the demo commune's villages (Ninh Hải, Ninh Bình) accepted as they are."""

import pytest

from headend.cap.demo_zones import demo_zones_document
from headend.services.sites import cap_zones

VAN_LAM = next(z for z in demo_zones_document()["zones"] if z["id"] == "van-lam")


def test_a_zone_created_with_an_area_returns_it_closed_and_its_geocodes_sorted(client, as_admin):
    open_outline = VAN_LAM["area"]["polygon"][:-1]  # the operator did not repeat the first point
    geocodes = list(reversed(VAN_LAM["area"]["geocodes"]))
    r = client.post("/api/v1/zones", headers=as_admin, json={
        "id": "van-lam", "name": VAN_LAM["name"],
        "area": {"polygon": open_outline, "geocodes": geocodes}})
    assert r.status_code == 201, r.text
    assert r.json()["area"]["polygon"] == VAN_LAM["area"]["polygon"]
    (listed,) = client.get("/api/v1/zones", headers=as_admin).json()
    assert listed["area"]["polygon"][0] == listed["area"]["polygon"][-1] == [20.1995, 105.9289]
    assert listed["area"]["geocodes"] == sorted(
        VAN_LAM["area"]["geocodes"], key=lambda g: (g["valueName"], g["value"]))


def test_patch_sets_replaces_and_removes_an_area_and_the_cap_selection_follows(
        client, as_admin, session):
    assert client.post("/api/v1/zones", headers=as_admin,
                       json={"id": "thon-1", "name": "Thôn 1"}).status_code == 201
    assert client.get("/api/v1/zones", headers=as_admin).json()[0]["area"] is None
    r = client.patch("/api/v1/zones/thon-1", headers=as_admin, json={"area": VAN_LAM["area"]})
    assert r.status_code == 200, r.text
    (zone,) = cap_zones(session)
    assert zone.polygon is not None and ("vn-dvhc", "37") in zone.geocodes
    r = client.patch("/api/v1/zones/thon-1", headers=as_admin, json={"name": "Thôn Một"})
    assert r.json()["name"] == "Thôn Một" and r.json()["area"] is not None  # area kept
    r = client.patch("/api/v1/zones/thon-1", headers=as_admin, json={"area": None})
    assert r.status_code == 200 and r.json()["area"] is None
    session.expire_all()
    (zone,) = cap_zones(session)
    assert zone.polygon is None and not zone.geocodes
    assert client.patch("/api/v1/zones/nowhere", headers=as_admin,
                        json={"area": None}).status_code == 404


@pytest.mark.parametrize("area, words", [
    ({"polygon": [[20.2, 105.9], [20.3, 105.9]]}, "three different points"),
    ({"polygon": [[20.2, 105.9], [20.3, 106.0], [20.2, 106.0], [20.3, 105.9]]}, "crosses itself"),
    ({"polygon": [[95.0, 105.9], [20.3, 106.0], [20.2, 106.0]]}, "in range"),
    ({"polygon": "20.2,105.9 20.3,106.0"}, "list"),
    ({"geocodes": [{"valueName": "vn-dvhc"}]}, "valueName and a value"),
    ("a string", "valid dictionary"),
])
def test_a_bad_area_is_a_clear_422_and_changes_nothing(client, as_admin, area, words):
    r = client.post("/api/v1/zones", headers=as_admin,
                    json={"id": "thon-x", "name": "X", "area": area})
    assert r.status_code == 422, r.text
    assert r.json()["code"] in ("invalid-zone-area", "invalid-request")
    assert words in r.json()["detail"]
    assert client.get("/api/v1/zones", headers=as_admin).json() == []


def test_only_zone_editors_may_set_an_area(client, users, as_admin):
    from conftest import login

    client.post("/api/v1/zones", headers=as_admin, json={"id": "thon-1", "name": "Thôn 1"})
    for role in ("operator", "viewer"):
        r = client.patch("/api/v1/zones/thon-1", headers=login(client, role),
                         json={"area": VAN_LAM["area"]})
        assert r.status_code == 403
    assert client.patch("/api/v1/zones/thon-1", headers=login(client, "technician"),
                        json={"area": VAN_LAM["area"]}).status_code == 200
