"""Telemetry history at fleet scale (issue 14, acceptance 2): size on disk and chart speed.

A temp SQLite file gets ``--receivers`` receivers (default 1,000) and their heartbeats at the
default 30 s period through the ingest's own write path (``telemetry.record`` then one
executemany per commit of 5,000, in arrival order: every receiver at t, then t + 30 s):
``--raw-days`` of raw samples (default 1: a week is 7 times it, stated by extrapolation) and
``--hourly-days`` of hourly aggregates before them, rolled up from raw by ``maintain`` for the
raw days and generated for the older ones. It prints the file size, bytes per sample and per
hourly row, the week's size extrapolated, the roll-up time of one hour of the whole fleet,
and the time of the receiver page's week chart query (``telemetry.series`` over 7 days, step
1 h, every field) and of the whole page over HTTP (median of ``--repeat``).

    PYTHONPATH=. .venv/bin/python bench/bench_telemetry.py
    PYTHONPATH=. .venv/bin/python bench/bench_telemetry.py --receivers 1000 --raw-days 7
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text

from headend.db import make_engine, make_session_factory, migrate
from headend.models import Receiver, Site, TelemetryHourly, TelemetryRollup, TelemetrySample
from headend.services import telemetry
from headend.settings import Settings

PERIOD_S = 30
BATCH = 5000
SITE = "xa-bench"


def heartbeat(rng: random.Random, up: int) -> dict:
    """Figures as a receiver on a pole reports them (the ingest's checked dict)."""
    return {"v": 1, "boot": 1, "conn": 1, "up": up, "heap": rng.randint(60_000, 90_000),
            "off": rng.randint(-40, 40), "amp": 1, "mains": 1 if rng.random() > 0.01 else 0,
            "dc": round(rng.uniform(12.2, 13.8), 2), "ln": "wifi",
            "rssi": rng.randint(-85, -50), "temp": round(rng.uniform(30, 55), 1),
            "err": rng.randint(0, 3)}


def provision(factory, receivers: int) -> list[str]:
    ids = ["rx-%04d" % i for i in range(receivers)]
    with factory() as session:
        session.add(Site(id=SITE, name=SITE))
        session.flush()
        session.execute(insert(Receiver), [
            {"id": d, "site_id": SITE, "name": d, "device_key": "0" * 64, "mqtt_user": d,
             "mqtt_password_hash": "-", "online": True, "event_epoch": 0} for d in ids])
        session.commit()
    return ids


def write_raw(factory, ids: list[str], start: datetime, end: datetime) -> tuple[int, float]:
    rng = random.Random(14)
    rows = 0
    began = time.perf_counter()
    session = factory()
    at = start
    up = 0
    while at < end:
        up += PERIOD_S
        for device_id in ids:
            telemetry.record(session, device_id=device_id, at=at, telemetry=heartbeat(rng, up))
            rows += 1
            if rows % BATCH == 0:
                session.commit()
        at += timedelta(seconds=PERIOD_S)
    session.commit()
    session.close()
    return rows, time.perf_counter() - began


def write_hourly(factory, ids: list[str], start: datetime, end: datetime) -> int:
    """Hourly rows as the roll-up makes them, for hours whose raw samples are gone."""
    rng = random.Random(15)
    rows = 0
    hour = telemetry.epoch_s(start)
    stop = telemetry.epoch_s(end)
    with factory() as session:
        pending = []
        while hour < stop:
            for device_id in ids:
                row = {"device_id": device_id, "hour": hour, "n": 120}
                for f in telemetry.FIELDS:
                    if f.name == "lost":
                        row.update(lost_min=None, lost_avg=None, lost_max=None)
                        continue
                    sample = heartbeat(rng, hour % 10_000_000).get(f.name, 0)
                    low = int(round(sample * f.scale))
                    row.update({f.name + "_min": low, f.name + "_avg": low + rng.random(),
                                f.name + "_max": low + rng.randint(0, 5)})
                pending.append(row)
                rows += 1
            if len(pending) >= BATCH:
                session.execute(insert(TelemetryHourly), pending)
                pending = []
            hour += 3600
        if pending:
            session.execute(insert(TelemetryHourly), pending)
        session.commit()
    return rows


def file_bytes(engine, path: Path) -> int:
    with engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    return path.stat().st_size


def table_bytes(engine, table: str) -> int | None:
    """Bytes of a table's pages (SQLite's dbstat, when compiled in)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT sum(pgsize) FROM dbstat WHERE name = :t"),
                                {"t": table}).scalar()
    except Exception:
        return None


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def page_time(settings: Settings, device_id: str, repeat: int) -> float | None:
    """The receiver page with its week charts, over HTTP (FastAPI's TestClient)."""
    from fastapi.testclient import TestClient

    from headend.app import create_app
    from headend.services.users import create_user

    app = create_app(settings)
    with app.state.session_factory() as session:
        create_user(session, username="bench", password="bench-password-1", role="viewer")
    with TestClient(app) as client:
        token = client.post("/api/v1/auth/token", data={
            "username": "bench", "password": "bench-password-1"}).json()["access_token"]
        client.cookies.set("loaxa_token", token)
        page = client.get("/receivers/%s?span=week" % device_id)
        if page.status_code != 200:
            print("receiver page: HTTP %d" % page.status_code)
            return None
        return timed(lambda: client.get("/receivers/%s?span=week" % device_id), repeat)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--raw-days", type=float, default=1.0)
    parser.add_argument("--hourly-days", type=float, default=6.0,
                        help="days of hourly aggregates before the raw ones")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", help="folder to keep the SQLite file in")
    args = parser.parse_args(argv)

    folder = Path(args.keep or tempfile.mkdtemp(prefix="loaxa-bench-telemetry-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "headend.sqlite3"
    path.unlink(missing_ok=True)
    settings = Settings(data_dir=folder, mqtt_enabled=False, site_id=SITE)
    url = settings.resolved_database_url
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    ids = provision(factory, args.receivers)
    base = file_bytes(engine, path)

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    raw_start = now - timedelta(days=args.raw_days)
    hourly_start = raw_start - timedelta(days=args.hourly_days)
    samples, write_s = write_raw(factory, ids, raw_start, now)
    after_raw = file_bytes(engine, path)
    raw_table = table_bytes(engine, "telemetry_samples")

    # Roll up every complete hour of the raw days (a catch-up), then time one hour alone.
    with factory() as session:
        session.add(TelemetryRollup(id=1, done_until=telemetry.epoch_s(raw_start)))
        session.commit()
        began = time.perf_counter()
        while telemetry.maintain(session, settings=settings, now=now - timedelta(hours=1)):
            session.commit()
        catch_up_s = time.perf_counter() - began
        began = time.perf_counter()
        done = telemetry.maintain(session, settings=settings, now=now + timedelta(seconds=1))
        session.commit()
        one_hour_s = time.perf_counter() - began
        idle_s = timed(lambda: telemetry.maintain(session, settings=settings,
                                                  now=now + timedelta(seconds=2)), 5)
        rolled = session.scalar(select(func.count()).select_from(TelemetryHourly))
    hourly_written = write_hourly(factory, ids, hourly_start, raw_start)
    after_hourly = file_bytes(engine, path)
    hourly_table = table_bytes(engine, "telemetry_hourly")
    hourly_rows = rolled + hourly_written

    device = ids[len(ids) // 2]
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(TelemetrySample).where(
            TelemetrySample.device_id == device)) == samples // len(ids)

        def week_chart():
            return telemetry.series(session, device_id=device, since=now - timedelta(days=7),
                                    until=now, step=3600, align_s=7 * 3600)

        points = week_chart()
        chart_s = timed(week_chart, args.repeat)
    page_s = page_time(settings, device, max(3, args.repeat // 4))

    raw_bytes = raw_table or (after_raw - base)
    per_sample = raw_bytes / samples
    per_hour_row = (hourly_table or (after_hourly - after_raw)) / hourly_rows
    week_samples = args.receivers * 7 * 86400 // PERIOD_S
    year_hours = args.receivers * 24 * Settings().telemetry_hourly_days
    print("command: %s" % " ".join([Path(sys.executable).name] + sys.argv))
    print("receivers %d, period %d s, raw %.2f days (%d samples), hourly %.1f days before "
          "them (%d rows incl. %d rolled up)" % (args.receivers, PERIOD_S, args.raw_days,
                                                 samples, args.hourly_days, hourly_rows,
                                                 rolled))
    print("write: %.0f samples/s through telemetry.record + commit of %d" %
          (samples / write_s, BATCH))
    print("raw: %.1f bytes/sample (%s)" % (per_sample, "dbstat" if raw_table else "file delta"))
    print("hourly: %.1f bytes/row (%s)" % (per_hour_row,
                                           "dbstat" if hourly_table else "file delta"))
    print("file: %.1f MB" % (after_hourly / 1e6))
    print("a week of raw for %d receivers: %d samples -> %.2f GB" %
          (args.receivers, week_samples, week_samples * per_sample / 1e9))
    print("a year (%d days) of hourly rows: %d rows -> %.2f GB" %
          (Settings().telemetry_hourly_days, year_hours, year_hours * per_hour_row / 1e9))
    print("roll-up: catch-up of %d h %.2f s; one hour of the fleet %.3f s (%d rows); "
          "between hours %.2f ms" % (args.raw_days * 24 - 1, catch_up_s, one_hour_s,
                                     done.hourly_rows if done else 0, idle_s * 1000))
    print("week chart query (7 days, step 1 h, %d fields, %d points each): %.1f ms median of %d"
          % (len(points), len(points["rssi"]), chart_s * 1000, args.repeat))
    if page_s is not None:
        print("receiver page, week range, over HTTP: %.1f ms median" % (page_s * 1000))
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
