"""The head-end's API as an operator, a technician and a viewer use it (no broker: commands
are recorded at the publisher boundary and opened with the receivers' keys)."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from conftest import login, tone_wav

from headend.settings import Settings


def test_login_gives_a_token_and_a_wrong_password_does_not(client, users):
    r = client.post("/api/v1/auth/token", data={"username": "admin", "password": "nope"})
    assert r.status_code == 401
    headers = login(client, "operator")
    me = client.get("/api/v1/auth/me", headers=headers).json()
    assert me["username"] == "operator" and me["role"] == "operator"
    assert client.get("/api/v1/devices").status_code == 401


def test_roles_limit_what_each_user_may_do(client, users, commune):
    viewer = login(client, "viewer")
    operator = login(client, "operator")
    assert client.get("/api/v1/devices", headers=viewer).status_code == 200
    assert client.post("/api/v1/devices", json={"name": "x"}, headers=viewer).status_code == 403
    assert client.post("/api/v1/devices", json={"name": "x"}, headers=operator).status_code == 403
    media = commune.upload()
    r = client.post("/api/v1/broadcasts", headers=viewer,
                    json={"media_id": media["id"], "targets": {"all": True}})
    assert r.status_code == 403
    assert client.get("/api/v1/audit", headers=operator).status_code == 403


def test_provisioning_shows_the_secrets_once_and_never_in_lists(client, as_admin, commune):
    r = client.post("/api/v1/devices", json={"name": "Cổng chợ", "zone": "thon-1"},
                    headers=as_admin)
    assert r.status_code == 201
    made = r.json()
    assert len(made["device_key"]) == 64 and made["mqtt_password"]
    listing = client.get("/api/v1/devices", headers=as_admin)
    detail = client.get("/api/v1/devices/%s" % made["id"], headers=as_admin)
    for text in (listing.text, detail.text):
        assert made["device_key"] not in text and made["mqtt_password"] not in text
    rows = {d["id"]: d for d in listing.json()}
    assert rows[made["id"]]["zone"] == "thon-1"
    assert set(rows[made["id"]]) >= {"id", "name", "zone", "online", "last_seen"}
    audit = client.get("/api/v1/audit", headers=as_admin).text
    assert "device.provision" in audit and made["device_key"] not in audit


def test_upload_makes_renditions_served_with_range_requests(client, commune):
    media = commune.upload(seconds=2.0)
    assert media["id"] and 1.9 < media["duration_s"] < 2.1
    codecs = {r["codec"]: r for r in media["renditions"]}
    assert set(codecs) == {"mp3", "adpcm"}
    mp3 = codecs["mp3"]
    whole = client.get("/media/%s.mp3" % mp3["sha256"])
    assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == mp3["sha256"]
    part = client.get("/media/%s.mp3" % mp3["sha256"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert client.get("/media/%s.mp3" % ("0" * 64)).status_code == 404


def test_a_file_that_is_not_audio_gets_a_clear_4xx(client, as_operator):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 400
    r = client.post("/api/v1/media", files={"file": ("tin.mp3", png, "audio/mpeg")},
                    headers=as_operator)
    assert 400 <= r.status_code < 500
    assert r.json()["detail"] and r.json()["message_vi"]
    r = client.post("/api/v1/media", files={"file": ("empty.wav", b"", "audio/wav")},
                    headers=as_operator)
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("body, words", [
    ({"targets": {"all": True}}, "media_id"),
    ({"media_id": "MEDIA", "targets": {"zones": ["thon-9"]}}, "unknown zone"),
    ({"media_id": "MEDIA", "targets": {"devices": ["zz9"]}}, "unknown receiver"),
    ({"media_id": "MEDIA", "targets": {"all": True}, "start_at": "2020-01-01T05:30:00+07:00"},
     "past"),
    ({"media_id": "nope", "targets": {"all": True}}, "unknown media"),
    ({"media_id": "MEDIA", "targets": {}}, "targets"),
    ({"media_id": "MEDIA", "targets": {"all": True}, "priority": "loud"}, "priority"),
])
def test_bad_broadcasts_get_a_4xx_that_says_why(client, commune, body, words):
    media = commune.upload()
    if body.get("media_id") == "MEDIA":
        body = dict(body, media_id=media["id"])
    r = client.post("/api/v1/broadcasts", json=body, headers=commune.headers)
    assert 400 <= r.status_code < 500, r.text
    assert words in r.json()["detail"]
    assert client.get("/api/v1/broadcasts/bnope", headers=commune.headers).status_code == 404


def test_zone_broadcast_signs_a_play_for_each_online_receiver_of_the_zone(commune):
    commune.report(*(commune.birth(d) for d in ("a1", "a2", "a3", "b1", "b2")))
    media = commune.upload()
    start = datetime.now(UTC) + timedelta(seconds=30)
    r = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"zones": ["thon-1"]},
        "start_at": start.isoformat(), "priority": "normal"})
    assert r.status_code == 201, r.text
    bid = r.json()["id"]
    for device in ("a1", "a2", "a3"):
        (play,) = commune.commands_to(device)
        assert play["k"] == "play" and play["a"]["bid"] == bid
        assert play["a"]["at"] == int(start.timestamp() * 1000)
        assert play["a"]["url"].startswith("http://headend.test:8080/media/")
    assert commune.commands_to("b1") == [] and commune.commands_to("b2") == []
    detail = commune.client.get("/api/v1/broadcasts/" + bid, headers=commune.headers).json()
    assert {d["id"]: d["state"] for d in detail["devices"]} == {
        "a1": "pending", "a2": "pending", "a3": "pending"}


def test_receivers_reports_make_the_state_and_the_playlog(commune):
    commune.report(*(commune.birth(d) for d in ("a1", "a2")))
    media = commune.upload()
    bid = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"devices": ["a1", "a2"]}}).json()["id"]
    cmd = {d: commune.commands_to(d)[0] for d in ("a1", "a2")}
    t = commune.commands_to("a1")[0]["a"]["at"]
    reports = []
    for d in ("a1", "a2"):
        reports += [commune.event(d, "ack", cmd=cmd[d]["id"], ok=True),
                    commune.event(d, "fetched", item=media["id"], sha=cmd[d]["a"]["sha"]),
                    commune.event(d, "started", t=t + 3, bid=bid, item=media["id"], at=t, skip=0)]
    commune.report(*reports)
    detail = commune.client.get("/api/v1/broadcasts/" + bid, headers=commune.headers).json()
    assert {d["state"] for d in detail["devices"]} == {"playing"} and detail["state"] == "playing"
    ended = commune.event("a1", "ended", t=t + 1500, bid=bid, item=media["id"],
                          reason="finished", played=1500)
    commune.report(ended, commune.event("a2", "ended", t=t + 900, bid=bid, item=media["id"],
                                        reason="failed", played=900))
    commune.report(ended)  # the broker redelivers after a reconnect: counted once
    detail = commune.client.get("/api/v1/broadcasts/" + bid, headers=commune.headers).json()
    states = {d["id"]: d for d in detail["devices"]}
    assert states["a1"]["state"] == "played" and states["a2"]["state"] == "failed"
    assert detail["state"] == "partial"
    log = commune.client.get("/api/v1/playlog", params={"broadcast_id": bid},
                             headers=commune.headers).json()
    assert sorted((e["device_id"], e["outcome"]) for e in log) == [("a1", "played"),
                                                                   ("a2", "failed")]
    a1 = next(e for e in log if e["device_id"] == "a1")
    assert datetime.fromisoformat(a1["started_at"]).timestamp() * 1000 == pytest.approx(t + 3)
    csv = commune.client.get("/api/v1/playlog", params={"format": "csv", "device_id": "a1"},
                             headers=commune.headers)
    assert csv.headers["content-type"].startswith("text/csv")
    assert "+07:00" in csv.text and bid in csv.text


def test_emergency_preempts_and_cancel_stops_it_and_late_receivers(commune):
    commune.report(*(commune.birth(d) for d in ("a1", "a2", "b1")))  # a3, b2 are offline
    media = commune.upload()
    normal = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"zones": ["thon-1"]}}).json()["id"]
    t = commune.commands_to("a1")[0]["a"]["at"]
    commune.report(*[commune.event(d, "started", t=t, bid=normal, item=media["id"], at=t)
                     for d in ("a1", "a2")])
    r = commune.client.post("/api/v1/emergency", headers=commune.headers,
                            json={"media_id": media["id"]})
    assert r.status_code == 201, r.text
    emergency = r.json()["id"]
    play = commune.commands_to("b1")[-1]
    assert play["a"]["bid"] == emergency and play["a"]["prio"] == 3 and play["a"]["vol"] == 100
    assert play["a"]["at"] is None  # not cached on b1: it plays as soon as it has the media
    commune.report(*[commune.event(d, "ended", t=t + 500, bid=normal, item=media["id"],
                                   reason="preempted", played=500) for d in ("a1", "a2")])
    detail = commune.client.get("/api/v1/broadcasts/" + normal, headers=commune.headers).json()
    assert {d["id"]: d["state"] for d in detail["devices"]}["a1"] == "preempted"
    assert detail["state"] == "preempted"  # a3 never got it: offline, and its slot is over
    # a3 comes back while the emergency is current: it is sent the emergency, from the start
    commune.report(commune.birth("a3"))
    (late,) = [c for c in commune.commands_to("a3") if c["a"].get("bid") == emergency]
    assert late["k"] == "play" and late["a"]["at"] is None
    before = len(commune.publisher.sent)
    r = commune.client.delete("/api/v1/broadcasts/" + emergency, headers=commune.headers)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    stops = [s.device_id for s in commune.publisher.sent[before:]]
    assert sorted(stops) == ["a1", "a2", "a3", "b1"]
    # b2 comes back after the cancel: nothing is sent to it
    commune.report(commune.birth("b2"))
    assert commune.commands_to("b2") == []


def test_prefetched_media_lets_an_emergency_start_together(commune):
    commune.report(*(commune.birth(d) for d in ("a1", "a2")))
    media = commune.upload()
    r = commune.client.post("/api/v1/media/%s/prefetch" % media["id"], headers=commune.headers,
                            json={"targets": {"zones": ["thon-1"]}})
    assert r.status_code == 202 and r.json()["receivers"] == 2
    fetch = commune.commands_to("a1")[-1]
    assert fetch["k"] == "fetch" and fetch["a"]["item"] == media["id"]
    commune.report(commune.event("a1", "fetched", item=media["id"], sha=fetch["a"]["sha"]))
    commune.client.post("/api/v1/emergency", headers=commune.headers,
                        json={"media_id": media["id"], "targets": {"devices": ["a1", "a2"]}})
    at = {d: commune.commands_to(d)[-1]["a"]["at"] for d in ("a1", "a2")}
    assert at["a1"] is not None and at["a2"] is None  # a1 holds it: a set start; a2 fetches


def test_a_stale_death_does_not_mark_a_live_receiver_offline(commune):
    commune.report(commune.birth("a1", boot=3, conn=1))
    commune.report(commune.birth("a1", boot=3, conn=2), commune.death("a1", boot=3, conn=1))
    device = commune.client.get("/api/v1/devices/a1", headers=commune.headers).json()
    assert device["online"] is True
    result = commune.report(commune.death("a1", boot=3, conn=2))
    device = commune.client.get("/api/v1/devices/a1", headers=commune.headers).json()
    assert device["online"] is False and device["offline_reason"] == "link-lost"
    assert result.stats["death"] == 1


def test_a_reflashed_receiver_restarting_its_event_numbers_is_not_ignored(commune):
    commune.report(commune.birth("a1", boot=7, conn=3))
    commune.report(commune.event("a1", "started", seq=1, bid="bx", item="m", at=1))
    commune.report(commune.event("a1", "started", seq=1, bid="bx", item="m", at=1))  # again
    commune.report(commune.birth("a1", boot=1, conn=1))  # wiped flash: counters from 1
    commune.report(commune.event("a1", "started", seq=1, bid="by", item="m", at=1))
    commune.report(commune.death("a1", boot=1, conn=1))
    commune.report(commune.birth("a1", boot=1, conn=1))  # wiped again, same counters
    commune.report(commune.event("a1", "started", seq=1, bid="bz", item="m", at=1))
    log = commune.client.get("/api/v1/playlog", params={"device_id": "a1"},
                             headers=commune.headers).json()
    assert sorted(e["broadcast_id"] for e in log) == ["bx", "by", "bz"]


def test_malformed_reports_are_counted_and_dropped(commune):
    from headend.mqtt.ingest import Report

    junk = [Report("evt", "a1", b"{not json", 0, qos=1), Report("status", "a1", b"[]", 0),
            commune.sealed("evt", "a1", b'{"v":1,"seq":"x","k":"started","t":1}'),
            Report("hb", "nobody", b'{"v":1}', 0), Report("evt", "a1", b"\xff" * 20000, 0)]
    result = commune.report(*junk, commune.birth("a2"))
    assert result.stats["malformed"] == 5
    assert commune.client.get("/api/v1/devices/a2", headers=commune.headers).json()["online"]


def test_a_silent_receiver_is_marked_offline(commune, app):
    from headend.mqtt.ingest import sweep_presence

    commune.report(commune.birth("a1"), commune.birth("a2"))
    later = datetime.now(UTC) + timedelta(seconds=app.state.settings.offline_after_s + 1)
    with app.state.session_factory() as session:
        assert sorted(sweep_presence(session, settings=app.state.settings, now=later)) == [
            "a1", "a2"]
        session.commit()
    device = commune.client.get("/api/v1/devices/a1", headers=commune.headers).json()
    assert device["online"] is False and device["offline_reason"] == "silent"


def test_a_4g_receiver_with_a_longer_heartbeat_is_given_its_own_allowance(commune, app):
    """A receiver on 4G that heartbeats every 60 s must not flap offline at 45 s."""
    from headend.mqtt.ingest import sweep_presence

    commune.report(commune.birth("a1", heartbeat_s=60), commune.birth("a2"))
    settings = app.state.settings
    soon = datetime.now(UTC) + timedelta(seconds=settings.offline_after_s + 1)
    late = datetime.now(UTC) + timedelta(seconds=1.4 * 60 + 1)
    with app.state.session_factory() as session:
        assert sweep_presence(session, settings=settings, now=soon) == ["a2"]
        assert sweep_presence(session, settings=settings, now=late) == ["a1"]
        session.commit()


def test_command_counters_only_grow(commune):
    commune.report(commune.birth("a1"))
    for _ in range(3):
        r = commune.client.post("/api/v1/devices/a1/commands", headers=commune.headers,
                                json={"kind": "volume", "args": {"vol": 70}})
        assert r.status_code == 202
    counters = [c["ctr"] for c in commune.commands_to("a1")]
    assert counters == sorted(set(counters)) and len(counters) == 3
    r = commune.client.post("/api/v1/devices/a1/commands", headers=commune.headers,
                            json={"kind": "volume", "args": {"vol": 300}})
    assert r.status_code == 422


def test_production_refuses_default_secrets(tmp_path):
    with pytest.raises(ValueError):
        Settings(environment="production", data_dir=tmp_path)
    ok = Settings(environment="production", data_dir=tmp_path, secret_key="x" * 32,
                  mqtt_password="broker-secret", key_encryption_key="ab" * 32)
    assert ok.environment == "production"


def test_the_tone_fixture_is_real_audio():
    assert tone_wav(0.1)[:4] == b"RIFF"
