"""Where the head-end's own share of an emergency goes: the emergency service to N receivers,
in this process, on a real SQLite file (validate, targets, deliveries, signing, commit), with
a publisher that only keeps the commands (no HTTP, no MQTT), under a profiler.

    .venv/bin/python bench/profile_emergency.py [--receivers 1000] [--runs 5]
        [--profile cprofile|none]

Prints the wall time of each run and, for the last one, the profile. Bounded: --runs calls.
"""

import argparse
import cProfile
import gc
import os
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import update  # noqa: E402

from headend.commands import RecordingPublisher  # noqa: E402
from headend.db import make_engine, make_session_factory, migrate  # noqa: E402
from headend.models import Receiver  # noqa: E402
from headend.services import broadcasts  # noqa: E402
from headend.services.media import ingest_media  # noqa: E402
from headend.services.provisioning import provision_fleet  # noqa: E402
from headend.settings import Settings  # noqa: E402
from tools.testaudio import write_tone_wav  # noqa: E402

SITE = "xa-profile"


def setup(tmp: Path, n: int):
    settings = Settings(data_dir=tmp / "headend", site_id=SITE, mqtt_enabled=False)
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        fleet = provision_fleet(session, settings=settings, receivers=n,
                                zones=[("thon-%d" % i, "Thôn %d" % i) for i in range(1, 11)])
        media = ingest_media(session, settings=settings,
                             src_path=write_tone_wav(tmp / "alarm.wav", 3.0, freq=700.0),
                             filename="canh-bao.wav")
        session.commit()
        ids = [d["id"] for d in fleet["devices"]]
        media_id = media.id
    return settings, factory, ids, media_id


def one_call(settings, factory, ids, media_id, profiler=None):
    with factory() as session:
        session.execute(update(Receiver).where(Receiver.id.in_(ids)).values(
            online=True, last_seen=datetime.now(UTC)))
        session.commit()
    with factory() as session:
        publisher = RecordingPublisher()
        if profiler is not None:
            profiler.enable()
        started, cpu = time.perf_counter(), time.thread_time()
        broadcast = broadcasts.send_emergency(session, settings=settings, publisher=publisher,
                                              media_id=media_id, targets={"devices": ids},
                                              actor="bench")
        took = time.perf_counter() - started, time.thread_time() - cpu
        if profiler is not None:
            profiler.disable()
        assert len(publisher.sent) == len(ids), len(publisher.sent)
        broadcasts.cancel_broadcast(session, settings=settings, publisher=publisher,
                                    broadcast_id=broadcast.id, actor="bench")
    return took


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", choices=("cprofile", "none"),
                        default="cprofile")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="loaxa-profile-"))
    settings, factory, ids, media_id = setup(tmp, args.receivers)
    gc.collect()
    gc.freeze()  # as the head-end does once started (headend/app.py)
    times = []
    for run in range(args.runs):
        profiler = None
        if run == args.runs - 1 and args.profile == "cprofile":
            profiler = cProfile.Profile()
        times.append(one_call(settings, factory, ids, media_id, profiler))
        if profiler is not None:
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(50)
            stats.sort_stats("tottime").print_stats(30)
    # CPU time of the calling thread beside the wall time: the box is shared, and a wall
    # time alone says as much about the neighbours as about this code.
    print("emergency to %d receivers, in process: wall %s ms; CPU %s ms (profiled last: %s)"
          % (args.receivers, " / ".join("%.0f" % (w * 1000) for w, _c in times),
             " / ".join("%.0f" % (c * 1000) for _w, c in times), args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
