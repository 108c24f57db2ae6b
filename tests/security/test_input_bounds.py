"""Input bounds on the head-end's API (issue 9): a broadcast scheduled for year 9999, a pole at
latitude 1e308 or NaN, megabytes of command arguments, and a receiver provisioned under the
head-end's own broker account or a reserved name. Each is refused with a 422 and its own code,
and nothing is stored."""

import pytest

from headend.services.devices import provision_device
from headend.settings import Settings
from tests.headend.conftest import login
from tools.testaudio import tone_wav

SITE = "xa-bounds"


@pytest.fixture
def settings_overrides():
    return {"site_id": SITE, "mqtt_username": "hq-account"}


@pytest.fixture
def as_admin(client):
    return login(client, "admin")


def refused(r, code):
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == code, body
    assert body["message_vi"] and body["message_vi"] != body["detail"]


def device_ids(client, headers):
    r = client.get("/api/v1/devices", headers=headers)
    assert r.status_code == 200, r.text
    return {d["id"] for d in r.json()}


# -- a broadcast scheduled centuries ahead -------------------------------------------------

@pytest.fixture
def media_id(client, as_admin):
    client.post("/api/v1/devices", json={"id": "r01", "name": "r01"}, headers=as_admin)
    r = client.post("/api/v1/media", files={"file": ("tin.wav", tone_wav(1.0), "audio/wav")},
                    headers=as_admin)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("start_at", ["9999-12-31T23:59:59+07:00", "2200-01-01T00:00:00Z"])
def test_broadcast_far_in_the_future_is_refused(client, as_admin, media_id, start_at):
    r = client.post("/api/v1/broadcasts", json={"media_id": media_id, "targets": {"all": True},
                                                "start_at": start_at}, headers=as_admin)
    refused(r, "start-too-far")
    assert client.get("/api/v1/broadcasts", headers=as_admin).json() == []


def test_broadcast_within_a_year_is_still_taken(client, as_admin, media_id):
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC) + timedelta(days=365)
    r = client.post("/api/v1/broadcasts", json={"media_id": media_id, "targets": {"all": True},
                                                "start_at": start.isoformat()}, headers=as_admin)
    assert r.status_code == 201, r.text


# -- coordinates off the globe -------------------------------------------------------------

BAD_COORDINATES = [{"lat": 1e308, "lon": 105.8}, {"lat": 91, "lon": 0},
                   {"lat": 21.0, "lon": -180.5}, {"lat": 21.0, "lon": 1e300}]


@pytest.mark.parametrize("where", BAD_COORDINATES)
def test_provisioning_off_the_globe_is_refused(client, as_admin, where):
    r = client.post("/api/v1/devices", json=dict(where, id="r-far", name="far"),
                    headers=as_admin)
    refused(r, "bad-coordinates")
    assert "r-far" not in device_ids(client, as_admin)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_not_a_number_coordinates_are_refused(client, as_admin, token):
    # Python's JSON parser takes these bare words, so a hand-written body can carry them.
    body = '{"id": "r-nan", "name": "nan", "lat": %s, "lon": 105.8}' % token
    r = client.post("/api/v1/devices", content=body, headers=dict(
        as_admin, **{"Content-Type": "application/json"}))
    refused(r, "bad-coordinates")
    assert "r-nan" not in device_ids(client, as_admin)


@pytest.mark.parametrize("where", BAD_COORDINATES)
def test_moving_a_receiver_off_the_globe_is_refused(client, as_admin, where):
    r = client.post("/api/v1/devices", json={"id": "r01", "name": "r01", "lat": 21.0,
                                             "lon": 105.8}, headers=as_admin)
    assert r.status_code == 201, r.text
    r = client.patch("/api/v1/devices/r01", json=where, headers=as_admin)
    refused(r, "bad-coordinates")
    stored = client.get("/api/v1/devices/r01", headers=as_admin).json()
    assert (stored["lat"], stored["lon"]) == (21.0, 105.8)


def test_the_edges_of_the_globe_are_still_taken(client, as_admin):
    r = client.post("/api/v1/devices", json={"id": "r-edge", "name": "edge", "lat": -90,
                                             "lon": 180}, headers=as_admin)
    assert r.status_code == 201, r.text


# -- megabytes of command arguments --------------------------------------------------------

def test_huge_command_arguments_are_refused(client, as_admin, app):
    client.post("/api/v1/devices", json={"id": "r01", "name": "r01"}, headers=as_admin)
    huge = {"level": 5, "pad": "x" * 3_000_000}
    r = client.post("/api/v1/devices/r01/commands", json={"kind": "volume", "args": huge},
                    headers=as_admin)
    refused(r, "args-too-large")
    r = client.post("/api/v1/devices/r01/commands",
                    json={"kind": "identify", "args": {"pad": "x" * 1100}}, headers=as_admin)
    refused(r, "args-too-large")
    assert app.state.publisher.sent == []  # nothing signed or sent


# -- a receiver under the head-end's own name ----------------------------------------------

@pytest.mark.parametrize("device_id", ["headend", "ADMIN", "Loaxa",
                                       "Loaxa-Headend-%s" % SITE, "hq-account", "HQ-Account"])
def test_reserved_device_ids_are_refused(client, as_admin, device_id):
    r = client.post("/api/v1/devices", json={"id": device_id, "name": "x"}, headers=as_admin)
    refused(r, "reserved-device-id")
    assert device_id not in device_ids(client, as_admin)


def test_the_configured_client_id_is_reserved_in_the_service(app):
    settings = Settings(data_dir=app.state.settings.data_dir, mqtt_enabled=False, site_id=SITE,
                        mqtt_username="hq-account", mqtt_client_id="HQ-Session")
    from headend.errors import Invalid

    with app.state.session_factory() as session:
        for device_id in ("hq-session", "hq-account", "headend", "$SYS"):
            with pytest.raises(Invalid) as caught:
                provision_device(session, site_id=SITE, name="x", device_id=device_id,
                                 settings=settings)
            assert caught.value.code in ("reserved-device-id", "bad-device-id")
        made = provision_device(session, site_id=SITE, name="x", device_id="headend-2",
                                settings=settings)
        assert made.receiver.id == "headend-2"
