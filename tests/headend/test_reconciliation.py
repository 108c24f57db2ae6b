"""Reconciliation after restarts, on a real database file (and PostgreSQL): a receiver's birth
of a new boot, its heartbeats' ``play``, the head-end's own runs and what no report settles.
Reports go through the real ingest (apply_batch) as the MQTT service hands them over; what an
operator sees is read back through the API."""

from datetime import UTC, datetime, timedelta

from conftest import now_ms

from headend.models import HeadendRun
from headend.services import broadcasts, reconcile


def get(commune, path, **params):
    r = commune.client.get(path, params=params, headers=commune.headers)
    assert r.status_code == 200, r.text
    return r.json()


def devices_of(commune, bid):
    return {d["id"]: d for d in get(commune, "/api/v1/broadcasts/" + bid)["devices"]}


def log_of(commune, bid, device):
    return sorted((e for e in get(commune, "/api/v1/playlog", broadcast_id=bid)
                   if e["device_id"] == device), key=lambda e: e["started_at"] or "")


def playing(commune, devices, emergency=True, started_ago_ms=5000):
    """``devices`` online (boot 1) and playing a new broadcast; returns (bid, media id)."""
    commune.report(*(commune.birth(d) for d in devices))
    media = commune.upload()
    if emergency:
        r = commune.client.post("/api/v1/emergency", headers=commune.headers,
                                json={"media_id": media["id"], "targets": {"devices": devices}})
    else:
        r = commune.client.post("/api/v1/broadcasts", headers=commune.headers,
                                json={"media_id": media["id"], "targets": {"devices": devices}})
    assert r.status_code == 201, r.text
    bid = r.json()["id"]
    t = now_ms() - started_ago_ms
    commune.report(*(commune.event(d, "started", t=t, bid=bid, item=media["id"], at=None, skip=0)
                     for d in devices))
    assert {s["state"] for s in devices_of(commune, bid).values()} == {"playing"}
    return bid, media["id"]


def sweep(app, now):
    with app.state.session_factory() as session:
        touched = broadcasts.finish_overdue(session, now=now)
        session.commit()
    return touched


def test_a_receiver_restarting_mid_emergency_is_interrupted_and_plays_it_again(commune):
    bid, item = playing(commune, ["a1", "a2"])
    sent = len(commune.commands_to("a1"))
    result = commune.report(commune.birth("a1", boot=2))  # a power cut on a1's pole
    assert result.stats["receiver_restarted"] == 1
    states = devices_of(commune, bid)
    a1 = states["a1"]
    assert a1["state"] == "pending", "a current emergency is sent again to a rebooted receiver"
    (cut,) = log_of(commune, bid, "a1")
    assert cut["outcome"] == "interrupted" and cut["reason"] == "receiver-restarted"
    assert cut["ended_at"] is not None
    assert "khởi động lại" in cut["reason_text"]["vi"]
    assert "restarted" in cut["reason_text"]["en"]
    assert states["a2"]["state"] == "playing"
    (again,) = commune.commands_to("a1")[sent:]
    assert again["k"] == "play" and again["a"]["bid"] == bid and again["a"]["at"] is None
    devices = {d["id"]: d for d in get(commune, "/api/v1/devices")}
    assert devices["a1"]["now_playing"] is None and devices["a2"]["now_playing"]
    # it plays it again from the start, to the end
    t = now_ms()
    commune.report(commune.event("a1", "started", t=t, bid=bid, item=item, at=None, skip=0))
    commune.report(commune.event("a1", "ended", t=t + 1500, bid=bid, item=item,
                                 reason="finished", played=1500))
    assert devices_of(commune, bid)["a1"]["state"] == "played"
    assert [e["outcome"] for e in log_of(commune, bid, "a1")] == ["interrupted", "played"]


def test_a_late_end_report_from_the_outbox_corrects_the_interruption(commune):
    bid, item = playing(commune, ["a1"], emergency=False)
    commune.report(commune.birth("a1", boot=2))
    assert log_of(commune, bid, "a1")[0]["outcome"] == "interrupted"
    # the end was in the receiver's outbox (flash): it comes after the reconnect
    commune.report(commune.event("a1", "ended", bid=bid, item=item, reason="finished",
                                 played=1500))
    assert devices_of(commune, bid)["a1"]["state"] == "played"
    (entry,) = log_of(commune, bid, "a1")
    assert (entry["outcome"], entry["reason"], entry["played_ms"]) == ("played", "finished", 1500)
    assert get(commune, "/api/v1/broadcasts/" + bid)["state"] == "played"


