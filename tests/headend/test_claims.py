"""Claiming a receiver at its pole through the API: the label's code (from its key, and still
after the key rotated), the coordinates and village it sets, a wrong code refused with a clear
message and audited, repeated wrong codes backing off."""

import pytest

from headend.models import AuditEntry
from headend.services.claims import normalise
from tests.headend.conftest import Commune, login
from tools.device_label import claim_code


@pytest.fixture
def database_url():
    return ""  # SQLite: nothing here depends on the database


@pytest.fixture
def commune(client, app, users):
    return Commune(client, app, login(client, "technician")).provision(
        {"thon-1": ["r1"], "thon-2": []})


def code_of(commune, device="r1"):
    return claim_code(commune.keys[device], commune.app.state.settings.site_id, device)


def test_the_labels_code_claims_it_for_a_village_and_a_pole(commune, client, session):
    code = code_of(commune)
    r = client.post("/api/v1/devices/r1/claim", headers=commune.headers,
                    json={"code": code.lower().replace("-", " "), "zone": "thon-2",
                          "lat": 21.0285, "lon": 105.8542})
    assert r.status_code == 200, r.text
    assert (r.json()["zone"], r.json()["lat"], r.json()["lon"]) == ("thon-2", 21.0285, 105.8542)
    # the QR's text works as well
    site = commune.app.state.settings.site_id
    r = client.post("/api/v1/devices/r1/claim", headers=commune.headers,
                    json={"code": "LOAXA:%s:r1:%s" % (site, code), "zone": "thon-1"})
    assert r.status_code == 200 and r.json()["zone"] == "thon-1"
    actions = [a.action for a in session.query(AuditEntry).filter_by(target="r1")]
    assert actions.count("device.claim") == 2


def test_a_wrong_code_is_refused_audited_and_throttled(commune, client, session):
    wrong = "0000-0000" if code_of(commune) != "0000-0000" else "1111-1111"
    r = client.post("/api/v1/devices/r1/claim", headers=commune.headers,
                    json={"code": wrong, "zone": "thon-2"})
    assert r.status_code == 422 and r.json()["code"] == "wrong-claim-code"
    assert "nhãn" in r.json()["message_vi"]
    assert client.get("/api/v1/devices/r1", headers=commune.headers).json()["zone"] == "thon-1"
    refused = session.query(AuditEntry).filter_by(target="r1", action="device.claim_refused")
    assert refused.count() == 1 and wrong not in str(refused.one().detail)
    for _ in range(4):
        client.post("/api/v1/devices/r1/claim", headers=commune.headers, json={"code": wrong})
    r = client.post("/api/v1/devices/r1/claim", headers=commune.headers,
                    json={"code": code_of(commune)})
    assert r.status_code == 429 and r.json()["code"] == "too-many-claims"
    assert "thử lại sau" in r.json()["message_vi"]


def test_roles_unknown_receiver_and_a_rotated_key(commune, client):
    r = client.post("/api/v1/devices/r1/claim", headers=login(client, "viewer"),
                    json={"code": code_of(commune)})
    assert r.status_code == 403
    r = client.post("/api/v1/devices/nope/claim", headers=commune.headers,
                    json={"code": code_of(commune)})
    assert r.status_code == 404
    # the key rotates; the label on the pole still claims it
    from protocol import messages
    from protocol.rekey import open_box
    from protocol.signing import key_from_hex

    client.post("/api/v1/devices/r1/rotate", headers=commune.headers)
    offer = messages.open_command(key_from_hex(commune.keys["r1"]),
                                  commune.publisher.sent[-1].payload, "r1")["a"]
    new_key, _ = open_box(key_from_hex(commune.keys["r1"]), offer["rid"], offer["box"])
    result = commune.report(commune.sealed(
        "hb", "r1", messages.encode({"v": 1, "boot": 1, "conn": 1, "up": 5}), key=new_key))
    assert result.rekeyed == ["r1"]
    r = client.post("/api/v1/devices/r1/claim", headers=commune.headers,
                    json={"code": code_of(commune), "zone": "thon-2"})
    assert r.status_code == 200, r.text


def test_normalise():
    assert normalise("7k3m-q9xd") == normalise(" 7K3M Q9XD ") == "7K3MQ9XD"
    assert normalise("OIL0-0000") == "01100000"
    assert normalise("") == normalise("7K3M") == normalise("UUUU-UUUU") == ""
