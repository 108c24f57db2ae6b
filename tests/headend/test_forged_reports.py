"""Nobody but a receiver can speak for it (issue 9): its births, deaths, heartbeats and events
are MACed with its key, and a report that does not verify (no MAC, a wrong one, another
device's key, a report of another kind), a replayed one, or one with numbers the head-end
cannot hold changes no presence, delivery or play-log row, and does not flood the log.

Through the real ingest on SQLite and PostgreSQL; test_headend_ingest.py sends forgeries
through both real brokers and the MQTT service
(test_reports_forged_with_a_stolen_broker_password_change_nothing)."""

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from headend.logbudget import LogBudget
from headend.models import Delivery, DeviceEvent, PlayLog, Receiver
from headend.mqtt.ingest import Report, sweep_presence
from protocol import messages


def snapshot(app, device):
    """What a forged report of ``device`` could change: its presence, its deliveries, its
    play log and its stored events."""
    with app.state.session_factory() as session:
        receiver = session.get(Receiver, device)
        presence = (receiver.online, receiver.offline_reason, receiver.last_seen,
                    receiver.session_boot, receiver.session_conn, receiver.telemetry,
                    receiver.event_epoch)
        deliveries = sorted((d.broadcast_id, d.state, d.reason, d.started_at, d.ended_at)
                            for d in session.scalars(select(Delivery)
                                                     .where(Delivery.device_id == device)))
        plays = sorted((p.broadcast_id, p.outcome, p.played_ms) for p in session.scalars(
            select(PlayLog).where(PlayLog.device_id == device)))
        events = session.scalar(select(func.count()).select_from(DeviceEvent)
                                .where(DeviceEvent.device_id == device))
    return presence, deliveries, plays, events


def playing_broadcast(commune, device="a1"):
    """A broadcast ``device`` has started to play; its id."""
    commune.report(commune.birth(device))
    media = commune.upload()
    bid = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"devices": [device]}}).json()["id"]
    commune.report(commune.event(device, "started", bid=bid, item=media["id"], at=1, skip=0))
    return bid, media["id"]


def test_a_report_that_does_not_verify_changes_nothing(commune, app):
    bid, item = playing_broadcast(commune)
    before = snapshot(app, "a1")
    ended = messages.encode(messages.event(99, "ended", int(time.time() * 1000),
                                           {"bid": bid, "item": item, "reason": "finished",
                                            "played": 21000}))
    death = messages.death("a1", 9, 9)
    genuine = messages.seal_report(bytes.fromhex(commune.keys["a1"]), "evt", ended)
    flipped = genuine[:10] + (b"0" if genuine[10:11] != b"0" else b"1") + genuine[11:]
    forged = [
        # the old, unsealed form: what anyone with a broker password could publish
        Report("evt", "a1", ended, 0, qos=1), Report("status", "a1", death, 0, qos=1),
        # sealed with another receiver's key (a2's, read from its flash)
        commune.sealed("evt", "a1", ended, key=commune.keys["a2"]),
        commune.sealed("status", "a1", death, key=commune.keys["a2"]),
        commune.sealed("hb", "a1", messages.encode({"v": 1, "boot": 9, "conn": 9, "up": 1}),
                       key=commune.keys["a2"]),
        # one character of the MAC changed
        Report("evt", "a1", flipped, 0, qos=1),
        # a genuine event of a1 replayed as a heartbeat or a status: the MAC names the kind
        Report("hb", "a1", genuine, 0, qos=1), Report("status", "a1", genuine, 0, qos=1),
    ]
    result = commune.report(*forged)
    assert result.stats["malformed"] == len(forged)
    assert result.stats["malformed.bad-signature"] == len(forged) - 2  # 2 have no MAC line
    assert snapshot(app, "a1") == before  # still playing, no proof of play, still online
    commune.report(Report("evt", "a1", genuine, 0, qos=1))  # the receiver's own report counts
    assert snapshot(app, "a1")[2] == [(bid, "played", 21000)]


def test_a_replayed_heartbeat_keeps_no_dead_receiver_online(commune, app):
    commune.report(commune.birth("a1"))
    beat = commune.heartbeat("a1", up=30)
    commune.report(beat)
    commune.report(commune.death("a1"))  # the link died: offline
    before = snapshot(app, "a1")
    assert before[0][0] is False
    result = commune.report(beat)  # the same bytes again, by somebody who kept them
    assert result.stats["malformed.replayed"] == 1
    assert snapshot(app, "a1") == before
    # An older heartbeat of the same session is no better; a later one is the receiver.
    commune.report(commune.heartbeat("a1", up=20))
    assert snapshot(app, "a1") == before
    commune.report(commune.heartbeat("a1", up=60))
    assert snapshot(app, "a1")[0][0] is True


