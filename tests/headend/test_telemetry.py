"""Telemetry history (headend/services/telemetry.py) on SQLite and PostgreSQL: heartbeats
through the real ingest become compact rows written in one statement per batch; the hourly
roll-up is exact and idempotent; retention deletes what is past its time and nothing else;
the charts' series and the API answer with the figures in their units."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from headend.models import TelemetryHourly, TelemetryRollup, TelemetrySample
from headend.mqtt.ingest import apply_batch
from headend.services import telemetry

# A fixed hour boundary, so buckets are predictable: 2026-12-01 00:00 UTC.
T0 = datetime(2026, 12, 1, tzinfo=UTC)


class Uptime:
    """Each receiver's uptime grows with each heartbeat, as on the board (else: a replay)."""

    def __init__(self):
        self.up = {}

    def next(self, device, by=30):
        self.up[device] = self.up.get(device, 0) + by
        return self.up[device]


def ingest(app, reports, now):
    with app.state.session_factory() as session:
        result = apply_batch(session, settings=app.state.settings, reports=reports, now=now)
        session.commit()
    return result


@pytest.fixture
def online(commune):
    commune.report(*[commune.birth(d) for d in ("a1", "a2", "a3", "b1", "b2")])
    return commune


def heartbeats(commune, uptime, devices, **fields):
    return [commune.heartbeat(d, up=uptime.next(d), **fields) for d in devices]


def samples(session, device=None):
    query = select(TelemetrySample).order_by(TelemetrySample.device_id, TelemetrySample.t)
    if device:
        query = query.where(TelemetrySample.device_id == device)
    return list(session.scalars(query))


def test_a_batch_of_heartbeats_is_stored_in_one_statement_in_small_units(online, app, session):
    uptime = Uptime()
    statements = []

    @event.listens_for(app.state.engine, "before_cursor_execute")
    def count(_conn, _cursor, statement, parameters, _context, executemany):
        if statement.startswith("INSERT INTO telemetry_samples"):
            statements.append((executemany, len(parameters)))

    batch = heartbeats(online, uptime, ["a1", "a2", "a3", "b1", "b2"], rssi=-61.4, dc=13.58,
                       mains=1, amp=1, temp=41.25, heap=84000, off=-12, err=2)
    ingest(app, batch, T0 + timedelta(seconds=5))
    event.remove(app.state.engine, "before_cursor_execute", count)
    assert statements == [(True, 5)]
    rows = samples(session)
    assert [r.device_id for r in rows] == ["a1", "a2", "a3", "b1", "b2"]
    a1 = rows[0]
    assert (a1.t, a1.rssi, a1.dc, a1.mains, a1.amp, a1.af, a1.temp, a1.heap, a1.up, a1.off,
            a1.err, a1.lost) == (int(T0.timestamp()) + 5, -61, 1358, 1, 1, None, 412, 84000,
                                 30, -12, 2, None)


def test_a_batch_that_rolls_back_leaves_no_sample_behind(online, app, session):
    uptime = Uptime()
    with app.state.session_factory() as s:
        apply_batch(s, settings=app.state.settings,
                    reports=heartbeats(online, uptime, ["a1"], rssi=-70), now=T0)
        s.rollback()
        apply_batch(s, settings=app.state.settings,
                    reports=heartbeats(online, uptime, ["a2"], rssi=-50), now=T0)
        s.commit()
    assert [(r.device_id, r.rssi) for r in samples(session)] == [("a2", -50)]


def test_a_replayed_heartbeat_adds_no_sample(online, app, session):
    uptime = Uptime()
    first = heartbeats(online, uptime, ["a1"], rssi=-60)
    ingest(app, first, T0)
    ingest(app, first, T0 + timedelta(seconds=30))  # the same bytes again: refused
    assert len(samples(session, "a1")) == 1


def fill_hours(app, online, uptime, devices, start, hours, value_of):
    """A heartbeat every 30 s for ``hours`` from ``start``: rssi = value_of(i) for the i-th."""
    for i in range(hours * 120):
        at = start + timedelta(seconds=30 * i)
        ingest(app, [online.heartbeat(d, up=uptime.next(d), rssi=value_of(i), dc=12.5)
                     for d in devices], at)


def hourly_rows(session):
    return [(h.device_id, h.hour, h.n, h.rssi_min, round(h.rssi_avg, 6), h.rssi_max, h.dc_min,
             h.dc_max, h.heap_min)
            for h in session.scalars(select(TelemetryHourly).order_by(
                TelemetryHourly.device_id, TelemetryHourly.hour))]


