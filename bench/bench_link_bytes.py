"""Benchmark: bytes per day on a receiver's link (the "≤ 1 MB/day of telemetry on 4G" promise).

Idle simulated receivers (the real firmware, simulator/) against a real Mosquitto started by the
bench on a free port, time requests answered by simulator/operator.py's Operator (true time, the
head-end's device side). Every byte and every MQTT packet each receiver's connections send and
receive is counted at the simulator's link layer (simulator/network.py LinkPath, which sees the
raw MQTT bytes) and classified by packet type and topic.

Variants run side by side in the same 180 s (default): heartbeat_s/keepalive_s 30/30 (the
defaults), 60/30 (what the firmware recommends on 4G) and 60/60. Per receiver:

- connect burst: every byte of the first --burst-s seconds after CONNECT (session setup, birth,
  the time-sync burst and its refinement exchanges);
- steady state: a window of whole heartbeat periods after the burst, extrapolated linearly to
  a day, except time sync: its exchanges (one per timesync_s = 300 s, which a 2-minute window
  cannot sample fairly) are counted at their measured size times their daily number;
- per day = steady x 86400 s + 2 x burst (one connect a day, plus one reconnect as an allowance);
- on the wire: + 40 B IPv4+TCP per MQTT packet, and + 29 B more per packet with TLS 1.2
  AES-GCM (one segment and one record per packet). Pure TCP ACKs are printed apart, as a worst
  case (one per heartbeat, ping exchange and time-sync packet); the TLS handshake and the
  carrier's own 4G overhead are not counted.

Baseline in the same run: a bare MQTT client (firmware/mqtt.py alone) at each keepalive, through
its own LinkPath, doing nothing but staying connected: the floor cost of being reachable.

Airtime check, in the same run: one more receiver plays a 60 s bulletin twice (`play` now, then
again once it finished). HTTP bytes on its link vs the rendition's size: the overhead is HTTP
headers (and TCP), and the second play fetches nothing.

    .venv/bin/python bench/bench_link_bytes.py [--receivers 10] [--seconds 180]
        [--variants 30/30,60/30,60/60] [--burst-s 70]

Bounded: fixed receivers, the run ends after --seconds (plus ~30 s of setup and teardown).
"""

import argparse
import asyncio
import math
import os
import shlex
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from firmware.config import DEFAULTS  # noqa: E402
from firmware.mqtt import MQTTClient  # noqa: E402
from firmware.mqtt_packets import decode_remaining_length  # noqa: E402
from simulator.clock import ticks_diff  # noqa: E402
from simulator.fleet import generate_specs  # noqa: E402
from simulator.network import LinkPath  # noqa: E402
from simulator.scenario import FleetScenario  # noqa: E402
from tools.testbrokers import start_mosquitto  # noqa: E402

DAY_S = 86400
TCPIP_B = 40   # IPv4 20 + TCP 20 per segment, no options
TLS_B = 29     # TLS 1.2 AES-GCM record: 5 header + 8 explicit nonce + 16 tag
MSS_B = 1460   # a full segment of an HTTP download on a 1500-byte MTU
TIMESYNC_S = DEFAULTS["timesync_s"]
PACKET_NAMES = {1: "session", 2: "session", 4: "puback", 8: "session", 9: "session",
                12: "ping", 13: "ping", 14: "session"}
SYNC = ("treq", "time")


def classify(packet):
    """What an MQTT packet is: the topic's last level for a PUBLISH, else its kind."""
    kind = packet[0] >> 4
    if kind != 3:
        return PACKET_NAMES.get(kind, "other")
    _, at = decode_remaining_length(packet, 1)
    size = (packet[at] << 8) | packet[at + 1]
    return bytes(packet[at + 2:at + 2 + size]).decode("utf-8", "replace").rsplit("/", 1)[-1]


