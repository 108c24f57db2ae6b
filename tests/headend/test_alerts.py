"""The alert engine on the real database (SQLite and PostgreSQL): receivers' reports go
through the ingest as the MQTT service applies them, then ``alerts.evaluate`` as the service
calls it after each batch; notices go to a real local webhook (http.server on 127.0.0.1)."""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from alert_sinks import Webhook
from conftest import login
from pydantic import SecretStr
from sqlalchemy import select

from headend.models import AlertNotice, AuditEntry
from headend.mqtt.ingest import apply_batch, sweep_presence
from headend.services import alert_delivery, alerts


def evaluate(app, *reports, now=None):
    """Apply ``reports`` and judge their receivers, as MqttService._apply does."""
    settings = app.state.settings
    now = now or datetime.now(UTC)
    with app.state.session_factory() as session:
        apply_batch(session, settings=settings, reports=list(reports), now=now)
        session.commit()
        result = alerts.evaluate(session, settings=settings,
                                 device_ids={r.device_id for r in reports}, now=now)
        session.commit()
    return result


def open_kinds(app, device):
    with app.state.session_factory() as session:
        return {(a.kind, a.reason) for a in alerts.open_alerts(session, device_id=device)}


def notices(app):
    with app.state.session_factory() as session:
        return [(n.event, n.channel, n.state) for n in session.scalars(
            select(AlertNotice).order_by(AlertNotice.id))]


@pytest.fixture
def with_webhook(settings):
    settings.alert_webhook_url = "http://127.0.0.1:9/none"  # set per test when one listens
    settings.alert_quiet_start = settings.alert_quiet_end = "00:00"
    return settings


def test_on_battery_is_raised_once_and_cleared(app, commune):
    evaluate(app, commune.birth("a1"))
    assert open_kinds(app, "a1") == set()
    first = evaluate(app, commune.heartbeat("a1", up=60, mains=0, dc=12.6))
    again = evaluate(app, commune.heartbeat("a1", up=90, mains=0, dc=12.4))
    assert [a.kind for a in first.raised] == ["on-battery"] and not again.raised
    assert open_kinds(app, "a1") == {("on-battery", None)}
    over = evaluate(app, commune.heartbeat("a1", up=120, mains=1, dc=13.6))
    assert [a.kind for a in over.cleared] == ["on-battery"]
    assert open_kinds(app, "a1") == set()
    # Once more on battery: a new alert, the old one stays over.
    evaluate(app, commune.heartbeat("a1", up=150, mains=0, dc=12.6))
    with app.state.session_factory() as session:
        history = alerts.list_alerts(session, device_id="a1")
    assert [(a.kind, a.cleared_at is None) for a in history] == [("on-battery", True),
                                                                  ("on-battery", False)]


def test_power_lost_when_the_battery_drained_before_the_silence(app, commune):
    evaluate(app, commune.birth("a1"), commune.birth("a2"))
    evaluate(app, commune.heartbeat("a1", up=60, mains=0, dc=12.6),
             commune.heartbeat("a2", up=60, mains=1, dc=13.6))
    evaluate(app, commune.heartbeat("a1", up=90, mains=0, dc=11.9))
    settings = app.state.settings
    later = datetime.now(UTC) + timedelta(seconds=settings.offline_after_s + 5)
    with app.state.session_factory() as session:
        silent = sweep_presence(session, settings=settings, now=later)
        session.commit()
        alerts.evaluate(session, settings=settings, device_ids=silent, now=later)
        session.commit()
    assert sorted(silent) == ["a1", "a2"]
    assert open_kinds(app, "a1") == {("on-battery", None), ("offline", "power-lost")}
    assert open_kinds(app, "a2") == {("offline", "link-lost")}
    # Back: offline is over at the birth; on battery only once a heartbeat of this boot says.
    evaluate(app, commune.birth("a1", boot=2))
    assert open_kinds(app, "a1") == {("on-battery", None)}
    evaluate(app, commune.heartbeat("a1", boot=2, up=30, mains=1, dc=13.6))
    assert open_kinds(app, "a1") == set()


