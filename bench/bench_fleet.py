"""Benchmark (issue 2, acceptance 6): a fleet of simulated receivers on Mosquitto.

Measures, by true (host) time:
- start-time skew: for one signed "play at T" to every receiver, how far each one's first
  sample was from T (p50/p99/max of |error|, and the spread max - min);
- command-to-ack latency: operator publish -> the receiver's ack event back at the operator.

Baseline in the same run, same broker, same process model: bare asyncio MQTT clients (the
firmware's own client, firmware/mqtt.py, with no receiver logic) that echo a per-client publish
straight back (publish-to-echo round trip, the floor for command-to-ack) and receive one
fan-out publish (publish-to-receive spread: what "play on receipt" would give without clocks).

    .venv/bin/python bench/bench_fleet.py [--receivers 200] [--lead-s 8]

Bounded: at most --receivers clients, and the whole run stops after --time-limit seconds.
"""

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from firmware.mqtt import MQTTClient  # noqa: E402
from simulator.clock import ticks_diff  # noqa: E402
from simulator.fleet import generate_specs  # noqa: E402
from simulator.scenario import FleetScenario, now_ms  # noqa: E402
from simulator.scenario import error_stats as stats  # noqa: E402
from simulator.scenario import format_stats as fmt  # noqa: E402
from tools.testbrokers import start_mosquitto  # noqa: E402


async def watch_loop_lag(samples, period=0.01):
    """Record (true time s, lag ms) of this event loop: how late a 10 ms sleep wakes up. All
    receivers share the loop, so this is how far the simulator itself held them back."""
    while True:
        before = time.time()
        await asyncio.sleep(period)
        samples.append((before, (time.time() - before - period) * 1000.0))


async def fleet_run(broker, args):
    specs = generate_specs(args.receivers, zones=args.zones, offset_ms=args.offset_ms,
                           drift_ppm=args.drift_ppm, seed=args.seed)
    t0 = time.time()
    async with FleetScenario(broker, specs, site="bench", items=(("bench", 1.0),),
                             connect_timeout=args.time_limit / 2, settle_s=2.0,
                             operator_process=True) as sc:
        ready_s = time.time() - t0
        ids = sc.fleet.ids()
        op = sc.operator
        at = now_ms() + args.lead_s * 1000
        lags = []
        watcher = asyncio.ensure_future(watch_loop_lag(lags))
        first = len(op.sent_ids())
        bid = op.play_at(ids, sc.items["bench"], at)
        cmd_ids = op.sent_ids()[first:]
        try:
            await op.until(lambda: len(sc.proof_of_play(bid, ids)) == len(ids),
                           args.lead_s + 30, interval=0.5)
        except TimeoutError:
            pass  # reported below as played n/N
        watcher.cancel()
        errors = sc.start_errors_ms(bid, at, ids)
        acks = op.ack_latencies_ms(cmd_ids)
        lag_at_t = [lag for t, lag in lags if abs(t * 1000.0 - at) <= 1000]
        # A command with nothing to fetch, on an idle fleet: the command path alone.
        await asyncio.sleep(1.0)
        first = len(op.sent_ids())
        op.set_volume(ids, 60)
        volume_ids = op.sent_ids()[first:]
        try:
            await op.until(lambda: len(op.ack_latencies_ms(volume_ids)) == len(ids), 20,
                           interval=0.5)
        except TimeoutError:
            pass
        volume_acks = op.ack_latencies_ms(volume_ids)
        spread = max(errors.values()) - min(errors.values()) if errors else None
        return {"ready_s": ready_s, "skew": stats(list(errors.values())), "spread": spread,
                "lag": stats(lag_at_t), "ack": stats(acks), "volume_ack": stats(volume_acks),
                "played": len(errors), "crashed": sc.fleet.crashed(),
                "reported": len(sc.proof_of_play(bid, ids)),
                "missing": [d for d in ids if d not in errors],
                "missing_why": {d: [(e.get("k"), e.get("reason"), e.get("detail"))
                                    for e in op.events_of(d)]
                                for d in ids if d not in errors}}


