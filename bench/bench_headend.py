"""Benchmark (issue 3, acceptance 6): the head-end's MQTT side under load.

1. Heartbeat ingestion throughput: one publisher process sends --heartbeats heartbeats (QoS 0,
   the firmware's payload shape) from the provisioned receivers' topics as fast as it can. The
   head-end process (batched, one transaction per batch, one row update per heartbeat) and,
   as the baseline in the same run on the same broker, a plain paho subscriber process that
   only counts messages, both consume the same stream. Rate = messages / (last processed -
   first published).
2. Emergency latency: N simulated receivers running the real firmware (split over --procs
   processes) are online and synced; POST /api/v1/emergency; for each receiver, its first
   sample by true time minus the moment the API call was made. Four cases: media pinned
   (the site's pinned set, sent to each receiver at its birth: nothing fetched at the call),
   media not yet on the receivers (fetch, then play), media already cached (all start together
   at call + lead), and preempting a programme. Also: how long the API call took, when a plain
   paho subscriber on the N command topics saw the last command (the head-end's share), and
   when the head-end's own view showed every receiver playing (from their reports).
3. The head-end's share alone (--share N): the same emergency call to N receivers the head-end
   holds online (no fleet running, so nothing competes for the CPUs), API call -> the last
   command seen by the plain paho subscriber; against, in the same run, a bare paho client
   publishing the very same N QoS-1 payloads to the same topics (first publish -> the
   subscriber seeing the last): the broker's fan-out of those N publishes.

    .venv/bin/python bench/bench_headend.py [--receivers 200,1000] [--heartbeats 20000]
        [--share 1000] [--amp-settle-ms MS] [--amp-hold standby]

Bounded: every wait has a timeout, every load loop a count; the broker, the head-end and the
simulator processes are stopped at the end.
"""

import argparse
import json
import math
import multiprocessing as mp
import os
import queue
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx  # noqa: E402

from headend.db import make_engine, make_session_factory, migrate  # noqa: E402
from headend.process import HeadendProcess  # noqa: E402
from headend.services.provisioning import provision_fleet  # noqa: E402
from headend.services.users import create_user  # noqa: E402
from headend.settings import Settings  # noqa: E402
from protocol import topics  # noqa: E402
from tools.testaudio import write_tone_wav  # noqa: E402
from tools.testbrokers import start_mosquitto  # noqa: E402

SITE = "xa-bench"
PASSWORD = "bench-password"
BROKER_CONF = ("max_queued_messages 100000", "max_inflight_messages 1000")


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[max(0, min(len(values) - 1, math.ceil(p / 100.0 * len(values)) - 1))]


# -- processes ---------------------------------------------------------------------------------

def counting_subscriber(host, port, topic, expected, out, ready):
    """Baseline: a plain paho subscriber that counts messages."""
    import paho.mqtt.client as mqtt

    state = {"n": 0, "first": None, "last": None}

    def on_message(_c, _u, _m):
        now = time.time()
        state["n"] += 1
        state["first"] = state["first"] or now
        state["last"] = now

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-baseline")
    client.on_message = on_message
    client.on_connect = lambda c, *a: (c.subscribe(topic, qos=1), ready.set())
    client.connect(host, port)
    client.loop_start()
    deadline = time.time() + 120
    while state["n"] < expected and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # anything late still counts
    client.loop_stop()
    out.put({"n": state["n"], "last": state["last"]})


def heartbeat_publisher(host, port, devices, count, out):
    import paho.mqtt.client as mqtt

    from protocol import messages, topics

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    topic_of = [topics.device_topic(SITE, d, topics.HEARTBEAT) for d in devices]
    started = time.time()
    for i in range(count):
        payload = messages.encode({"v": 1, "boot": 1, "conn": 1, "up": 60 + i, "heap": 81234,
                                   "vol": 70, "cu": 123456, "off": -3, "amp": 0, "mains": 1,
                                   "dc": 13.2, "ln": "wifi", "rssi": -61, "sy": 1})
        client.publish(topic_of[i % len(topic_of)], payload, qos=0)
        if i % 2000 == 1999:
            time.sleep(0.001)
    done = time.time()
    time.sleep(1.0)
    client.loop_stop()
    out.put({"started": started, "sent": done})


