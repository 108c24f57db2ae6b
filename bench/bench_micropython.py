"""Benchmark (issue 7, acceptance 3): the firmware in the loop, on the ESP32's number model.

In one run, on one Mosquitto:
- start error vs T (true time, p50/p99/max of |error|) of one signed "play at T" for
  ``--receivers`` MicroPython receivers, each its own process of the MicroPython that computes
  like an ESP32 (float32, 31-bit small ints, ``-X heapsize=2m`` of a WROVER), and, as the
  baseline, for as many CPython receivers (all in this process, the simulator's other runtime);
- the MicroPython receivers' heap: after boot, and the high-water of live data (a collection
  every 100 ms, then a sample every 20 ms: simulator/mp_receiver.py; on ``HEAP_PROBES`` of the
  receivers, as the collections cost CPU all processes share) while fetching, playing a file
  and playing a live stream (relayed from a file by audio/live.py, real ffmpeg);
- smaller heaps, down to a board without PSRAM (``-X heapsize=100k``): whether one receiver
  of each codec boots, plays a file and a live stream within each (``LEAN_HEAPS``), so the
  smallest heap that works is measured, not guessed;
- bytes allocated per audio frame in each sink's play path (bench/mp_sink_alloc.py under the
  same MicroPython, fake ``machine`` modules; the target is 0 after warm-up).

    .venv/bin/python bench/bench_micropython.py [--receivers 50] [--lead-s 10]

Bounded: at most 2 x --receivers receivers; each phase has a time limit.
"""

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simulator.fleet import generate_specs  # noqa: E402
from simulator.scenario import FleetScenario, now_ms  # noqa: E402
from simulator.scenario import error_stats as stats  # noqa: E402
from simulator.scenario import format_stats as fmt  # noqa: E402
from tools import mpbuild  # noqa: E402
from tools.testbrokers import start_mosquitto  # noqa: E402

PHASES = ("boot", "fetch", "play-file", "play-live", "idle")
LEAN_HEAPS = ("100k", "150k", "200k", "300k")
HEAP_PROBES = 4
LIVE_DELAY_MS = 500


async def play_and_relay(sc, lead_s, live_s):
    """Play one item at T on every receiver, then relay a live stream; return start errors."""
    ids = sc.fleet.ids()
    op = sc.operator
    at = now_ms() + lead_s * 1000
    bid = op.play_at(ids, sc.items["bench"], at)
    try:
        await op.until(lambda: len(sc.proof_of_play(bid, ids)) == len(ids), lead_s + 40,
                       interval=0.5)
    except TimeoutError:
        pass  # reported as played n/N
    errors = sc.start_errors_ms(bid, at, ids)
    live_played = 0
    if live_s:
        source = sc.items["live"].renditions["mp3"].path
        bids = []
        for n, codec in enumerate(("mp3", "adpcm")):
            group = [s.id for s in sc.specs if s.codec == codec]
            key = os.urandom(32)
            bids.append((group, op.stream(group, "bench-" + codec, n + 1, key.hex(), codec,
                                          16000), codec, key, n + 1))
        await asyncio.sleep(1.5)  # every receiver subscribed to its stream
        await asyncio.gather(*(sc.relay_live(source, codec, "bench-" + codec, sno, key,
                                             LIVE_DELAY_MS)
                               for _, _, codec, key, sno in bids))
        await asyncio.sleep(2)  # the last frames heard, reported
        live_played = sum(1 for group, bid, _, _, _ in bids for d in group
                          if [p for p in sc.fleet[d].sink.playbacks_of(bid=bid)
                              if p.how == "closed"])
    return errors, len(ids), live_played


def heap_rows(fleet):
    """Per phase: (max over receivers of the high-water allocated, min free) in bytes."""
    rows = {}
    for sim in fleet:
        if not sim.heap_probe:
            continue  # its samples include garbage the collector had not swept yet
        heap = getattr(sim.receiver, "heap", None) or {}
        for phase, (used, free) in heap.items():
            row = rows.setdefault(phase, [0, None])
            row[0] = max(row[0], used)
            row[1] = free if row[1] is None else min(row[1], free)
    boots = [sim.boot_report["alloc"] for sim in fleet if sim.boot_report]
    return rows, boots