def test_a_reconnect_interrupts_nothing_and_heartbeats_decide_after_a_grace(commune):
    bid, _item = playing(commune, ["a1"])
    commune.report(commune.birth("a1", boot=1, conn=2))  # the link came back: same boot
    assert devices_of(commune, bid)["a1"]["state"] == "playing"
    commune.report(commune.heartbeat("a1", conn=2, up=60, play=bid))
    assert devices_of(commune, bid)["a1"]["state"] == "playing"
    quiet = commune.heartbeat("a1", conn=2, up=61)  # no "play": it plays nothing now
    commune.report(quiet)
    assert devices_of(commune, bid)["a1"]["state"] == "playing", "its end report may be on the way"
    later = commune.heartbeat("a1", conn=2, up=75)
    later.received_ms = quiet.received_ms + int(reconcile.CONTRADICTION_GRACE.total_seconds()
                                                * 1000) + 1000
    commune.report(later)
    a1 = devices_of(commune, bid)["a1"]
    assert (a1["state"], a1["reason"]) == ("interrupted", "end-unreported")
    (entry,) = log_of(commune, bid, "a1")
    assert (entry["outcome"], entry["reason"]) == ("interrupted", "end-unreported")


def test_a_confirming_heartbeat_clears_a_contradiction(commune, app):
    bid, _item = playing(commune, ["a1"])
    commune.report(commune.heartbeat("a1", up=60))
    commune.report(commune.heartbeat("a1", up=61, play=bid))
    assert sweep(app, datetime.now(UTC) + timedelta(seconds=20)) == 0
    assert devices_of(commune, bid)["a1"]["state"] == "playing"


def test_a_start_from_before_the_receivers_boot_is_closed_at_its_first_heartbeat(commune):
    """The start comes late, from the outbox, after the birth of the next boot: the uptime
    in the new boot's heartbeat shows it began before that boot."""
    commune.report(commune.birth("a1"))
    media = commune.upload()
    bid = commune.client.post("/api/v1/emergency", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"devices": ["a1"]}}).json()["id"]
    commune.report(commune.birth("a1", boot=2))
    commune.report(commune.event("a1", "started", t=now_ms() - 60_000, bid=bid,
                                 item=media["id"], at=None, skip=0))
    assert devices_of(commune, bid)["a1"]["state"] == "playing"
    commune.report(commune.heartbeat("a1", boot=2, up=20))
    a1 = devices_of(commune, bid)["a1"]
    assert (a1["state"], a1["reason"]) == ("interrupted", "receiver-restarted")


def test_a_play_nobody_reports_the_end_of_is_closed_once_its_length_is_over(commune, app):
    bid, _item = playing(commune, ["a1", "a2"], started_ago_ms=10 * 60_000)
    commune.report(commune.death("a1"), commune.death("a2"))  # both gone silent for good
    assert sweep(app, datetime.now(UTC)) == 1
    states = devices_of(commune, bid)
    assert {s["state"] for s in states.values()} == {"interrupted"}
    assert {s["reason"] for s in states.values()} == {"end-unreported"}
    assert get(commune, "/api/v1/broadcasts/" + bid)["state"] == "interrupted"


def scheduled(commune):
    """A programme at now + 30 s for a1 (online) and a3 (offline); returns (bid, end)."""
    commune.report(commune.birth("a1"))
    media = commune.upload()
    start = datetime.now(UTC) + timedelta(seconds=30)
    r = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"devices": ["a1", "a3"]},
        "start_at": start.isoformat()})
    assert r.status_code == 201, r.text
    detail = get(commune, "/api/v1/broadcasts/" + r.json()["id"])
    assert {d["id"]: d["state"] for d in detail["devices"]} == {"a1": "pending", "a3": "offline"}
    return detail["id"], media["id"], start + timedelta(seconds=detail["duration_s"])


def add_run(app, started, alive):
    with app.state.session_factory() as session:
        session.add(HeadendRun(started_at=started, alive_at=alive))
        session.commit()


