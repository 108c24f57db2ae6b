"""Issue 14, acceptance 2: a week of telemetry for 1,000 receivers at the default 30 s period
is stored within a stated size, and the week chart reads it correctly.

20 M samples are too many for a unit test, so the fleet's last two hours are written as
raw samples (the ingest's write path, in arrival order: the whole fleet at t, then t + 30 s,
so the index fills as it does in service) on a real SQLite file; the bytes per sample measured
there (SQLite's dbstat) times a week's 20,160,000 samples is the week's size. The older days of
the week chart are hourly rows. bench/bench_telemetry.py times the same at full size
(docs/benchmarks.md); this test asserts sizes and answers, never times."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from bench.bench_telemetry import PERIOD_S, provision, table_bytes, write_raw
from headend.db import make_engine, make_session_factory, migrate
from headend.models import TelemetryHourly, TelemetryRollup
from headend.services import telemetry
from headend.settings import Settings

RECEIVERS = 1000
WEEK_SAMPLES = RECEIVERS * 7 * 86400 // PERIOD_S  # 20,160,000
# The stated sizes (docs/benchmarks.md): at most this many bytes on disk per raw sample and
# per hourly row, so a week of raw for 1,000 receivers fits in 1.0 GB and a year of hourly
# rows (400 days) in 2.2 GB.
BYTES_PER_SAMPLE = 50
BYTES_PER_HOURLY_ROW = 230

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet_db(tmp_path):
    settings = Settings(data_dir=tmp_path, mqtt_enabled=False, site_id="xa-bench")
    url = settings.resolved_database_url
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    yield settings, engine, factory, provision(factory, RECEIVERS)
    engine.dispose()


def test_a_week_for_1000_receivers_fits_the_stated_size_and_charts_right(fleet_db):
    settings, engine, factory, ids = fleet_db
    now = datetime(2026, 12, 3, 9, 0, 10, tzinfo=UTC)
    hour = 3600
    raw_start = now.replace(second=0) - timedelta(hours=2)
    samples, _ = write_raw(factory, ids, raw_start, now.replace(second=0))
    assert samples == RECEIVERS * 240
    per_sample = table_bytes(engine, "telemetry_samples") / samples
    assert per_sample <= BYTES_PER_SAMPLE
    assert WEEK_SAMPLES * per_sample <= 1.0e9

    with factory() as session:
        session.add(TelemetryRollup(id=1, done_until=telemetry.epoch_s(raw_start)))
        session.commit()
        done = telemetry.maintain(session, settings=settings, now=now)
        session.commit()
        assert done.hourly_rows == 2 * RECEIVERS
        # The rest of the week for one receiver, as hourly rows of 120 samples each.
        device = ids[500]
        first = telemetry.epoch_s(raw_start) - 7 * 24 * hour
        session.execute(insert(TelemetryHourly), [
            {"device_id": device, "hour": h, "n": 120, "rssi_min": -80, "rssi_avg": -65.0,
             "rssi_max": -50} for h in range(first, telemetry.epoch_s(raw_start), hour)])
        session.commit()
        per_hourly_row = table_bytes(engine, "telemetry_hourly") / session.scalar(
            select(func.count()).select_from(TelemetryHourly))
        assert per_hourly_row <= BYTES_PER_HOURLY_ROW
        assert RECEIVERS * 24 * settings.telemetry_hourly_days * per_hourly_row <= 2.2e9

        week = telemetry.series(session, device_id=device, since=now - timedelta(days=7),
                                until=now, step=hour, fields=["rssi", "dc"])
    rssi = week["rssi"]
    # Every hour of the week, each with its 120 samples; the last two from the raw roll-up.
    assert len(rssi) == 7 * 24 and {p.n for p in rssi} == {120}
    assert rssi[0].t == now.replace(minute=0, second=0) - timedelta(days=7)
    assert all(-85 <= p.min <= p.avg <= p.max <= -50 for p in rssi)
    assert [p.n for p in week["dc"]] == [120, 120]  # the generated hours carry no dc
    assert all(12.2 <= p.min <= p.max <= 13.8 for p in week["dc"])