class Meter:
    """The MQTT packets on one link, by phase (burst, steady, tail) and category."""

    def __init__(self, link, burst_s, window_s):
        self.link = link
        self.burst_s = burst_s
        self.window_s = window_s
        self.first = None  # true time of the first packet (the CONNECT)
        self.phases = {p: {} for p in ("burst", "steady", "tail")}
        link.on_packet = self.record

    def record(self, direction, packet):
        now = time.time()
        if self.first is None:
            self.first = now
        age = now - self.first
        phase = "burst" if age < self.burst_s else (
            "steady" if age < self.burst_s + self.window_s else "tail")
        row = self.phases[phase].setdefault(classify(packet), [0, 0, 0])  # up, down, packets
        row[0 if direction == "out" else 1] += len(packet)
        row[2] += 1

    def total(self, phase, skip=()):
        rows = [r for cat, r in self.phases[phase].items() if cat not in skip]
        return [sum(r[i] for r in rows) for i in range(3)]

    def all_phases(self):
        totals = [self.total(p) for p in self.phases]
        return [sum(t[i] for t in totals) for i in range(3)]

    def sync_exchange(self):
        """Mean (bytes, packets) of one time-sync exchange (request + reply) seen so far."""
        rows = [self.phases[p].get(c, [0, 0, 0]) for p in self.phases for c in SYNC]
        requests = sum(self.phases[p].get("treq", [0, 0, 0])[2] for p in self.phases)
        if not requests:
            return 0.0, 0.0
        return (sum(r[0] + r[1] for r in rows) / requests, sum(r[2] for r in rows) / requests)

    def per_day(self, timesync_s=TIMESYNC_S):
        """(MQTT bytes/day, packets/day, linear bytes/day): see the module docstring."""
        up, down, packets = self.total("burst")
        burst_bytes, burst_packets = up + down, packets
        up, down, packets = self.total("steady")
        linear = (up + down) / self.window_s * DAY_S + 2 * burst_bytes
        up, down, packets = self.total("steady", skip=SYNC)
        sync_bytes, sync_packets = self.sync_exchange() if timesync_s else (0.0, 0.0)
        syncs = DAY_S / timesync_s if timesync_s else 0
        day_bytes = (up + down) / self.window_s * DAY_S + syncs * sync_bytes + 2 * burst_bytes
        day_packets = packets / self.window_s * DAY_S + syncs * sync_packets + 2 * burst_packets
        return day_bytes, day_packets, linear


def pure_acks_per_day(meter, timesync_s=TIMESYNC_S):
    """Worst case of TCP segments with no data: one pure ACK for each heartbeat, each ping
    exchange and each time-sync packet (nothing else answers them within the delayed-ACK
    time). Steady state only."""
    steady = meter.phases["steady"]
    packets = steady.get("hb", [0, 0, 0])[2] + steady.get("ping", [0, 0, 0])[2] / 2.0
    syncs = DAY_S / timesync_s if timesync_s else 0
    return packets / meter.window_s * DAY_S + syncs * meter.sync_exchange()[1]


def wire(day_bytes, day_packets, tls=False):
    return day_bytes + day_packets * (TCPIP_B + (TLS_B if tls else 0))