def test_what_aired_while_the_headend_was_down_is_told_apart(commune, app):
    bid, item, end = scheduled(commune)
    now = datetime.now(UTC)
    add_run(app, now - timedelta(hours=1), now)  # down from now on, until after the end
    back = end + timedelta(seconds=40)
    add_run(app, back, back)
    # back: nothing is concluded while the broker delivers what it kept
    assert sweep(app, back + timedelta(seconds=5)) == 0
    assert devices_of(commune, bid)["a1"]["state"] == "pending"
    assert sweep(app, back + reconcile.STARTUP_GRACE + timedelta(seconds=30)) == 1
    states = devices_of(commune, bid)
    assert {d: s["state"] for d, s in states.items()} == {"a1": "failed", "a3": "failed"}
    assert {s["reason"] for s in states.values()} == {"headend-down"}
    assert "máy chủ ngừng hoạt động" in states["a1"]["reason_text"]["vi"]
    assert get(commune, "/api/v1/broadcasts/" + bid)["state"] == "failed"
    # a1 played it from its cache: its report, late, is the truth
    commune.report(commune.event("a1", "ended", bid=bid, item=item, reason="finished",
                                 played=1500))
    assert devices_of(commune, bid)["a1"]["state"] == "played"
    assert get(commune, "/api/v1/broadcasts/" + bid)["state"] == "partial"


def test_what_nobody_reported_while_the_headend_was_up_says_so(commune, app):
    bid, _item, end = scheduled(commune)
    now = datetime.now(UTC)
    add_run(app, now - timedelta(hours=1), end + timedelta(seconds=120))
    assert sweep(app, end + timedelta(seconds=90)) == 1
    states = devices_of(commune, bid)
    assert (states["a1"]["state"], states["a1"]["reason"]) == ("failed", "no-report")
    assert (states["a3"]["state"], states["a3"]["reason"]) == ("failed", "receiver-offline")


def test_a_report_that_makes_no_sense_is_refused_and_counted(commune):
    bid, item = playing(commune, ["a1"], emergency=False)
    commune.report(commune.event("a1", "ended", bid=bid, item=item, reason="finished",
                                 played=1500))
    result = commune.report(commune.event("a1", "ended", bid=bid, item=item,
                                          reason="preempted", played=10))
    assert result.stats["delivery.refused"] == 1
    assert devices_of(commune, bid)["a1"]["state"] == "played"


def test_a_failed_fetch_says_why_and_a_retry_that_works_clears_it(commune):
    commune.report(commune.birth("a1"), commune.birth("a2"))
    media = commune.upload()
    start = datetime.now(UTC) + timedelta(seconds=60)
    bid = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"devices": ["a1", "a2"]},
        "start_at": start.isoformat()}).json()["id"]
    sha = commune.commands_to("a1")[-1]["a"]["sha"]
    commune.report(*(commune.event(d, "fetch_failed", item=media["id"], sha=sha,
                                   reason="http 404") for d in ("a1", "a2")))
    a1 = devices_of(commune, bid)["a1"]
    assert (a1["state"], a1["reason"], a1["reason_detail"]) == ("failed", "fetch-failed",
                                                                 "http 404")
    assert a1["reason_text"]["en"].endswith(": http 404")
    commune.report(commune.event("a1", "fetched", item=media["id"], sha=sha))  # the retry
    assert devices_of(commune, bid)["a1"]["state"] == "fetched"
    # a2 never got it: at air time the receiver says "not cached"; the fetch says why
    commune.report(commune.event("a2", "ended", bid=bid, item=media["id"], reason="failed",
                                 detail="not-cached", played=0))
    a2 = devices_of(commune, bid)["a2"]
    assert (a2["state"], a2["reason"], a2["reason_detail"]) == ("failed", "fetch-failed",
                                                                 "http 404")
    (entry,) = log_of(commune, bid, "a2")
    assert (entry["outcome"], entry["reason"]) == ("failed", "not-cached")


def test_a_sink_failure_reaches_the_operator_with_the_receivers_words(commune):
    bid, item = playing(commune, ["a1"], emergency=False)
    commune.report(commune.event("a1", "ended", bid=bid, item=item, reason="failed",
                                 detail="vs1053: DREQ stuck low", played=300))
    a1 = devices_of(commune, bid)["a1"]
    assert (a1["reason"], a1["reason_detail"]) == ("sink-failed", "vs1053: DREQ stuck low")


def test_what_ended_before_the_first_recorded_run_is_not_blamed_on_the_headend(commune, app):
    """An upgraded head-end starts recording its runs now: of older air times it knows
    nothing, so they stay "no-report" / "receiver-offline"."""
    bid, _item, end = scheduled(commune)
    first = end + timedelta(seconds=10)
    add_run(app, first, first)
    assert sweep(app, first + reconcile.STARTUP_GRACE + timedelta(seconds=60)) == 1
    assert {d: s["reason"] for d, s in devices_of(commune, bid).items()} == {
        "a1": "no-report", "a3": "receiver-offline"}
