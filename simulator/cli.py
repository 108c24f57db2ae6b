"""`loaxa sim`: run simulated receivers against an MQTT broker until Ctrl-C.

    loaxa sim --receivers 12 --zones 3 --broker 127.0.0.1:1883 --offset-ms 2000 --drift-ppm 100
    loaxa sim --fleet fleet.json --cut r03@20+15 --loss 0.05 --latency-ms 40
    loaxa sim demo        (embedded broker + receivers + a scripted operator, see scripted_demo)

Each receiver is the real firmware (firmware.shell.Receiver) on a simulated board: with
``--runtime cpython`` (default) all in this process, for large fleets; with ``--runtime
micropython`` each its own process of the MicroPython that computes like an ESP32 (float32,
31-bit ints, ``--heap`` of the board), loading protocol/ and firmware/ as mpy-cross bytecode. A status
table is printed every ``--status-every`` seconds. Faults: ``--latency-ms`` and ``--loss``
apply to every receiver; ``--cut ID@AT+FOR`` cuts one receiver's link AT seconds after start
for FOR seconds (repeatable). ``--save-fleet FILE`` writes the generated fleet (ids, zones,
keys) so a head-end can register the same receivers.
"""

import argparse
import asyncio
import signal
import sys
import time

from simulator.fleet import (
    RUNTIMES,
    Fleet,
    format_status,
    generate_specs,
    load_fleet_file,
    save_fleet_file,
)


def parse_broker(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host, int(port)


def parse_cut(text):
    """``ID@AT+FOR`` -> (id, at s, for s)."""
    try:
        device, _, rest = text.partition("@")
        at, _, duration = rest.partition("+")
        return device, float(at), float(duration)
    except ValueError:
        raise argparse.ArgumentTypeError("expected ID@SECONDS+SECONDS, got %r" % text) from None


def build_parser():
    parser = argparse.ArgumentParser(prog="loaxa sim", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--fleet", metavar="FILE", help="fleet JSON (site, broker, devices)")
    source.add_argument("--receivers", type=int, default=4, metavar="N",
                        help="generate N receivers (default 4)")
    parser.add_argument("--zones", type=int, default=2, metavar="Z",
                        help="spread generated receivers over Z zones (default 2)")
    parser.add_argument("--broker", type=parse_broker, metavar="HOST:PORT",
                        help="MQTT broker (default: the fleet file's, else 127.0.0.1:1883)")
    parser.add_argument("--site", help="site id (default: the fleet file's, else 'demo')")
    parser.add_argument("--offset-ms", type=float, default=0.0,
                        help="generated clocks are off by up to ± this many ms")
    parser.add_argument("--drift-ppm", type=float, default=0.0,
                        help="generated clocks drift by up to ± this many ppm")
    parser.add_argument("--seed", type=int, default=None, help="seed for generated keys/clocks")
    parser.add_argument("--save-fleet", metavar="FILE", help="write the fleet as JSON and go on")
    parser.add_argument("--status-every", type=float, default=10.0, metavar="S",
                        help="print the status table every S seconds (0: never)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="one-way link latency")
    parser.add_argument("--loss", type=float, default=0.0,
                        help="fraction of QoS-0 messages lost on the way in (0..1)")
    parser.add_argument("--cut", type=parse_cut, action="append", default=[],
                        metavar="ID@AT+FOR", help="cut a receiver's link for a while")
    parser.add_argument("--runtime", choices=RUNTIMES, default="cpython",
                        help="cpython: receivers in this process (default); micropython: each "
                             "its own ESP32-model MicroPython process")
    parser.add_argument("--heap", default=None, metavar="SIZE",
                        help="MicroPython heap per receiver (default 2m, a WROVER's PSRAM; "
                             "100k for a board without PSRAM)")
    parser.add_argument("--workdir", default=None, metavar="DIR",
                        help="the boards' flash, kept across runs (default: a temporary one); "
                             "the same DIR makes a restarted `loaxa sim` a reboot")
    parser.add_argument("--duration", type=float, default=0.0, metavar="S",
                        help="stop after S seconds (default: run until Ctrl-C)")
    return parser


async def _cut_later(fleet, device, at, duration, out):
    await asyncio.sleep(at)
    fleet.cut(device)
    print("link of %s cut" % device, file=out, flush=True)
    await asyncio.sleep(duration)
    fleet.restore(device)
    print("link of %s restored" % device, file=out, flush=True)


async def run(args, out=sys.stdout):
    if args.fleet:
        site, broker, specs = load_fleet_file(args.fleet)
    else:
        site, broker = None, None
        specs = generate_specs(args.receivers, zones=args.zones, offset_ms=args.offset_ms,
                               drift_ppm=args.drift_ppm, seed=args.seed)
    site = args.site or site or "demo"
    broker = args.broker or broker or ("127.0.0.1", 1883)
    if args.save_fleet:
        save_fleet_file(args.save_fleet, site, broker, specs)
    unknown = [c[0] for c in args.cut if c[0] not in {s.id for s in specs}]
    if unknown:
        print("loaxa sim: no receiver %s in the fleet" % ", ".join(unknown), file=sys.stderr)
        return 2

    try:
        fleet = Fleet(specs, site=site, broker=broker, runtime=args.runtime, heap=args.heap,
                      workdir=args.workdir)
    except RuntimeError as exc:  # no ESP32-model MicroPython here
        print("loaxa sim: %s" % exc, file=sys.stderr)
        return 2
    for sim in fleet:
        sim.link.set_latency(args.latency_ms)
        sim.link.set_loss(args.loss)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    print("%d simulated receivers (%s) of site %s -> broker %s:%d (Ctrl-C stops)"
          % (len(specs), args.runtime, site, broker[0], broker[1]), file=out, flush=True)
    await fleet.start()
    cutters = [asyncio.ensure_future(_cut_later(fleet, d, at, dur, out)) for d, at, dur in args.cut]
    started = time.time()
    try:
        while not stop.is_set():
            wait = args.status_every or 3600.0
            if args.duration:
                wait = min(wait, max(0.0, started + args.duration - time.time()))
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass
            if args.status_every:
                print(format_status(fleet.status_rows()), file=out, flush=True)
            if args.duration and time.time() >= started + args.duration:
                break
    finally:
        for task in cutters:
            task.cancel()
        await fleet.stop()
    crashed = fleet.crashed()
    if crashed:
        print("receivers crashed: %s" % ", ".join(crashed), file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from simulator.scripted_demo import main as scripted_demo

        return scripted_demo(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