def steady_window(seconds, burst_s, heartbeat_s):
    """Whole heartbeat periods after the burst (so each receiver's window holds the same
    number of heartbeats), leaving a few seconds for the last packets to land."""
    periods = int((seconds - burst_s - 3) // heartbeat_s)
    if periods < 1:
        raise SystemExit("--seconds %g leaves no whole %d s heartbeat period after --burst-s %g"
                         % (seconds, heartbeat_s, burst_s))
    return periods * heartbeat_s


async def bare_client(broker, keepalive, seconds, burst_s, window_s):
    """A firmware MQTT client that only stays connected; returns its Meter."""
    link = LinkPath()
    meter = Meter(link, burst_s, window_s)
    client = MQTTClient("bare-ka%d" % keepalive, broker[0], broker[1],
                        open_connection=link.open_connection,
                        ticks_ms=lambda: int(time.monotonic() * 1000) & (2 ** 30 - 1),
                        ticks_diff=ticks_diff, keepalive=keepalive)
    task = asyncio.ensure_future(client.run())
    try:
        await asyncio.sleep(seconds)
    finally:
        await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return meter


async def airtime(sc, device, item, deadline):
    """Play ``item`` twice to ``device``; the HTTP bytes on its link before and after."""
    op = sc.operator
    link = sc.fleet[device].link
    result = {"device": device, "size": item.renditions[sc.fleet[device].spec.codec].size,
              "seconds": item.dur_ms / 1000.0, "plays": []}
    for _ in range(2):
        bid = op.play_at([device], item, None)
        try:
            await op.until(lambda bid=bid: sc.proof_of_play(bid, [device]),
                           max(1.0, deadline - time.time()), interval=0.5)
            played = True
        except TimeoutError:
            played = False
        result["plays"].append({"played": played, "http_down": link.other_bytes_in,
                                "http_up": link.other_bytes_out,
                                "connections": link.connections})
    return result


async def variant_run(broker, args, heartbeat_s, keepalive_s, index, with_airtime):
    window_s = steady_window(args.seconds, args.burst_s, heartbeat_s)
    count = args.receivers + (1 if with_airtime else 0)
    specs = generate_specs(count, seed=args.seed + index, prefix="h%dk%d-" % (heartbeat_s, keepalive_s))
    items = (("ban-tin", args.bulletin_s),) if with_airtime else ()
    overrides = {"heartbeat_s": heartbeat_s, "keepalive_s": keepalive_s}
    sc = FleetScenario(broker, specs, site="bytes%d" % index, items=items,
                       config_overrides=overrides, settle_s=0, connect_timeout=60)
    meters = {sim.id: Meter(sim.link, args.burst_s, window_s) for sim in sc.fleet}
    started = time.time()
    air = None
    async with sc:
        if with_airtime:
            air = await airtime(sc, specs[-1].id, sc.items["ban-tin"], started + args.seconds)
        await asyncio.sleep(max(0.0, started + args.seconds - time.time()))
        crashed = sc.fleet.crashed()
        time_requests = sc.operator.time_requests
    idle = {d: meters[d] for d in [s.id for s in specs[:args.receivers]]}
    return {"heartbeat_s": heartbeat_s, "keepalive_s": keepalive_s, "window_s": window_s,
            "meters": idle, "air": air, "air_meter": meters[specs[-1].id] if air else None,
            "crashed": crashed, "time_requests": time_requests}


async def main_async(args):
    workdir = tempfile.mkdtemp(prefix="loaxa-bench-bytes-")
    broker = start_mosquitto(workdir, log_types=("error", "warning"))
    address = (broker.host, broker.port)
    keepalives = sorted({ka for _, ka in args.variants})
    for heartbeat_s, keepalive_s in args.variants:  # refuse a run too short before starting
        steady_window(args.seconds, args.burst_s, max(heartbeat_s, keepalive_s))
    try:
        runs = [variant_run(address, args, hb, ka, i, i == 0)
                for i, (hb, ka) in enumerate(args.variants)]
        # The baseline's window: whole periods of its own keepalive pings (every keepalive/2).
        bares = [bare_client(address, ka, args.seconds, args.burst_s,
                             steady_window(args.seconds, args.burst_s, ka))
                 for ka in keepalives]
        results = await asyncio.wait_for(asyncio.gather(*(runs + bares)), args.seconds + 120)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results[:len(runs)], dict(zip(keepalives, results[len(runs):], strict=True))


def kb(value):
    return "%.1f KB" % (value / 1000.0)


def mb(value):
    return "%.3f MB" % (value / 1e6)


def meter_line(name, meter):
    up, down, packets = meter.all_phases()
    b_up, b_down, b_packets = meter.total("burst")
    s_up, s_down, s_packets = meter.total("steady")
    day, day_packets, linear = meter.per_day()
    return ("%-14s up %6d B down %6d B (%4d pkts) | burst %5d B %3d pkts | steady %5d B "
            "%3d pkts | MQTT/day %s (linear %s) | wire/day %s, TLS %s" % (
                name, up, down, packets, b_up + b_down, b_packets, s_up + s_down, s_packets,
                mb(day), mb(linear), mb(wire(day, day_packets)),
                mb(wire(day, day_packets, tls=True))))


def breakdown(meters, phase, window_s=None):
    """Mean bytes (per day, given the phase's window) by category over receivers."""
    scale = DAY_S / window_s if window_s else 1.0
    totals = {}
    for meter in meters:
        for cat, row in meter.phases[phase].items():
            acc = totals.setdefault(cat, [0, 0])
            acc[0] += row[0] + row[1]
            acc[1] += row[2]
    n = len(meters)
    return ", ".join("%s %s (%d pkts)" % (cat, kb(b / n * scale), p / n * scale)
                     for cat, (b, p) in sorted(totals.items(), key=lambda kv: -kv[1][0]))


def report(variants, bares, args):
    failed = False
    for run in variants:
        meters = list(run["meters"].values())
        print("\n== heartbeat_s %d, keepalive_s %d: %d idle receivers, steady window %d s, "
              "time requests answered %d" % (run["heartbeat_s"], run["keepalive_s"], len(meters),
                                            run["window_s"], run["time_requests"]))
        for device, meter in run["meters"].items():
            print(meter_line(device, meter))
        days = [m.per_day() for m in meters]
        mean = [sum(d[i] for d in days) / len(days) for i in range(3)]
        sync_bytes, sync_packets = zip(*(m.sync_exchange() for m in meters), strict=True)
        print("mean: MQTT/day %s (linear %s), wire/day %s, with TLS %s; max wire+TLS %s; "
              "one time-sync exchange %.0f B / %.1f pkts"
              % (mb(mean[0]), mb(mean[2]), mb(wire(mean[0], mean[1])),
                 mb(wire(mean[0], mean[1], tls=True)),
                 mb(max(wire(d[0], d[1], tls=True) for d in days)),
                 sum(sync_bytes) / len(meters), sum(sync_packets) / len(meters)))
        print("steady by kind, per day: %s" % breakdown(meters, "steady", run["window_s"]))
        acks = sum(pure_acks_per_day(m) for m in meters) / len(meters)
        print("not counted above: pure TCP ACKs, worst case %d a day = %s (wire+TLS would be "
              "%s)" % (acks, mb(acks * TCPIP_B), mb(wire(mean[0], mean[1], tls=True)
                                                       + acks * TCPIP_B)))
        bursts = [sum(m.total("burst")[:2]) for m in meters]
        print("connect burst (first %g s): %d-%d B; by kind, mean: %s"
              % (args.burst_s, min(bursts), max(bursts), breakdown(meters, "burst")))
        for meter in meters:  # the classifier saw every MQTT byte the link counted
            link = meter.link
            if sum(meter.all_phases()[:2]) != (link.bytes_in - link.other_bytes_in
                                               + link.bytes_out - link.other_bytes_out):
                print("MISMATCH between packet and byte counters on a link")
                failed = True
        if run["crashed"]:
            print("CRASHED receivers: %s" % ", ".join(run["crashed"]))
            failed = True
        if run["air"]:
            failed |= report_airtime(run, meters)
    print("\n== baseline: bare firmware MQTT client, connected and nothing else")
    for keepalive, meter in bares.items():
        print(meter_line("bare ka %d" % keepalive, meter))
        acks = pure_acks_per_day(meter, timesync_s=0)
        print("  steady by kind, per day: %s; pure TCP ACKs, worst case %d a day = %s"
              % (breakdown([meter], "steady", meter.window_s), acks, mb(acks * TCPIP_B)))
    return failed


def report_airtime(run, idle_meters):
    air = run["air"]
    first, second = air["plays"]
    size = air["size"]
    down, up = first["http_down"], first["http_up"]
    segments = math.ceil(down / MSS_B) + math.ceil(up / MSS_B)
    print("\n== airtime: %s plays a %g s bulletin twice (rendition %d B)"
          % (air["device"], air["seconds"], size))
    print("play 1: played %s, HTTP down %d B, up %d B: overhead %d B (%.2f%%) over the media; "
          "+ ~%d B TCP/IP (%d full segments, ACKs not counted)"
          % (first["played"], down, up, down + up - size, 100.0 * (down + up - size) / size,
             segments * TCPIP_B, segments))
    print("play 2: played %s, HTTP bytes since play 1: %d B down, %d B up; connections opened "
          "on the link after play 1: %d, after play 2: %d (MQTT + HTTP)"
          % (second["played"], second["http_down"] - down, second["http_up"] - up,
             first["connections"], second["connections"]))
    meter = run["air_meter"]
    idle = sum(sum(m.all_phases()[:2]) for m in idle_meters) / len(idle_meters)
    print("MQTT bytes on that link over the run: %d B, against %d B for an idle receiver: "
          "%d B for two plays' commands, acks and proof of play"
          % (sum(meter.all_phases()[:2]), idle, sum(meter.all_phases()[:2]) - idle))
    return not (first["played"] and second["played"])


def parse_variants(text):
    out = []
    for part in text.split(","):
        heartbeat, _, keepalive = part.partition("/")
        out.append((int(heartbeat), int(keepalive or DEFAULTS["keepalive_s"])))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=10, help="idle receivers per variant")
    parser.add_argument("--seconds", type=float, default=180.0, help="real time of the run")
    parser.add_argument("--variants", type=parse_variants, default=parse_variants("30/30,60/30,60/60"),
                        help="heartbeat_s/keepalive_s pairs, comma separated")
    parser.add_argument("--burst-s", type=float, default=70.0,
                        help="connect burst: time sync burst + 60 s refinement")
    parser.add_argument("--bulletin-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/bench_link_bytes.py"]
                       + list(sys.argv[1:] if argv is None else argv))
    started = time.time()
    variants, bares = asyncio.run(main_async(args))
    print("command: %s" % command)
    print("Mosquitto, %d CPU(s), load avg %.1f; run %.0f s; wire = MQTT + %d B IPv4+TCP per "
          "packet (+ %d B TLS 1.2 AES-GCM record); carrier 4G overhead not counted"
          % (os.cpu_count(), os.getloadavg()[0], time.time() - started, TCPIP_B, TLS_B))
    return 1 if report(variants, bares, args) else 0


if __name__ == "__main__":
    sys.exit(main())
