"""What the alert engine adds to the ingest: ``alerts.evaluate`` for one batch, steady state.

A temp SQLite file gets ``--receivers`` receivers (default 1,000) online with a heartbeat of
their session; some (``--open``, default 5 %) have an open alert. The MQTT service calls
``evaluate`` after each committed batch with the batch's receivers: at 1,000 receivers and a
30 s heartbeat that is ~33 a second, whatever the batch size. Prints the median time of one
call for batches of 1, 33, 500 and all receivers when nothing changes (reads only, no commit),
and of a call that raises and then clears one alert per receiver of a 33-batch (with commit).

    PYTHONPATH=. .venv/bin/python bench/bench_alerts.py
"""

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from headend.db import make_engine, make_session_factory, migrate
from headend.models import Alert, Receiver, Site
from headend.services import alerts
from headend.settings import Settings

SITE = "xa-bench"


def telemetry(mains=1):
    return {"v": 1, "boot": 1, "conn": 1, "up": 3600, "heap": 80000, "cu": 1000, "mains": mains,
            "dc": 13.6, "rssi": -60, "sy": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--open", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), site_id=SITE)
        migrate(settings.resolved_database_url)
        engine = make_engine(settings.resolved_database_url)
        factory = make_session_factory(engine)
        ids = ["rx-%04d" % i for i in range(args.receivers)]
        now = datetime.now(UTC)
        with factory() as session:
            session.add(Site(id=SITE, name=SITE))
            session.flush()
            session.execute(insert(Receiver), [
                {"id": d, "site_id": SITE, "name": d, "device_key": "0" * 64, "mqtt_user": d,
                 "mqtt_password_hash": "-", "online": True, "event_epoch": 0,
                 "session_boot": 1, "session_conn": 1, "telemetry": telemetry(),
                 "capabilities": {"cache_total": 100000}} for d in ids])
            step = max(1, int(1 / args.open)) if args.open else 0
            session.execute(insert(Alert), [
                {"device_id": d, "kind": "low-signal", "severity": "warning", "raised_at": now,
                 "repeats": 0, "detail": {"rssi": -70}} for d in ids[::step]] if step else [])
            session.commit()
        for size in (1, 33, 500, len(ids)):
            times = []
            for i in range(args.repeat):
                batch = [ids[(i * size + j) % len(ids)] for j in range(size)]
                with factory() as session:
                    began = time.perf_counter()
                    alerts.evaluate(session, settings=settings, device_ids=batch, now=now)
                    times.append(time.perf_counter() - began)
            print("evaluate, nothing changes, batch of %4d: %6.2f ms (median of %d)"
                  % (size, statistics.median(times) * 1000, args.repeat))
        batch = ids[-33:]
        times = []
        for i in range(args.repeat):
            mains = i % 2  # on battery, then back
            with factory() as session:
                for receiver in session.query(Receiver).filter(Receiver.id.in_(batch)):
                    receiver.telemetry = telemetry(mains=mains)
                session.commit()
                began = time.perf_counter()
                alerts.evaluate(session, settings=settings, device_ids=batch, now=now)
                session.commit()
                times.append(time.perf_counter() - began)
        print("evaluate + commit, 33 alerts raised or cleared:  %6.2f ms (median of %d)"
              % (statistics.median(times) * 1000, args.repeat))
        engine.dispose()


if __name__ == "__main__":
    main()
