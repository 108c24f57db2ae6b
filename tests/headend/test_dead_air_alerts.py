"""Dead air on a relay as an operator alert, through the real hook (``dead_air_event``) and the
live service's worker, on the real database (SQLite and PostgreSQL); notices go to a real
local webhook. The relay itself (a real station killed and stalled) is
tests/headend/test_live_relay.py."""

from datetime import UTC, datetime, timedelta

import pytest
from alert_sinks import Webhook
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from headend.live.dead_air_alerts import DeadAirAlerts
from headend.live.deadair import LOST, DeadAirEvent, dead_air_event
from headend.models import Alert, AlertNotice
from headend.services import alert_delivery, alerts

URL = "http://radio.example/vov1.mp3"


def event(dead=True, live_id="L1", **more):
    return DeadAirEvent(live_id, URL, dead, LOST, "Connection refused", "notice",
                        1_700_000_000_000, ["a1", "b1"], targets={"zones": ["thon-1"]},
                        since_ms=1_700_000_000_000, **more)


@pytest.fixture
def webhook(settings):
    hook = Webhook()
    settings.alert_webhook_url = hook.url
    settings.alert_quiet_start, settings.alert_quiet_end = "00:00", "23:59"  # quiet all day
    yield hook
    hook.close()


@pytest.fixture
def hooked(app):
    woken = []
    service = DeadAirAlerts(settings=app.state.settings,
                            session_factory=app.state.session_factory,
                            owns=lambda live_id: live_id.startswith("L"),
                            wake=lambda: woken.append(1))
    service.woken = woken
    yield service
    service.close()


def of_subject(app, subject="live:L1"):
    with app.state.session_factory() as session:
        return list(session.scalars(select(Alert).where(Alert.subject == subject)
                                    .order_by(Alert.id)))


def notices(app):
    with app.state.session_factory() as session:
        return [(n.event, n.state) for n in session.scalars(
            select(AlertNotice).order_by(AlertNotice.id))]


def test_dead_air_raises_once_clears_once_and_notifies(app, commune, webhook, hooked):
    dead_air_event(event())
    dead_air_event(event())  # the same episode said twice: still one alert
    dead_air_event(event(live_id="X9"))  # another service's session: not ours
    hooked.flush()
    [alert] = of_subject(app)
    assert alert.device_id is None and alert.cleared_at is None
    assert (alert.kind, alert.reason, alert.severity) == ("dead-air", LOST, "critical")
    assert alert.detail["villages"] == ["Thon-1", "Thon-2"] and alert.detail["url"] == URL
    assert of_subject(app, "live:X9") == []
    assert notices(app) == [("raised", "pending")] and hooked.woken
    # Urgent: it goes out in the quiet hours (receivers' warnings would wait).
    assert alert_delivery.deliver_due(app.state.session_factory,
                                      settings=app.state.settings) == 1

    dead_air_event(event(dead=False))
    dead_air_event(event(dead=False))  # over once
    hooked.flush()
    [alert] = of_subject(app)
    assert alert.cleared_at is not None
    assert alert_delivery.deliver_due(app.state.session_factory,
                                      settings=app.state.settings) == 1
    assert notices(app) == [("raised", "sent"), ("cleared", "sent")]
    raised, cleared = webhook.bodies()
    assert raised["alert"]["subject"] == "live:L1" and raised["alert"]["device_id"] is None
    assert raised["text_vi"].startswith("Cảnh báo: Mất tín hiệu tiếp sóng: nguồn mất kết nối")
    assert URL in raised["text_vi"] and "Thôn: Thon-1, Thon-2" in raised["text_vi"]
    assert "Relay dead air" in raised["text_en"] and "Connection refused" in raised["text_en"]
    assert cleared["text_vi"].startswith("Tiếp sóng có tín hiệu trở lại")

    # The next episode is a new alert; a session ending in dead air clears it too.
    dead_air_event(event())
    dead_air_event(event(dead=False, ended=True))
    hooked.flush()
    assert [a.cleared_at is not None for a in of_subject(app)] == [True, True]
    assert of_subject(app)[1].detail["ended"] is True


def test_one_open_alert_per_subject_and_kind_is_kept_by_the_database(app):
    now = datetime.now(UTC)
    with app.state.session_factory() as session:
        for subject in ("live:A", "live:B"):
            session.add(Alert(subject=subject, kind="dead-air", severity="critical",
                              raised_at=now, repeats=0))
        session.add(Alert(subject="live:A", kind="dead-air", severity="critical",
                          raised_at=now - timedelta(hours=1), cleared_at=now, repeats=0))
        session.commit()
        session.add(Alert(subject="live:A", kind="dead-air", severity="critical",
                          raised_at=now, repeats=0))
        with pytest.raises(IntegrityError):
            session.commit()


def test_a_failing_write_is_logged_never_raised(app, hooked, monkeypatch, caplog):
    def broken(*_, **__):
        raise RuntimeError("database gone")

    monkeypatch.setattr(alerts, "dead_air", broken)
    dead_air_event(event())  # returns: the relay goes on
    hooked.flush()
    assert "dead-air alert of relay L1 not written" in caplog.text


def test_the_api_shows_the_relay_and_its_villages(app, client, commune, hooked, as_admin):
    dead_air_event(event())
    hooked.flush()
    r = client.get("/api/v1/alerts", params={"open": True}, headers=as_admin)
    assert r.status_code == 200, r.text
    [shown] = r.json()
    assert (shown["subject"], shown["device_id"], shown["kind"]) == (
        "live:L1", None, "dead-air")
    assert shown["detail"]["villages"] == ["Thon-1", "Thon-2"]  # targeted, and b1's
    assert shown["title_vi"] == "Mất tín hiệu tiếp sóng: nguồn mất kết nối"