def test_a_death_is_link_lost_and_a_reboot_command_is_rebooting(app, commune):
    evaluate(app, commune.birth("a1"), commune.birth("a2"),
             commune.heartbeat("a1", up=60, mains=1), commune.heartbeat("a2", up=60, mains=1))
    with app.state.session_factory() as session:
        session.add(AuditEntry(username="technician", action="device.command", target="a2",
                               detail={"kind": "reboot", "args": {}, "cmd": "rebo-1"}))
        session.commit()
    result = evaluate(app, commune.death("a1"), commune.death("a2"))
    assert {(a.device_id, a.reason, a.severity) for a in result.raised} == {
        ("a1", "link-lost", "critical"), ("a2", "rebooting", "info")}
    result = evaluate(app, commune.birth("a2", boot=2))
    assert [(a.device_id, a.kind) for a in result.cleared] == [("a2", "offline")]


def test_telemetry_of_an_old_session_changes_nothing(app, commune):
    evaluate(app, commune.birth("a1"), commune.heartbeat("a1", up=60, af=1))
    assert open_kinds(app, "a1") == {("amp-fault", None)}
    evaluate(app, commune.birth("a1", boot=2))  # rebooted: no heartbeat of boot 2 yet
    assert open_kinds(app, "a1") == {("amp-fault", None)}
    evaluate(app, commune.heartbeat("a1", boot=2, up=30))
    assert open_kinds(app, "a1") == set()


@pytest.fixture
def webhook(with_webhook):
    hook = Webhook()
    with_webhook.alert_webhook_url = hook.url
    yield hook
    hook.close()


def deliver(app, now=None):
    return alert_delivery.deliver_due(app.state.session_factory, settings=app.state.settings,
                                      now=now)


def test_webhook_gets_each_notice_once_signed(app, commune, webhook):
    app.state.settings.alert_webhook_secret = SecretStr("s3cret")
    evaluate(app, commune.birth("a1"), commune.heartbeat("a1", up=60, mains=0, dc=12.5))
    assert deliver(app) == 1
    assert deliver(app) == 0  # nothing twice
    evaluate(app, commune.heartbeat("a1", up=90, mains=1, dc=13.6))
    assert deliver(app) == 1
    raised, cleared = webhook.bodies()
    assert (raised["event"], raised["alert"]["kind"], raised["alert"]["open"]) == \
        ("raised", "on-battery", True)
    assert raised["alert"]["title_vi"] == "Đang chạy bằng ắc quy"
    assert raised["text_vi"].startswith("Cảnh báo: Đang chạy bằng ắc quy")
    assert "On battery" in raised["text_en"]
    assert (cleared["event"], cleared["alert"]["open"]) == ("cleared", False)
    headers, body = webhook.posts[0]
    stamp = headers["X-Loaxa-Timestamp"]
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Loaxa-Signature"] == "sha256=" + expected


def test_an_alert_over_before_its_notice_is_never_sent(app, commune, webhook):
    settings = app.state.settings
    settings.alert_quiet_start, settings.alert_quiet_end = "00:00", "23:59"  # quiet all day
    evaluate(app, commune.birth("a1"), commune.heartbeat("a1", up=60, mains=0, dc=12.5))
    assert deliver(app) == 0  # held until the quiet hours end
    evaluate(app, commune.heartbeat("a1", up=90, mains=1, dc=13.6))
    assert notices(app) == [("raised", "webhook", "dropped")]  # and no "over" either
    assert deliver(app, now=datetime.now(UTC) + timedelta(days=1)) == 0
    assert webhook.posts == []