async def baseline_run(broker, count):
    """Bare firmware MQTT clients: echo per-client publishes, record fan-out arrivals."""
    import paho.mqtt.client as mqtt

    arrivals = {}

    def make(i):
        topic_in = "bench/echo/%d/in" % i
        client = None

        def on_message(topic, payload, retained):
            if topic == "bench/all":
                arrivals[i] = time.time()
            else:
                asyncio.ensure_future(client.publish("bench/echo/%d/out" % i, bytes(payload), 1))

        async def on_connect():
            await client.subscribe(topic_in, 1)
            await client.subscribe("bench/all", 0)

        client = MQTTClient("base-%d" % i, broker[0], broker[1],
                            open_connection=lambda h, p, ssl=None: asyncio.open_connection(h, p),
                            ticks_ms=lambda: int(time.monotonic() * 1000) & (2 ** 30 - 1),
                            ticks_diff=ticks_diff, on_message=on_message, on_connect=on_connect)
        return client

    clients = [make(i) for i in range(count)]
    tasks = [asyncio.ensure_future(c.run()) for c in clients]
    deadline = time.time() + 60
    while not all(c.connected for c in clients) and time.time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)

    sent, echoed = {}, {}
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-baseline-op")
    pub.on_message = lambda c, u, m: echoed.setdefault(int(m.topic.split("/")[2]), time.time())
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()
    pub.on_connect = lambda *a: (pub.subscribe("bench/echo/+/out", 1),
                                 loop.call_soon_threadsafe(ready.set))
    pub.connect(broker[0], broker[1])
    pub.loop_start()
    await asyncio.wait_for(ready.wait(), 10)
    await asyncio.sleep(0.5)
    for i in range(count):
        sent[i] = time.time()
        pub.publish("bench/echo/%d/in" % i, b"x" * 400, qos=1)  # about a play command's size
    deadline = time.time() + 20
    while len(echoed) < count and time.time() < deadline:
        await asyncio.sleep(0.05)
    fan_sent = time.time()
    pub.publish("bench/all", b"x" * 400, qos=0)
    deadline = time.time() + 20
    while len(arrivals) < count and time.time() < deadline:
        await asyncio.sleep(0.05)
    pub.disconnect()
    pub.loop_stop()
    for c in clients:
        await c.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    rtt = [(echoed[i] - sent[i]) * 1000.0 for i in echoed]
    fan = [(t - fan_sent) * 1000.0 for t in arrivals.values()]
    return {"echo": stats(rtt), "fanout": stats(fan),
            "fan_spread": (max(fan) - min(fan)) if fan else None}


async def main_async(args):
    workdir = tempfile.mkdtemp(prefix="loaxa-bench-")
    broker = start_mosquitto(workdir, log_types=("error", "warning"))
    address = (broker.host, broker.port)
    try:
        fleet = await asyncio.wait_for(fleet_run(address, args), args.time_limit)
        base = await asyncio.wait_for(baseline_run(address, args.receivers), 90)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return fleet, base


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=200)
    parser.add_argument("--zones", type=int, default=4)
    parser.add_argument("--offset-ms", type=float, default=2000)
    parser.add_argument("--drift-ppm", type=float, default=100)
    parser.add_argument("--lead-s", type=float, default=8.0, help="T is this far ahead")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=150.0)
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/bench_fleet.py"]
                       + list(sys.argv[1:] if argv is None else argv))
    started = time.time()
    fleet, base = asyncio.run(main_async(args))
    print("command: %s" % command)
    print("fleet: %d receivers on Mosquitto, clocks ±%g ms / ±%g ppm, %d CPU(s); "
          "load avg %.1f; connected+synced in %.1f s; run %.1f s"
          % (args.receivers, args.offset_ms, args.drift_ppm, os.cpu_count(), os.getloadavg()[0],
             fleet["ready_s"], time.time() - started))
    print("start-time error vs T (true time) %s; spread %.1f ms; played %d/%d"
          % (fmt(fleet["skew"]), fleet["spread"] or 0, fleet["played"], args.receivers))
    print("event-loop lag within 1 s of T    %s (the simulator's own delay)" % fmt(fleet["lag"]))
    print("proof of play (started + ended finished) from %d/%d%s" % (
        fleet["reported"], args.receivers,
        "; did not play: %s" % " ".join(fleet["missing"][:20]) if fleet["missing"] else ""))
    for device, reports in list(fleet["missing_why"].items())[:5]:
        print("  %s reported %s" % (device, reports))
    print("command-to-ack, play (+fetch)     %s" % fmt(fleet["ack"]))
    print("command-to-ack, volume            %s" % fmt(fleet["volume_ack"]))
    print("baseline publish-to-echo (bare)   %s" % fmt(base["echo"]))
    print("baseline fan-out publish-to-recv  %s; spread %.1f ms"
          % (fmt(base["fanout"]), base["fan_spread"] or 0))
    if fleet["crashed"]:
        print("CRASHED receivers: %s" % ", ".join(fleet["crashed"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
