"""Who may send an emergency is one rule, whichever way it is sent: POST /api/v1/emergency,
POST /api/v1/broadcasts with priority "emergency", or the pages (all through the service)."""

import pytest

from headend import security
from tests.headend.conftest import login

# A station where operators run the daily programme but only the admin (the commune leader's
# account) may set off the sirens' announcement: emergency held by fewer roles than broadcast.
LEADER_ONLY = dict(security.PERMISSIONS, emergency=("admin",))


@pytest.fixture
def leader_only_emergencies(monkeypatch):
    monkeypatch.setattr(security, "PERMISSIONS", LEADER_ONLY)


@pytest.fixture
def operator_station(commune, leader_only_emergencies):
    commune.report(commune.birth("a1"))
    return commune, commune.upload(), login(commune.client, "operator")


def test_an_operator_without_the_emergency_permission_is_refused_on_both_endpoints(
        operator_station):
    commune, media, operator = operator_station
    before = len(commune.commands_to("a1"))
    by_endpoint = commune.client.post("/api/v1/emergency", headers=operator,
                                      json={"media_id": media["id"]})
    by_priority = commune.client.post("/api/v1/broadcasts", headers=operator, json={
        "media_id": media["id"], "targets": {"all": True}, "priority": "emergency"})
    assert by_endpoint.status_code == 403, by_endpoint.text
    assert by_priority.status_code == 403, by_priority.text
    assert len(commune.commands_to("a1")) == before  # nothing reached a receiver
    listed = commune.client.get("/api/v1/broadcasts?priority=emergency",
                                headers=commune.headers).json()
    assert listed == []


def test_the_same_operator_may_still_broadcast_and_the_admin_may_send_the_emergency(
        operator_station):
    commune, media, operator = operator_station
    normal = commune.client.post("/api/v1/broadcasts", headers=operator, json={
        "media_id": media["id"], "targets": {"all": True}})
    assert normal.status_code == 201, normal.text
    for endpoint, body in (("/api/v1/emergency", {"media_id": media["id"]}),
                           ("/api/v1/broadcasts", {"media_id": media["id"], "priority":
                                                   "emergency", "targets": {"all": True}})):
        r = commune.client.post(endpoint, headers=commune.headers, json=body)  # the admin
        assert r.status_code == 201, r.text
        assert commune.commands_to("a1")[-1]["a"]["prio"] == 3