def command_subscriber(host, port, topics_, expected, marker, out, ready, timeout=60.0):
    """A plain paho subscriber on the N command topics: when each message carrying ``marker``
    (the broadcast id, or a baseline's tag) arrived. Puts ``{"times", "payloads"}`` once
    ``expected`` such messages came or ``timeout`` passed (``marker`` None: every message)."""
    import paho.mqtt.client as mqtt

    got = {"times": [], "payloads": []}
    marker_b = None if marker is None else marker.encode()

    def on_message(_c, _u, m):
        now = time.time()
        if marker_b is None or marker_b in m.payload:
            got["times"].append(now)
            got["payloads"].append((m.topic, m.payload))

    def on_subscribe(*_a):
        ready.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id="bench-cmd-%d" % os.getpid())
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics_])
    client.connect(host, port)
    client.loop_start()
    deadline = time.time() + timeout
    while len(got["times"]) < expected and time.time() < deadline:
        time.sleep(0.005)
    client.loop_stop()
    out.put(got)


def bare_publisher(host, port, payloads, out):
    """Baseline: a bare paho client publishing ``payloads`` ([(topic, bytes)]) with QoS 1 as
    fast as it can, once connected; puts when the first publish call was made."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare-publisher")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    flag = {"up": False}
    client.on_connect = lambda *a: flag.update(up=True)
    client.connect(host, port)
    client.loop_start()
    deadline = time.time() + 10
    while not flag["up"] and time.time() < deadline:
        time.sleep(0.005)
    started = time.time()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in payloads]
    for info in infos:
        info.wait_for_publish(30)
    out.put({"started": started, "acked": time.time()})
    client.loop_stop()


def fleet_worker(specs, broker, workdir, stop, out, overrides=None):
    """Runs a slice of the fleet (real firmware) until ``stop``; reports playbacks."""
    import asyncio

    from simulator.fleet import DeviceSpec, Fleet

    async def run():
        fleet = Fleet([DeviceSpec.from_json(s) for s in specs], site=SITE, broker=broker,
                      workdir=workdir, config_overrides=overrides)
        await fleet.start()
        reported = False
        while not stop.is_set():
            if not reported and all(s.receiver is not None and s.receiver.core.synced
                                    for s in fleet):
                out.put(("synced", len(specs)))
                reported = True
            await asyncio.sleep(0.1)
        plays = {sim.id: [(p.bid, p.started_true, p.ended_true) for p in sim.sink.playbacks]
                 for sim in fleet}
        out.put(("plays", plays))
        await fleet.stop()

    asyncio.run(run())


# -- helpers -----------------------------------------------------------------------------------

def wait(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("timed out after %.0f s: %s" % (timeout, what))


class Api:
    def __init__(self, url):
        self.http = httpx.Client(base_url=url, timeout=30)
        token = self.http.post("/api/v1/auth/token", data={"username": "bench",
                                                            "password": PASSWORD}).json()
        self.http.headers["Authorization"] = "Bearer " + token["access_token"]

    def get(self, path, **params):
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def cancel(self, bid):
        r = self.http.delete("/api/v1/broadcasts/" + bid)
        if r.status_code != 409:  # 409: it is over already, nothing left to stop
            r.raise_for_status()

    def stats(self):
        return self.get("/api/v1/health")["stats"]


# -- the two measurements ----------------------------------------------------------------------

def bench_ingest(broker, api, devices, count):
    ctx = mp.get_context("fork")
    out, ready = ctx.Queue(), ctx.Event()
    topic = "loaxa/v1/%s/dev/+/hb" % SITE
    base = ctx.Process(target=counting_subscriber,
                       args=(broker.host, broker.port, topic, count, out, ready))
    base.start()
    ready.wait(10)
    before = api.stats().get("heartbeat", 0)
    pub_out = ctx.Queue()
    pub = ctx.Process(target=heartbeat_publisher,
                      args=(broker.host, broker.port, devices, count, pub_out))
    pub.start()
    sent = pub_out.get(timeout=120)
    last_count, last_change = before, time.time()
    deadline = time.time() + 120
    while time.time() < deadline:
        n = api.stats().get("heartbeat", 0)
        if n != last_count:
            last_count, last_change = n, time.time()
        if n - before >= count or time.time() - last_change > 3:
            break
        time.sleep(0.2)  # the head-end's counters by a light health call, not a busy poll
    headend_n = last_count - before
    final = api.stats()
    baseline = out.get(timeout=130)
    pub.join(10)
    base.join(10)
    span = lambda last: max(1e-6, last - sent["started"])  # noqa: E731
    return {
        "published": count, "publish_rate": count / max(1e-6, sent["sent"] - sent["started"]),
        "headend": {"n": headend_n, "rate": headend_n / span(last_change),
                    "batches": final.get("batches", 0), "ingested": final.get("ingested", 0)},
        "baseline": {"n": baseline["n"], "rate": baseline["n"] / span(baseline["last"] or 0)},
    }


class CommandWatch:
    """A ``command_subscriber`` process on the N command topics for one measurement."""

    def __init__(self, broker, ids, expected, marker, timeout=60.0):
        ctx = mp.get_context("fork")
        self.out, ready = ctx.Queue(), ctx.Event()
        cmd_topics = [topics.device_topic(SITE, d, topics.CMD) for d in ids]
        self.proc = ctx.Process(target=command_subscriber,
                                args=(broker.host, broker.port, cmd_topics, expected, marker,
                                      self.out, ready, timeout))
        self.proc.start()
        if not ready.wait(20):
            raise TimeoutError("the command subscriber did not subscribe")

    def result(self, timeout=90):
        got = self.out.get(timeout=timeout)
        self.proc.join(10)
        return got


def watched_emergency(api, broker, ids, media_id):
    """POST /api/v1/emergency of ``media_id`` to ``ids`` with a ``CommandWatch`` on their
    command topics (every play command of the call names the media). Returns (broadcast id,
    called, answered, the watch)."""
    watch = CommandWatch(broker, ids, len(ids), '"item":"%s"' % media_id)
    called = time.time()
    r = api.http.post("/api/v1/emergency", json={"media_id": media_id,
                                                 "targets": {"devices": ids}})
    answered = time.time()
    r.raise_for_status()
    return r.json()["id"], called, answered, watch


def pin_media(api, media_id):
    r = api.http.put("/api/v1/media/%s/pinned" % media_id, json={"pinned": True})
    r.raise_for_status()


def holders(db_url, media_id, ids):
    """How many of ``ids`` reported holding ``media_id`` (the head-end's device_media)."""
    from sqlalchemy import func, select

    from headend.models import DeviceMedia, Rendition

    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        shas = select(Rendition.sha256).where(Rendition.media_id == media_id)
        n = session.scalar(select(func.count(func.distinct(DeviceMedia.device_id))).where(
            DeviceMedia.sha256.in_(shas), DeviceMedia.device_id.in_(ids)))
    engine.dispose()
    return n


def bench_emergency(tmp, broker, api, fleet_devices, n, procs, db_url, pinned_id,
                    overrides=None):
    ctx = mp.get_context("fork")
    specs = fleet_devices[:n]
    ids = [d["id"] for d in specs]
    stop, out = ctx.Event(), ctx.Queue()
    slices = [specs[i::procs] for i in range(procs)]
    workers = [ctx.Process(target=fleet_worker, args=(s, (broker.host, broker.port),
                                                     str(tmp / ("boards-%d-%d" % (n, i))),
                                                     stop, out, overrides))
               for i, s in enumerate(slices) if s]
    for w in workers:
        w.start()
    results = {}
    try:
        synced = 0
        deadline = time.time() + 180
        while synced < n and time.time() < deadline:
            try:
                kind, value = out.get(timeout=1)
            except queue.Empty:
                continue
            if kind == "synced":
                synced += value
        if synced < n:
            raise TimeoutError("only %d of %d receivers synced" % (synced, n))
        wait(lambda: len(api.get("/api/v1/devices", online="true")) >= n, 60,
             "receivers online at the head-end")
        # The pinned set went to each receiver with its birth: wait until all hold it.
        wait(lambda: holders(db_url, pinned_id, ids) >= n, 300,
             "every receiver holding the pinned media")
        time.sleep(5.0)  # the fleet's connect work (acks, fetched reports, syncs) settles
        media = api.http.post("/api/v1/media", files={"file": (
            "canh-bao.wav", write_tone_wav(tmp / "alarm.wav", 6.0, freq=880.0).read_bytes(),
            "audio/wav")})
        media.raise_for_status()
        media_id = media.json()["id"]
        programme = api.http.post("/api/v1/media", files={"file": (
            "chuong-trinh.wav", write_tone_wav(tmp / "programme.wav", 30.0, freq=330).read_bytes(),
            "audio/wav")})
        programme.raise_for_status()
        for label in ("idle, pinned", "idle, fetch then play", "idle, cached",
                      "preempting, cached"):
            normal = None
            if label.startswith("preempting"):
                # Scheduled ahead, as programmes are: every receiver fetches it first.
                start = datetime.fromtimestamp(time.time() + max(5.0, n / 40.0), UTC)
                normal = api.http.post("/api/v1/broadcasts", json={
                    "media_id": programme.json()["id"], "targets": {"devices": ids},
                    "start_at": start.isoformat()})
                normal.raise_for_status()
                normal = normal.json()["id"]
                def programme_playing(normal=normal):
                    detail = api.get("/api/v1/broadcasts/" + normal)
                    return sum(1 for d in detail["devices"] if d["state"] == "playing") >= n

                try:
                    wait(programme_playing, 60, "the programme playing")
                except TimeoutError:
                    # Not every receiver got the programme on the air: this case's figures
                    # would be wrong, the others already measured stand.
                    detail = api.get("/api/v1/broadcasts/" + normal)
                    print("%s: skipped, the programme plays on %d of %d receivers (%s)"
                          % (label, sum(1 for d in detail["devices"]
                                        if d["state"] == "playing"), n,
                             dict(detail["counts"])))
                    api.cancel(normal)
                    continue
                time.sleep(1.0)
            which = pinned_id if label == "idle, pinned" else media_id
            bid, called, answered, watch = watched_emergency(api, broker, ids, which)

            def all_playing(bid=bid):
                detail = api.get("/api/v1/broadcasts/" + bid)
                playing = [d for d in detail["devices"] if d["started_at"]]
                return len(playing) >= n

            wait(all_playing, 60, "head-end to see every receiver playing")
            known = time.time()
            seen = watch.result()
            results[label] = {"bid": bid, "called": called, "api_s": answered - called,
                              "known_s": known - called, "commands_seen": len(seen["times"]),
                              "last_command_s": (max(seen["times"]) - called
                                                 if seen["times"] else float("nan"))}
            time.sleep(2.0)  # let it be heard: a receiver reports "started" before the relay
            #                  has settled and the first sample is out
            api.cancel(bid)
            if normal is not None:
                api.cancel(normal)
            time.sleep(2.0)
        stop.set()
        plays = {}
        for _ in workers:
            kind, value = out.get(timeout=60)
            while kind != "plays":
                kind, value = out.get(timeout=60)
            plays.update(value)
    finally:
        stop.set()
        for w in workers:
            w.join(30)
            if w.is_alive():
                w.kill()
    acked = acked_latencies(db_url, results)
    if os.environ.get("BENCH_DEBUG"):
        print("DEBUG", ids[0], plays.get(ids[0]), {k: v["bid"] for k, v in results.items()})
    for label, res in results.items():
        res["ack_p50_ms"], res["ack_p99_ms"] = acked[label]
        lat = []
        for device in ids:
            starts = [s for bid, s, _e in plays.get(device, []) if bid == res["bid"] and s]
            if starts:
                lat.append((min(starts) - res["called"]) * 1000)
        res.update({"played": len(lat), "p50_ms": percentile(lat, 50),
                    "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else float("nan")})
    return results


def mark_online(db_url, ids):
    """The head-end holds ``ids`` online and holding nothing, as if just connected (their
    simulated boards have stopped: nothing competes with the head-end for the CPUs)."""
    from sqlalchemy import update

    from headend.models import Receiver

    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        session.execute(update(Receiver).where(Receiver.id.in_(ids)).values(
            online=True, last_seen=datetime.now(UTC), offline_reason=None))
        session.commit()
    engine.dispose()


def bench_share(tmp, broker, api, fleet_devices, n, db_url, runs):
    """The head-end's share (API call -> last command seen) against the broker's fan-out of
    the same N payloads by a bare paho client, ``runs`` times each, alternating."""
    ids = [d["id"] for d in fleet_devices[:n]]
    media = api.http.post("/api/v1/media", files={"file": (
        "canh-bao-2.wav", write_tone_wav(tmp / "alarm-2.wav", 3.0, freq=700.0).read_bytes(),
        "audio/wav")})
    media.raise_for_status()
    media_id = media.json()["id"]
    ctx = mp.get_context("fork")
    out = {"headend_s": [], "api_s": [], "baseline_s": [], "baseline_acked_s": [],
           "in_process_s": [], "phases": [], "payload_bytes": None}
    for _ in range(runs):
        mark_online(db_url, ids)
        bid, called, answered, watch = watched_emergency(api, broker, ids, media_id)
        seen = watch.result()
        if len(seen["times"]) < n:
            raise RuntimeError("the subscriber saw %d of %d commands" % (len(seen["times"]), n))
        out["headend_s"].append(max(seen["times"]) - called)
        out["api_s"].append(answered - called)
        payloads = seen["payloads"]
        out["payload_bytes"] = sum(len(p) for _t, p in payloads) / len(payloads)
        api.cancel(bid)
        time.sleep(1.0)
        # The baseline: the very same payloads on the same topics, from a bare client.
        tag = b'"item":"%s"' % media_id.encode()
        watch = CommandWatch(broker, ids, n, tag.decode())
        pub_out = ctx.Queue()
        pub = ctx.Process(target=bare_publisher,
                          args=(broker.host, broker.port, payloads, pub_out))
        pub.start()
        sent = pub_out.get(timeout=60)
        seen = watch.result()
        pub.join(10)
        if len(seen["times"]) < n:
            raise RuntimeError("the subscriber saw %d of %d baseline publishes"
                               % (len(seen["times"]), n))
        out["baseline_s"].append(max(seen["times"]) - sent["started"])
        out["baseline_acked_s"].append(sent["acked"] - sent["started"])
        time.sleep(1.0)
        took, phases = in_process_emergency(db_url, ids, media_id)
        out["in_process_s"].append(took)
        out["phases"].append(phases)
    return out


class PhaseTimer:
    """Adds up the time spent in some functions of a module while active (``phases``)."""

    def __init__(self, module, names):
        self.module, self.names, self.phases, self._saved = module, names, {}, {}

    def __enter__(self):
        for name in self.names:
            self._saved[name] = original = getattr(self.module, name)
            setattr(self.module, name, self._timed(name, original))
        return self

    def _timed(self, name, original):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.phases[name] = (self.phases.get(name, 0.0)
                                     + time.perf_counter() - started)
        return timed

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            setattr(self.module, name, original)


def in_process_emergency(db_url, ids, media_id):
    """Where the head-end's share goes: the same emergency through its service in this
    process, on the same database (validate, targets, deliveries, signing, commit), with a
    publisher that only keeps the commands: no HTTP, no MQTT. Returns (seconds, {phase:
    seconds}): the targets' lookup, the play commands' arguments, signing with the counters
    (``prepare``), the commit; the rest is the deliveries' insert and the bookkeeping."""
    from sqlalchemy.orm import Session

    from headend.commands import RecordingPublisher
    from headend.services import broadcasts

    mark_online(db_url, ids)
    settings = Settings(database_url=db_url, site_id=SITE, mqtt_enabled=False)
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        publisher = RecordingPublisher()
        with PhaseTimer(broadcasts, ("resolve_targets", "play_args", "prepare")) as timer, \
                PhaseTimer(Session, ("commit",)) as commit:
            started = time.perf_counter()
            broadcast = broadcasts.send_emergency(session, settings=settings,
                                                  publisher=publisher, media_id=media_id,
                                                  targets={"devices": ids}, actor="bench")
            took = time.perf_counter() - started
        if len(publisher.sent) != len(ids):
            raise RuntimeError("in process: %d commands for %d receivers"
                               % (len(publisher.sent), len(ids)))
        broadcasts.cancel_broadcast(session, settings=settings, publisher=publisher,
                                    broadcast_id=broadcast.id, actor="bench")
    engine.dispose()
    return took, dict(timer.phases, **commit.phases)


def acked_latencies(db_url, results):
    """From the head-end's database: when each receiver accepted the play command (its ack's
    own timestamp, network time) after the API call. {label: (p50 ms, p99 ms)}."""
    from sqlalchemy import select

    from headend.models import Delivery

    engine = make_engine(db_url)
    out = {}
    with make_session_factory(engine)() as session:
        for label, res in results.items():
            acks = [(a.timestamp() - res["called"]) * 1000 for a in session.scalars(
                select(Delivery.acked_at).where(Delivery.broadcast_id == res["bid"],
                                                Delivery.acked_at.is_not(None)))]
            out[label] = (percentile(acks, 50), percentile(acks, 99))
    engine.dispose()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receivers", default="200,1000",
                        help="fleet sizes for the emergency latency, comma-separated")
    parser.add_argument("--heartbeats", type=int, default=20000)
    parser.add_argument("--procs", type=int, default=4, help="simulator processes")
    parser.add_argument("--lead-ms", type=int, default=None,
                        help="LOAXA_EMERGENCY_LEAD_MS for the head-end (default: its own)")
    parser.add_argument("--amp-settle-ms", type=int, default=None,
                        help="the receivers' amp_settle_ms (default: the firmware's, 300)")
    parser.add_argument("--amp-hold", default=None,
                        help="the receivers' amp_hold (firmware/config.py: off, standby, "
                        "HH:MM-HH:MM); with standby their boards get a mute line (GPIO21)")
    parser.add_argument("--share", type=int, default=1000,
                        help="receivers for the head-end's share against the bare fan-out "
                        "(0: skip)")
    parser.add_argument("--share-runs", type=int, default=3)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-emergency", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.receivers.split(",") if x]
    overrides = {} if args.amp_settle_ms is None else {"amp_settle_ms": args.amp_settle_ms}
    if args.amp_hold is not None:
        overrides.update({"amp_hold": args.amp_hold, "pins": {"amp_mute": 21}})
    command = "%s %s" % (".venv/bin/python bench/bench_headend.py", shlex.join(argv or sys.argv[1:]))
    tmp = Path(tempfile.mkdtemp(prefix="loaxa-bench-headend-"))
    # The broker settings the head-end's `export-mosquitto` writes for production: Mosquitto's
    # defaults (20 in flight, 1,000 queued per client) drop QoS-1 reports to a subscriber that
    # is more than 1,000 messages behind, which a 1,000-receiver emergency burst is.
    broker = start_mosquitto(tmp / "mosquitto", log_types=("error", "warning"),
                             extra_conf=BROKER_CONF)
    data = tmp / "headend"
    settings = Settings(data_dir=data, site_id=SITE, mqtt_host=broker.host,
                        mqtt_port=broker.port)
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        # Each fleet size gets receivers of its own: a simulated board starts with fresh flash,
        # and a real one never reappears with its counters reset a second after it left.
        fleet = provision_fleet(session, settings=settings,
                                receivers=max(sum(sizes), 1000, args.share),
                                zones=[("thon-%d" % i, "Thôn %d" % i) for i in range(1, 11)],
                                broker=(broker.host, broker.port))
        create_user(session, username="bench", password=PASSWORD, role="admin")
    engine.dispose()
    env = {"LOAXA_SITE_ID": SITE}
    if args.lead_ms is not None:
        env["LOAXA_EMERGENCY_LEAD_MS"] = str(args.lead_ms)
    server = HeadendProcess(data, mqtt=(broker.host, broker.port), env=env).start()
    report = {"command": command, "cpus": os.cpu_count()}
    try:
        api = Api(server.url)
        devices = [d["id"] for d in fleet["devices"]][:1000]
        if not args.skip_ingest:
            report["ingest"] = bench_ingest(broker, api, devices, args.heartbeats)
            r = report["ingest"]
            print("heartbeat ingestion, %d heartbeats from %d receivers (publisher %.0f msg/s):"
                  % (r["published"], len(devices), r["publish_rate"]))
            print("  head-end (stored, one transaction per batch): %6d msgs  %8.0f msg/s  "
                  "(%.0f reports per batch)" % (r["headend"]["n"], r["headend"]["rate"],
                                                r["headend"]["ingested"]
                                                / max(1, r["headend"]["batches"])))
            print("  baseline (plain paho subscriber, counting):    %6d msgs  %8.0f msg/s"
                  % (r["baseline"]["n"], r["baseline"]["rate"]))
        if not args.skip_emergency:
            # The site's pinned set, before any receiver connects: each gets it at its birth.
            pinned = api.http.post("/api/v1/media", files={"file": (
                "tin-khan-cap-mau.wav",
                write_tone_wav(tmp / "standard.wav", 6.0, freq=960.0).read_bytes(),
                "audio/wav")})
            pinned.raise_for_status()
            pin_media(api, pinned.json()["id"])
            first = 0
            for n in sizes:
                res = bench_emergency(tmp, broker, api, fleet["devices"][first:first + n], n,
                                      args.procs, settings.resolved_database_url,
                                      pinned.json()["id"], overrides)
                first += n
                report["emergency_%d" % n] = res
                for label, r in res.items():
                    print("emergency to %4d receivers (%s): played on %d; API call %.0f ms;"
                          " last command seen %.0f ms (%d seen);"
                          " call -> command accepted p50 %.0f / p99 %.0f ms;"
                          " call -> first sample p50 %.0f / p99 %.0f / max %.0f ms;"
                          " head-end saw all playing after %.0f ms"
                          % (n, label, r["played"], r["api_s"] * 1000,
                             r["last_command_s"] * 1000, r["commands_seen"], r["ack_p50_ms"],
                             r["ack_p99_ms"], r["p50_ms"], r["p99_ms"], r["max_ms"],
                             r["known_s"] * 1000))
        if args.share:
            n = args.share
            res = bench_share(tmp, broker, api, fleet["devices"], n,
                              settings.resolved_database_url, args.share_runs)
            report["share_%d" % n] = res
            ms = lambda xs: " / ".join("%.0f" % (x * 1000) for x in xs)  # noqa: E731
            print("head-end share, %d receivers (no fleet running), %d runs:" % (n, len(res["api_s"])))
            print("  API call -> last of %d commands seen by a paho subscriber: %s ms "
                  "(API call answered after %s ms; %.0f B a command)"
                  % (n, ms(res["headend_s"]), ms(res["api_s"]), res["payload_bytes"]))
            print("  baseline, bare paho client, the same %d QoS-1 payloads: first publish -> "
                  "last seen %s ms (all PUBACKed after %s ms)"
                  % (n, ms(res["baseline_s"]), ms(res["baseline_acked_s"])))
            print("  of which the head-end's own work, in process on the same database (no "
                  "HTTP, no MQTT): %s ms" % ms(res["in_process_s"]))
            names = ("resolve_targets", "play_args", "prepare", "commit")
            print("    by phase, mean of the runs: %s" % ", ".join(
                "%s %.1f ms" % (name, 1000 * sum(p.get(name, 0) for p in res["phases"])
                                / len(res["phases"])) for name in names))
    finally:
        server.stop()
        broker.stop()
    print("command: %s" % command)
    print(json.dumps(report, default=str)[:2000] if os.environ.get("BENCH_JSON") else "", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
