"""What keeping commands in counter order costs (headend/commands.py's Sequencer): in one
process, on a SQLite file, sign one command for each of N receivers (``prepare``), commit,
and publish to a RecordingPublisher, ROUNDS times; prints the median and worst of each step.

    .venv/bin/python bench/bench_command_order.py --receivers 1000 --rounds 20

Runs unchanged on a head-end without the sequencer, for the before/after figures of
docs/notes/command-order.md.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.orm import Session  # noqa: E402

from headend import commands  # noqa: E402
from headend.commands import Command, RecordingPublisher, prepare  # noqa: E402
from headend.db import make_engine, make_session_factory, migrate  # noqa: E402
from headend.services.provisioning import provision_fleet  # noqa: E402
from headend.settings import Settings  # noqa: E402


def sequencer_only(outgoing, rounds: int) -> list[float]:
    """The sequencer's own bookkeeping for one batch: register, commit, publish (no-op send),
    without the database around it."""
    times = []
    for _ in range(rounds):
        with Session() as session:  # unbound: only its info and transaction events are used
            t0 = time.perf_counter()
            commands.SEQUENCER.register(session, outgoing)
            session.commit()
            commands.SEQUENCER.publish(outgoing, lambda _m: None)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), site_id="xa-bench", mqtt_enabled=False)
        url = settings.resolved_database_url
        migrate(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        with factory() as session:
            fleet = provision_fleet(session, settings=settings, receivers=args.receivers,
                                    zones=[("thon-1", "Thôn 1")])
        devices = [d["id"] for d in fleet["devices"]]
        publisher = RecordingPublisher()
        signing, publishing = [], []
        for _ in range(args.rounds):
            batch = [Command(d, "stop", {}) for d in devices]
            t0 = time.perf_counter()
            with factory() as session:
                out = prepare(session, site_id=settings.site_id, commands=batch, ttl_s=60)
                session.commit()
            t1 = time.perf_counter()
            publisher.publish_many(out)
            t2 = time.perf_counter()
            signing.append((t1 - t0) * 1000)
            publishing.append((t2 - t1) * 1000)
        engine.dispose()
    assert len(publisher.sent) == args.rounds * len(devices)
    rows = [("prepare+commit", signing), ("publish", publishing)]
    if hasattr(commands, "SEQUENCER"):
        rows.append(("sequencer only", sequencer_only(out, args.rounds)))
    for name, values in rows:
        print("%-15s %d receivers: median %.2f ms, max %.2f ms"
              % (name, len(devices), statistics.median(values), max(values)))


if __name__ == "__main__":
    main()