def test_the_hourly_roll_up_is_exact_and_idempotent(online, app, session, settings):
    uptime = Uptime()
    fill_hours(app, online, uptime, ["a1", "b1"], T0, 2, lambda i: -60 - i % 10)
    # The third hour is running: not rolled up yet.
    ingest(app, [online.heartbeat("a1", up=uptime.next("a1"), rssi=-90)],
           T0 + timedelta(hours=2, minutes=1))
    now = T0 + timedelta(hours=2, minutes=2)
    done = telemetry.maintain(session, settings=settings, now=now)
    session.commit()
    assert done.hourly_rows == 4 and done.rolled_until == int(T0.timestamp()) + 7200
    first = hourly_rows(session)
    h0 = int(T0.timestamp())
    # 120 samples an hour, rssi -60..-69 twelve times each: mean -64.5.
    assert first == [("a1", h0, 120, -69, -64.5, -60, 1250, 1250, None),
                     ("a1", h0 + 3600, 120, -69, -64.5, -60, 1250, 1250, None),
                     ("b1", h0, 120, -69, -64.5, -60, 1250, 1250, None),
                     ("b1", h0 + 3600, 120, -69, -64.5, -60, 1250, 1250, None)]
    # Nothing more until the hour is over; rolling the same hours again changes nothing.
    assert telemetry.maintain(session, settings=settings, now=now) is None
    assert telemetry.roll_up(session, since=h0, until=h0 + 7200) == 4
    session.commit()
    assert hourly_rows(session) == first
    # The next run rolls up only the hour that ended.
    done = telemetry.maintain(session, settings=settings, now=now + timedelta(hours=1))
    session.commit()
    assert (done.rolled_from, done.hourly_rows) == (h0 + 7200, 1)
    assert hourly_rows(session)[2] == ("a1", h0 + 7200, 1, -90, -90.0, -90, None, None, None)


def test_retention_deletes_raw_after_its_days_and_hourly_after_its_days(online, app, session,
                                                                          settings):
    uptime = Uptime()
    now = T0
    old_raw = now - timedelta(days=settings.telemetry_raw_days, seconds=30)
    kept_raw = now - timedelta(days=settings.telemetry_raw_days) + timedelta(seconds=30)
    for at in (old_raw, kept_raw, now - timedelta(seconds=30)):
        ingest(app, heartbeats(online, uptime, ["a1", "b2"], rssi=-70), at)
    h = int(now.timestamp()) - settings.telemetry_hourly_days * 86400
    session.add_all([TelemetryHourly(device_id="a1", hour=h - 3600, n=1),
                     TelemetryHourly(device_id="a1", hour=h, n=1),
                     TelemetryRollup(id=1, done_until=int(now.timestamp()) - 3600)])
    session.commit()
    done = telemetry.maintain(session, settings=settings, now=now)
    session.commit()
    assert (done.raw_deleted, done.hourly_deleted) == (2, 1)
    assert {r.t for r in samples(session)} == {int(kept_raw.timestamp()),
                                              int(now.timestamp()) - 30}
    hours = set(session.scalars(select(TelemetryHourly.hour)))
    # The one kept from before, and the last hour rolled up from raw now.
    assert hours == {h, int(now.timestamp()) - 3600}


def test_after_a_long_stop_only_hours_still_in_raw_are_rolled_up(online, app, session,
                                                                   settings):
    """The roll-up deletes the hourly rows it recomputes: it must never recompute an hour whose
    raw samples retention already removed (the year of aggregates would be lost)."""
    h_old = int(T0.timestamp()) - 30 * 86400
    session.add_all([TelemetryHourly(device_id="a1", hour=h_old, n=120, rssi_min=-80),
                     TelemetryRollup(id=1, done_until=h_old)])
    session.commit()
    telemetry.maintain(session, settings=settings, now=T0)
    session.commit()
    assert session.scalar(select(TelemetryHourly.rssi_min).where(
        TelemetryHourly.hour == h_old)) == -80
    # The catch-up goes a few hours per call, from the oldest raw hour still kept.
    oldest = int((T0 - timedelta(days=settings.telemetry_raw_days)).timestamp()) + 3600
    assert session.get(TelemetryRollup, 1).done_until == oldest + 6 * 3600
    for _ in range(7 * 24):
        if telemetry.maintain(session, settings=settings, now=T0) is None:
            break
    assert session.get(TelemetryRollup, 1).done_until == int(T0.timestamp())


def test_series_read_hourly_rows_then_raw_and_leave_gaps(online, app, session, settings):
    uptime = Uptime()
    fill_hours(app, online, uptime, ["a1"], T0, 3, lambda i: -50 if i < 120 else -70)
    telemetry.maintain(session, settings=settings, now=T0 + timedelta(hours=2, seconds=1))
    session.commit()
    # Hours 0 and 1 come from the hourly rows, hour 2 from raw samples; hour 3 has none.
    week = telemetry.series(session, device_id="a1", since=T0, until=T0 + timedelta(hours=4),
                            step=3600, fields=["rssi", "dc"])
    assert [(p.t, p.min, p.avg, p.max, p.n) for p in week["rssi"]] == [
        (T0, -50, -50, -50, 120), (T0 + timedelta(hours=1), -70, -70, -70, 120),
        (T0 + timedelta(hours=2), -70, -70, -70, 120)]
    assert [p.avg for p in week["dc"]] == [12.5, 12.5, 12.5]
    # A bucket of two hours mixes both sources, weighted by samples.
    wide = telemetry.series(session, device_id="a1", since=T0, until=T0 + timedelta(hours=4),
                            step=7200, fields=["rssi"])["rssi"]
    assert [(p.min, p.avg, p.max, p.n) for p in wide] == [(-70, -60, -50, 240),
                                                         (-70, -70, -70, 120)]
    # Finer than an hour: raw only, buckets of 10 minutes (20 samples).
    day = telemetry.series(session, device_id="a1", since=T0, until=T0 + timedelta(hours=1),
                           step=600, fields=["rssi", "temp"])
    assert len(day["rssi"]) == 6 and {p.n for p in day["rssi"]} == {20}
    assert day["temp"] == []  # never reported: no points, not zeros