def test_a_failed_post_is_retried_later(app, commune, webhook):
    webhook.status = 500
    evaluate(app, commune.birth("a1"), commune.heartbeat("a1", up=60, af=1))
    assert deliver(app) == 0
    with app.state.session_factory() as session:
        (notice,) = session.scalars(select(AlertNotice))
        assert (notice.state, notice.attempts, notice.error) == ("pending", 1,
                                                                 "webhook answered 500")
    webhook.status = 204
    assert deliver(app) == 0  # not yet due again
    assert deliver(app, now=datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert len(webhook.posts) == 2


def test_an_open_alert_is_notified_again_after_the_repeat_interval(app, commune, webhook):
    evaluate(app, commune.birth("a1"), commune.heartbeat("a1", up=60, af=1))
    assert deliver(app) == 1
    assert deliver(app, now=datetime.now(UTC) + timedelta(hours=11)) == 0
    assert deliver(app, now=datetime.now(UTC) + timedelta(hours=12, seconds=5)) == 1
    assert [b["event"] for b in webhook.bodies()] == ["raised", "repeat"]
    assert webhook.bodies()[1]["alert"]["repeats"] == 1
    app.state.settings.alert_repeat_h = 0  # never
    assert deliver(app, now=datetime.now(UTC) + timedelta(days=3)) == 0


def test_no_channel_no_notices(app, commune):
    evaluate(app, commune.birth("a1"), commune.heartbeat("a1", up=60, af=1))
    assert open_kinds(app, "a1") == {("amp-fault", None)}
    assert notices(app) == []


def test_alerts_api_filters_and_roles(app, client, commune, users):
    evaluate(app, commune.birth("a1"), commune.birth("b1"),
             commune.heartbeat("a1", up=60, af=1), commune.heartbeat("b1", up=60, mains=0))
    evaluate(app, commune.heartbeat("a1", up=90))  # the fault is over
    viewer = login(client, "viewer")
    r = client.get("/api/v1/alerts", headers=viewer)
    assert r.status_code == 200, r.text
    assert [(a["device_id"], a["kind"], a["open"]) for a in r.json()] == [
        ("b1", "on-battery", True), ("a1", "amp-fault", False)]  # newest first
    opened = client.get("/api/v1/alerts", params={"open": "true"}, headers=viewer).json()
    assert [(a["device_id"], a["title_en"], a["zone"]) for a in opened] == [
        ("b1", "On battery", "thon-2")]
    mine = client.get("/api/v1/alerts", params={"device": "a1"}, headers=viewer).json()
    assert [a["kind"] for a in mine] == ["amp-fault"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert [a["device_id"] for a in client.get(
        "/api/v1/alerts", params={"since": future}, headers=viewer).json()] == ["b1"]
    r = client.get("/api/v1/alerts", params={"since": "2026-12-03T10:00:00"}, headers=viewer)
    assert r.status_code == 422 and r.json()["code"] == "naive-time"
    assert client.get("/api/v1/alerts").status_code == 401


def test_after_a_start_silence_counts_only_once_receivers_had_time_to_report(app, commune):
    """A head-end that was down finds every receiver's "last seen" old: its first sweeps mark
    them offline, but only those still offline after the grace get an alert."""
    import time

    from sqlalchemy import update

    from headend.models import Receiver
    from headend.mqtt.service import MqttService

    evaluate(app, commune.birth("a1"), commune.birth("a2"),
             commune.heartbeat("a1", up=60), commune.heartbeat("a2", up=60))
    with app.state.session_factory() as session:  # the head-end was down for an hour
        session.execute(update(Receiver).where(Receiver.id.in_(["a1", "a2"])).values(
            last_seen=datetime.now(UTC) - timedelta(hours=1)))
        session.commit()
    service = MqttService(settings=app.state.settings,
                          session_factory=app.state.session_factory)
    service._alerts_from = time.monotonic() + 60  # as start() sets it
    service._sweep()
    assert service.stats["silent"] == 2
    assert open_kinds(app, "a1") == open_kinds(app, "a2") == set()
    evaluate(app, commune.heartbeat("a2", up=3660, sy=1))  # a2 reports: it was alive all along
    service._alerts_from = time.monotonic() - 1  # the grace is over
    service._sweep()
    assert open_kinds(app, "a1") == {("offline", "link-lost")}
    assert open_kinds(app, "a2") == set()
    assert open_kinds(app, "a3") == set()  # never heard: not installed yet, no alert
    service._sweep()  # once only: later sweeps judge what they find silent
    assert service._alerts_from is None


def test_a_failed_alert_check_never_reaches_the_ingest_and_is_tried_again(app, commune,
                                                                         monkeypatch):
    from headend.mqtt.service import MqttService

    service = MqttService(settings=app.state.settings,
                          session_factory=app.state.session_factory)
    broken = alerts.evaluate

    def failing(*args, **kwargs):
        raise RuntimeError("database went away")

    evaluate(app, commune.birth("a1"))
    monkeypatch.setattr(alerts, "evaluate", failing)
    service._apply([commune.heartbeat("a1", up=60, af=1)])  # no exception out of the ingest
    assert service.stats["alert_error"] == 1 and service._alerts_retry == {"a1"}
    assert open_kinds(app, "a1") == set()
    monkeypatch.setattr(alerts, "evaluate", broken)
    service._sweep()  # a1 is not silent: judged again because the last try failed
    assert open_kinds(app, "a1") == {("amp-fault", None)}
    assert service._alerts_retry == set()
