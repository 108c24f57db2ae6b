"""`loaxa sim demo`: the device side alone, with a scripted operator instead of the head-end.

The operator has no database nor pages, but signs, times and serves media with the head-end's
own code (headend/planning.py, headend/media_http.py).

An embedded broker, simulated receivers in villages, and a small operator script: a bulletin
("bản tin") scheduled a few seconds ahead plays on every receiver of one village at the same
instant although each receiver's clock is off by up to ±2 s; then an emergency ("khẩn cấp")
preempts a programme playing everywhere. Every figure printed comes from what the receivers
played (their sinks) and reported (their events). Exit code 0 when all of it held.

    loaxa sim demo [--receivers 12] [--zones 3]
"""

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime

from simulator.fleet import COMMUNE_TZ, format_status, generate_specs
from simulator.scenario import FleetScenario, now_ms, percentile


def _say(text):
    print(text, flush=True)


def _local(t):
    """A true time (s) as the commune reads it: Asia/Ho_Chi_Minh."""
    return datetime.fromtimestamp(t, COMMUNE_TZ).strftime("%H:%M:%S.%f")[:-3]


async def _bulletin_to_one_village(sc, zone):
    ids = sc.fleet.ids(zone)
    item = sc.items["ban-tin-sang"]
    at = now_ms() + 4000
    _say("\n1) Operator: play %s on %s (%d receivers) at %s"
         % (item.id, zone, len(ids), _local(at / 1000.0)))
    bid = sc.operator.play_at(ids, item, at)
    await sc.operator.until(lambda: len(sc.proof_of_play(bid, ids)) == len(ids), 20)
    errors = sc.start_errors_ms(bid, at, ids)
    for device in ids:
        spec = sc.fleet[device].spec
        _say("   %s  clock off %+6.0f ms, %+5.1f ppm -> started %+5.1f ms from T (true time)"
             % (device, spec.offset_ms, spec.drift_ppm, errors[device]))
    others = [d for d in sc.fleet.ids() if d not in ids]
    silent = all(not sc.fleet[d].sink.playbacks for d in others)
    spread = max(errors.values()) - min(errors.values())
    _say("   proof of play from %d/%d; spread %.1f ms; other villages silent: %s"
         % (len(sc.proof_of_play(bid, ids)), len(ids), spread, "yes" if silent else "NO"))
    return max(abs(e) for e in errors.values()) <= 50 and silent


async def _emergency_everywhere(sc):
    ids = sc.fleet.ids()
    normal = sc.operator.play_at(ids, sc.items["chuong-trinh"], now_ms() + 1500)
    _say("\n2) Operator: a 6 s programme everywhere, then an emergency while it plays")
    await sc.operator.until(lambda: all(sc.fleet[d].sink.current for d in ids), 20)
    await asyncio.sleep(1.0)
    sent = time.time()
    alarm = sc.operator.emergency(ids, sc.items["khan-cap"])
    await sc.operator.until(lambda: len(sc.proof_of_play(alarm, ids)) == len(ids), 20)
    delays = [sc.fleet[d].sink.playbacks_of(bid=alarm)[0].started_true - sent for d in ids]
    preempted = [d for d in ids
                 if sc.operator.events_of(d, "ended", bid=normal, reason="preempted")]
    _say("   emergency playing on %d/%d within p50 %.0f ms / max %.0f ms of the command;"
         " programme reported preempted by %d/%d"
         % (len(delays), len(ids), percentile(delays, 50) * 1000, max(delays) * 1000,
            len(preempted), len(ids)))
    return max(delays) < 1.0 and len(preempted) == len(ids)


async def run(receivers, zones):
    from tools.testbrokers import start_embedded_broker

    workdir = tempfile.mkdtemp(prefix="loaxa-sim-demo-")
    broker = start_embedded_broker(os.path.join(workdir, "broker"))
    _say("Embedded MQTT broker on %s:%d" % (broker.host, broker.port))
    specs = generate_specs(receivers, zones=zones, offset_ms=2000, drift_ppm=100)
    items = (("ban-tin-sang", 2.0), ("chuong-trinh", 6.0), ("khan-cap", 2.0))
    ok = False
    try:
        _say("Starting %d simulated receivers in %d villages (clocks off by up to ±2 s)..."
             % (receivers, zones))
        async with FleetScenario((broker.host, broker.port), specs, site="xa-demo",
                                 items=items) as sc:
            _say(format_status(sc.fleet.status_rows()))
            ok = await _bulletin_to_one_village(sc, sc.fleet.zones()[0])
            ok = await _emergency_everywhere(sc) and ok
            _say("\n" + format_status(sc.fleet.status_rows()))
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    _say("\nDemo %s." % ("passed: every receiver did what it was told, on time" if ok
                        else "FAILED: see above"))
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="loaxa sim demo", description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=12)
    parser.add_argument("--zones", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args.receivers, args.zones))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