def test_a_local_day_bucket_starts_at_local_midnight(online, app, session):
    uptime = Uptime()
    local_midnight = datetime(2026, 12, 1, 17, tzinfo=UTC)  # 00:00 in Asia/Ho_Chi_Minh
    for at in (local_midnight - timedelta(minutes=1), local_midnight + timedelta(minutes=1)):
        ingest(app, heartbeats(online, uptime, ["a1"], rssi=-60), at)
    points = telemetry.series(session, device_id="a1", since=T0, until=T0 + timedelta(days=2),
                              step=86400, fields=["rssi"], align_s=7 * 3600)["rssi"]
    assert [(p.t, p.n) for p in points] == [(local_midnight - timedelta(days=1), 1),
                                            (local_midnight, 1)]


def test_the_telemetry_api(online, app, client, as_operator):
    uptime = Uptime()
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(4):
        ingest(app, heartbeats(online, uptime, ["a1"], rssi=-60 - i, dc=12.0 + i),
               now - timedelta(minutes=30 - 5 * i))
    since = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    r = client.get("/api/v1/devices/a1/telemetry", headers=as_operator,
                   params={"field": "rssi,dc", "since": since, "step": 3600})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["fields"]) == {"rssi", "dc"} and body["step"] == 3600
    assert body["fields"]["dc"]["unit"] == "V"
    points = [p for f in ("rssi", "dc") for p in body["fields"][f]["points"]]
    assert sum(p["n"] for p in body["fields"]["rssi"]["points"]) == 4
    assert min(p["min"] for p in points if p in body["fields"]["dc"]["points"]) == 12.0
    r = client.get("/api/v1/devices/a1/telemetry", headers=as_operator)  # defaults: all, a day
    assert r.status_code == 200 and set(r.json()["fields"]) == set(telemetry.FIELD_NAMES)
    assert sum(p["n"] for p in r.json()["fields"]["rssi"]["points"]) == 4


@pytest.mark.parametrize("params, code", [
    ({"field": "volts"}, "unknown-field"),
    ({"step": 5}, "bad-step"),
    ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "bad-range"),
    ({"since": "2025-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z", "step": 60},
     "too-many-points"),
])
def test_the_telemetry_api_refuses_bad_queries_clearly(online, client, as_operator, params,
                                                       code):
    r = client.get("/api/v1/devices/a1/telemetry", headers=as_operator, params=params)
    assert r.status_code == 422 and r.json()["code"] == code, r.text
    assert r.json()["message_vi"]


def test_the_telemetry_api_needs_a_known_receiver_and_a_login(online, client, as_operator):
    assert client.get("/api/v1/devices/zz/telemetry", headers=as_operator).status_code == 404
    assert client.get("/api/v1/devices/a1/telemetry").status_code == 401


def test_deleting_a_receiver_deletes_its_history(online, app, session):
    uptime = Uptime()
    ingest(app, heartbeats(online, uptime, ["a1", "a2"], rssi=-60), T0)
    from headend.models import Receiver

    session.delete(session.get(Receiver, "a1"))
    session.commit()
    assert {r.device_id for r in samples(session)} == {"a2"}
    assert session.scalar(select(func.count()).select_from(TelemetrySample)) == 1


def test_the_mqtt_services_presence_sweep_rolls_up_and_applies_retention(online, app, session,
                                                                         settings):
    """The one call in MqttService._sweep: hours that ended are rolled up, old samples go."""
    from headend.mqtt.service import MqttService

    uptime = Uptime()
    now = datetime.now(UTC)
    ingest(app, heartbeats(online, uptime, ["a1"], rssi=-60), now - timedelta(hours=2))
    ingest(app, heartbeats(online, uptime, ["a1"], rssi=-61), now - timedelta(days=8))
    service = MqttService(settings=settings, session_factory=app.state.session_factory)
    for _ in range(7 * 24 // telemetry.ROLL_UP_HOURS_PER_RUN + 1):  # the catch-up, in steps
        service._sweep()
    session.expire_all()
    assert [(r.rssi, r.device_id) for r in samples(session)] == [(-60, "a1")]
    assert session.scalar(select(TelemetryHourly.rssi_max)) == -60