async def run_fleet(broker, runtime, args, heap=None, count=None, live_s=None):
    count = count or args.receivers
    specs = generate_specs(count, zones=1, offset_ms=2000, drift_ppm=100, seed=args.seed)
    t0 = time.time()
    sc = FleetScenario(broker, specs, site="bench", items=(("bench", 2.0), ("live", live_s or 1)),
                       connect_timeout=90, settle_s=2.0, operator_process=True,
                       runtime=runtime, heap=heap, heap_check=False,
                       # A collection every 100 ms costs CPU the other processes share: only a
                       # few receivers measure their live heap (every one in a small run).
                       heap_probe=(HEAP_PROBES if count > HEAP_PROBES else True)
                       if runtime == "micropython" else False)
    try:
        await sc.start()
    except TimeoutError:  # did not boot or connect: say why (a MemoryError, typically)
        crash = [line for sim in sc.fleet for _, lines in sim.crashes for line in lines]
        await sc.stop()
        return {"errors": {}, "n": count, "ready_s": None, "heap": {}, "boot": [], "live_played": 0,
                "crashed": sorted(sim.id for sim in sc.fleet), "crash_output": crash[-2:]}
    try:
        ready_s = time.time() - t0
        errors, n, live_played = await play_and_relay(sc, args.lead_s, live_s or 0)
        rows, boots = heap_rows(sc.fleet) if runtime == "micropython" else ({}, [])
        crashed = sc.fleet.crashed()
        crash_output = [line for sim in sc.fleet for _, lines in sim.crashes for line in lines] \
            if runtime == "micropython" else []
    finally:
        await sc.stop()
    return {"errors": errors, "n": n, "ready_s": ready_s, "heap": rows, "boot": boots,
            "live_played": live_played,
            "crashed": crashed, "crash_output": crash_output[-6:]}


def sink_allocation():
    """bench/mp_sink_alloc.py under the ESP32-model MicroPython: its JSON line, or an error."""
    script = os.path.join(mpbuild.REPO, "bench", "mp_sink_alloc.py")
    if not os.path.exists(script):
        return {"error": "bench/mp_sink_alloc.py is missing"}
    env = dict(os.environ, MICROPYPATH=".frozen:%s:%s" % (mpbuild.REPO,
                                                         os.path.join(mpbuild.REPO, "tests", "mpy")))
    result = subprocess.run([str(mpbuild.esp32_model()), "-X", "heapsize=2m", script],
                            cwd=mpbuild.REPO, env=env, capture_output=True, text=True, timeout=120)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (result.stdout + result.stderr)[-500:]}


async def main_async(args):
    broker = start_mosquitto(tempfile.mkdtemp(prefix="bench-mp-"))
    address = (broker.host, broker.port)
    try:
        mp = await run_fleet(address, "micropython", args, live_s=args.live_s)
        cp = await run_fleet(address, "cpython", args, live_s=args.live_s)
        lean = {}
        for heap in LEAN_HEAPS:
            lean[heap] = await run_fleet(address, "micropython", args, heap=heap, count=2,
                                         live_s=3)
    finally:
        broker.stop()
    return mp, cp, lean


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=50)
    parser.add_argument("--lead-s", type=float, default=10.0)
    parser.add_argument("--live-s", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if mpbuild.esp32_model() is None:
        print("bench_micropython: no ESP32-model MicroPython: %s" % mpbuild.skip_reason())
        return 1
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/bench_micropython.py"]
                       + (argv if argv is not None else sys.argv[1:]))
    mp, cp, lean = asyncio.run(main_async(args))
    print("command: %s" % command)
    print("%d receivers per runtime, clocks ±2 s / ±100 ppm, one Mosquitto, %d CPU(s)"
          % (args.receivers, os.cpu_count()))
    for name, run in (("MicroPython (ESP32 model, heap 2m), each its own process", mp),
                      ("CPython baseline, all in one process", cp)):
        print("start error vs T, %s:" % name)
        print("    %s; played %d/%d; live played %d/%d; ready in %.1f s%s" % (
            fmt(stats(run["errors"].values())), len(run["errors"]), run["n"],
            run["live_played"], run["n"], run["ready_s"],
            "; CRASHED %s" % run["crashed"] if run["crashed"] else ""))
    print("MicroPython heap, live data (bytes; max over receivers of the high-water, min free):")
    if mp["boot"]:
        print("    after boot (live, after a collection)  %7d .. %7d" % (min(mp["boot"]),
                                                                        max(mp["boot"])))
    for phase in PHASES:
        if phase in mp["heap"]:
            used, free = mp["heap"][phase]
            print("    %-38s %7d  (free >= %d)" % (phase, used, free))
    print("smaller heaps (one mp3 and one adpcm receiver: boot, play a file, play live):")
    for heap, run in lean.items():
        if run["crashed"]:
            outcome = "FAILED: %s" % " | ".join(run["crash_output"]) or "did not connect"
        else:
            live = run["heap"].get("play-live", [None, None])
            outcome = "file played %d/%d, live played %d/%d; live-stream high-water %s B" % (
                len(run["errors"]), run["n"], run["live_played"], run["n"], live[0])
        print("    heap %-5s %s" % (heap, outcome))
    alloc = sink_allocation()
    print("bytes allocated per audio frame (bench/mp_sink_alloc.py): %s" % json.dumps(alloc))
    return 0 if not mp["crashed"] and not cp["crashed"] else 1


if __name__ == "__main__":
    sys.exit(main())
