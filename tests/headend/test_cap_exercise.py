"""Receivers marked for exercises (PATCH /api/v1/devices/{id} {"exercise": true}): a CAP alert
of status Exercise airs on those only, within its area, logged as an exercise; an Actual alert
still airs on every receiver of its area. Real route, SQLite file, speech engine, ffmpeg."""

import logging
from datetime import timedelta

import pytest
import test_cap_api
from test_cap_api import alert, plays, post

from headend.models import Broadcast
from headend.services.cap_repeat import repeat_due

village = test_cap_api.village
source_key = test_cap_api.source_key


@pytest.fixture
def database_url():
    return ""  # the SQLite file only


def mark(village, device, value=True):
    r = village.client.patch("/api/v1/devices/" + device, headers=village.headers,
                             json={"exercise": value})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_receiver_is_marked_for_exercises_through_the_api(village, as_operator):
    assert village.client.get("/api/v1/devices/a2", headers=village.headers).json()[
        "exercise"] is False
    assert mark(village, "a2")["exercise"] is True
    listed = {d["id"]: d["exercise"] for d in village.client.get(
        "/api/v1/devices", headers=village.headers).json()}
    assert listed == {"a1": False, "a2": True, "a3": False, "b1": False}
    assert mark(village, "a2", False)["exercise"] is False
    r = village.client.patch("/api/v1/devices/a2", headers=village.headers,
                             json={"exercise": "yes"})
    assert r.status_code == 422
    # Only a technician (or an admin) changes a receiver: an operator may not.
    r = village.client.patch("/api/v1/devices/a2", headers=as_operator, json={"exercise": True})
    assert r.status_code == 403


def test_an_exercise_airs_only_on_the_receivers_marked_for_it(village, source_key, session,
                                                              caplog):
    mark(village, "a2")
    with caplog.at_level(logging.INFO, logger="headend.services.cap_alerts"):
        r = post(village.client, alert(status="Exercise"), source_key)
    answer = r.json()
    assert r.status_code == 200 and (answer["outcome"], answer["receiver_flag"]) == (
        "aired", "exercise")
    bid = answer["broadcast_id"]
    assert plays(village, "a2") == [bid]
    assert plays(village, "a1") == [] and plays(village, "b1") == []
    assert session.get(Broadcast, bid).targets == {"devices": ["a2"]}
    assert "exercise" in caplog.text
    ledger = village.client.get("/api/v1/emergency/ledger", headers=village.headers).json()
    (received,) = [e for e in ledger if e["event"] == "cap.received"]
    assert received["detail"]["exercise"] is True and received["detail"]["status"] == "Exercise"
    listed = village.client.get("/api/v1/cap", headers=village.headers).json()
    assert [(a["status"], a["state"]) for a in listed] == [("Exercise", "on-air")]
    # Repeated, it still goes to the exercise receivers only.
    broadcast = session.get(Broadcast, bid)
    (again,) = repeat_due(session, settings=village.app.state.settings,
                          publisher=village.publisher,
                          now=broadcast.valid_until + timedelta(seconds=1))
    assert plays(village, "a2") == [bid, again] and plays(village, "a1") == []


def test_an_exercise_whose_area_holds_no_marked_receiver_is_logged_only(village, source_key):
    mark(village, "b1")  # Xuân Áng; the alert's area is Văn Lâm
    before = len(village.publisher.sent)
    answer = post(village.client, alert(status="Exercise"), source_key).json()
    assert (answer["outcome"], answer["reason"]) == ("logged", "no-exercise-receivers")
    assert len(village.publisher.sent) == before


def test_an_actual_alert_airs_on_every_receiver_marked_or_not(village, source_key):
    mark(village, "a2")
    bid = post(village.client, alert(), source_key).json()["broadcast_id"]
    assert plays(village, "a1") == plays(village, "a2") == [bid]


def test_a_whole_zone_marked_for_exercises_takes_them_on_every_receiver(village, source_key,
                                                                        session, as_operator):
    r = village.client.patch("/api/v1/zones/van-lam", headers=village.headers,
                             json={"exercise": True})
    assert r.status_code == 200 and r.json()["exercise"] is True, r.text
    for bad in ("yes", 1):
        r = village.client.patch("/api/v1/zones/van-lam", headers=village.headers,
                                 json={"exercise": bad})
        assert r.status_code == 422, r.text
    r = village.client.patch("/api/v1/zones/van-lam", headers=as_operator,
                             json={"exercise": False})
    assert r.status_code == 403  # a technician's (or an admin's) change, as a receiver's mark
    answer = post(village.client, alert(status="Exercise"), source_key).json()
    assert answer["outcome"] == "aired", answer
    bid = answer["broadcast_id"]
    # Every receiver of Văn Lâm (a3 offline: it is a target too), none of Xuân Áng.
    assert session.get(Broadcast, bid).targets == {"devices": ["a1", "a2", "a3"]}
    assert plays(village, "a1") == [bid] and plays(village, "a2") == [bid]
    assert plays(village, "b1") == []
    listed = {z["id"]: z["exercise"] for z in village.client.get(
        "/api/v1/zones", headers=village.headers).json()}
    assert listed == {"van-lam": True, "xuan-ang": False}