def test_a_replayed_heartbeat_does_not_hide_a_silent_receiver(commune, app):
    commune.report(commune.birth("a1"))
    beat = commune.heartbeat("a1", up=30)
    commune.report(beat)
    with app.state.session_factory() as session:
        seen = session.get(Receiver, "a1").last_seen
    commune.report(beat, beat)
    with app.state.session_factory() as session:
        assert session.get(Receiver, "a1").last_seen == seen
        later = datetime.now(UTC) + timedelta(seconds=app.state.settings.offline_after_s + 5)
        assert sweep_presence(session, settings=app.state.settings, now=later) == ["a1"]
        session.commit()


def test_events_replayed_after_a_counter_restart_are_refused(commune, app):
    """A birth with lower counters reads as a re-flashed board and starts a new epoch of event
    numbers; a replay of that birth must not make the old events new again."""
    bid, item = playing_broadcast(commune)
    old_birth = commune.birth("a1", boot=1, conn=1)
    ended = commune.event("a1", "ended", bid=bid, item=item, reason="finished", played=5000)
    commune.report(ended)
    commune.report(commune.birth("a1", boot=4, conn=2))
    commune.report(old_birth)  # replayed: looks like a wiped flash, a new epoch
    before = snapshot(app, "a1")
    assert before[0][6] == 1
    result = commune.report(ended)
    assert result.stats["malformed.replayed"] == 1
    assert snapshot(app, "a1") == before
    # what the board reports from now on is stored
    commune.seq["a1"] = 0
    commune.report(commune.event("a1", "fetched", item=item, sha="b" * 64))
    assert snapshot(app, "a1")[3] == before[3] + 1


@pytest.mark.parametrize("fields", [
    {"seq": 2 ** 63}, {"t": 2 ** 63}, {"seq": -1}, {"t": 1e308},
])
def test_event_numbers_out_of_bounds_are_dropped_not_raised(commune, app, fields):
    commune.report(commune.birth("a1"))
    before = snapshot(app, "a1")
    msg = dict(messages.event(1, "started", int(time.time() * 1000), {"bid": "bx"}), **fields)
    result = commune.report(commune.sealed("evt", "a1", messages.encode(msg)))
    assert result.stats["malformed.bad-field"] == 1
    assert snapshot(app, "a1") == before


def test_a_started_event_with_a_huge_schedule_time_is_logged_without_it(commune, app):
    commune.report(commune.birth("a1"))
    commune.report(commune.event("a1", "started", bid="bx", item="m1", at=2 ** 63, skip=2 ** 40))
    with app.state.session_factory() as session:
        (play,) = session.scalars(select(PlayLog).where(PlayLog.device_id == "a1"))
    assert play.scheduled_at is None and play.skip_ms is None and play.started_at is not None


@pytest.mark.parametrize("fields", [
    {"up": 2 ** 63}, {"boot": 2 ** 40}, {"dc": float("nan")}, {"rssi": 1e308},
    {"vol": 101}, {"ln": "x" * 100}, {"up": "soon"}, {"play": "../../etc"},
])
def test_heartbeats_out_of_bounds_are_dropped(commune, app, fields):
    commune.report(commune.birth("a1"))
    before = snapshot(app, "a1")
    result = commune.report(commune.heartbeat("a1", **fields))
    assert result.stats["malformed.bad-field"] == 1
    assert snapshot(app, "a1") == before


def test_only_known_heartbeat_fields_are_kept(commune, app):
    commune.report(commune.birth("a1"))
    commune.report(commune.heartbeat("a1", up=61, rssi=-70, mood="x" * 3000))
    with app.state.session_factory() as session:
        telemetry = session.get(Receiver, "a1").telemetry
    assert telemetry == {"v": 1, "boot": 1, "conn": 1, "up": 61, "rssi": -70}


def test_a_flood_of_bad_reports_is_counted_not_logged_line_by_line(commune, caplog):
    commune.report(commune.birth("a1"))
    caplog.set_level(logging.WARNING, logger="headend.mqtt.ingest")
    bad = [Report("hb", "a1", b"junk %d" % i, 0) for i in range(252)]
    total = 0
    for part in range(0, len(bad), 12):  # batches, as the MQTT service makes them
        total += commune.report(*bad[part:part + 12]).stats["malformed"]
    assert total == 252
    # at most a few lines a minute (earlier tests may have used this minute's already)
    lines = [r for r in caplog.records if r.name == "headend.mqtt.ingest"]
    assert len(lines) <= 6, [r.getMessage() for r in lines]


def test_the_log_budget_says_how_many_lines_it_held_back(caplog):
    clock = [100.0]
    budget = LogBudget(logging.getLogger("budget-test"), lines=2, per_s=60.0,
                       clock=lambda: clock[0])
    caplog.set_level(logging.WARNING, logger="budget-test")
    for i in range(50):
        budget.warning("bad-signature" if i % 2 else "malformed", "dropped %d", i)
    assert [r.getMessage() for r in caplog.records] == ["dropped 0", "dropped 1"]
    clock[0] += 61
    budget.warning("malformed", "dropped %d", 50)
    assert [r.getMessage() for r in caplog.records][2:] == [
        "... and 48 more not logged in 60 s (bad-signature: 24, malformed: 24)", "dropped 50"]
