"""Benchmark (issue 10, acceptance 7): a province's 48-hour schedule windows, expanded, signed
and delivered by the head-end's own code, against bare dateutil expanding the same RRULEs.

A province: --communes communes, --receivers receivers in all (spread evenly, in 3 to 5 villages
a commune), 4 approved programmes a day in each commune (weekly Mon-Sat at about 05:30, 11:00
and 17:00, daily at about 20:00; the minutes vary per commune; the targets are the whole
commune, one village, the others, or two villages, so receivers of one commune hold different
windows). A head-end serves one commune, so each commune is its own head-end database (one
SQLite file each, copied from one migrated template holding the programmes' recordings and
their joined media, built once by the head-end's own segment joiner: the windows never build
media, they find it by the segments' content hash). Its receivers, programmes, approvals and
births go through the head-end's services (provision_fleet, create/submit/approve_programme,
the ingest's apply_batch on sealed births).

Timed, per commune: ``programmes_scheduler.send_windows``, the scheduler thread's window pass,
with the head-end's MQTT service (headend/mqtt/service.py) as the publisher on a real
Mosquitto: every receiver's window planned, signed as one ``schedule`` command and published;
a plain paho subscriber on every command topic counts what the broker delivered. Then the same
pass again with nothing changed (what the thread does every ``programme_check_s``: it plans
every window and sends none), and once more after every receiver came back on a new
connection (every window sent again, by a head-end past its first pass). Baseline in the same run: bare dateutil (``rrulestr`` +
``between``) expanding the same RRULE strings over the same 48 h, once per programme (what the
head-end must expand: a programme's occurrences are the same for each of its receivers) and
once per (receiver, programme) pair.

Schedule bytes per receiver per day: --day-communes communes run the window pass over 24 h of
simulated time every --step-s, from their receivers' births; every ``schedule`` payload
published is counted per receiver, plus the MQTT 3.1.1 framing the receiver's link carries
(PUBLISH header, topic, packet id; the receiver's PUBACK).

    .venv/bin/python bench/bench_schedule_windows.py [--communes 150] [--receivers 5000]
        [--day-communes 2] [--step-s 60]

Bounded: every loop has a count, every wait a timeout; the broker and the MQTT services are
stopped at the end.
"""

import argparse
import cProfile
import os
import pstats
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dateutil.rrule import rrulestr  # noqa: E402
from sqlalchemy import select  # noqa: E402

from headend.db import make_engine, make_session_factory, migrate  # noqa: E402
from headend.models import Programme  # noqa: E402
from headend.mqtt.ingest import Report, apply_batch  # noqa: E402
from headend.mqtt.service import MqttService  # noqa: E402
from headend.services import programme_media, programmes  # noqa: E402
from headend.services.media import ingest_media  # noqa: E402
from headend.services.programme_windows import WindowSender  # noqa: E402
from headend.services.programmes_scheduler import send_windows  # noqa: E402
from headend.services.provisioning import provision_fleet  # noqa: E402
from headend.settings import Settings  # noqa: E402
from protocol import messages, topics  # noqa: E402
from protocol.signing import key_from_hex  # noqa: E402
from tools.testaudio import write_tone_wav  # noqa: E402
from tools.testbrokers import start_mosquitto  # noqa: E402

ACTOR = "bench"  # a system actor: the services' permission checks pass it (as the importer's)
BROKER_CONF = ("max_queued_messages 100000", "max_inflight_messages 1000")
WEEKDAYS = "MO,TU,WE,TH,FR,SA"


# -- the province ------------------------------------------------------------------------------

def commune_programmes(index, villages, recordings):
    """The 4 programmes of commune ``index``: (title, rrule, targets, segments)."""
    news, music = recordings
    m = (index * 7) % 25  # minutes past the hour, different from one commune to the next
    zone = lambda v: "thon-%d" % (v % villages + 1)  # noqa: E731
    every = {"zones": ["thon-%d" % v for v in range(1, villages + 1)]}
    return [
        ("Bản tin sáng", "FREQ=WEEKLY;BYDAY=%s;BYHOUR=5;BYMINUTE=%d" % (WEEKDAYS, 30 + m),
         every, [{"chime": "start"}, {"media_id": news}, {"chime": "end"}]),
        ("Bản tin trưa", "FREQ=WEEKLY;BYDAY=%s;BYHOUR=11;BYMINUTE=%d" % (WEEKDAYS, m),
         {"zones": [zone(index)]}, [{"media_id": news}, {"media_id": music}]),
        ("Bản tin chiều", "FREQ=WEEKLY;BYDAY=%s;BYHOUR=17;BYMINUTE=%d" % (WEEKDAYS, m),
         {"zones": [zone(index + v) for v in range(1, villages)]},
         [{"chime": "start"}, {"media_id": music}]),
        ("Ca nhạc tối", "FREQ=DAILY;BYHOUR=20;BYMINUTE=%d" % m,
         {"zones": sorted({zone(index), zone(index + 2)})}, [{"media_id": music}]),
    ]


def make_template(tmp, args):
    """A migrated head-end database with the two recordings and the programmes' joined media
    (built once by programme_media.build_media: ffmpeg, the loudness normalisation)."""
    data = tmp / "template"
    settings = Settings(data_dir=data, site_id="xa-mau", mqtt_enabled=False)
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        recordings = []
        for name, seconds, freq in (("ban-tin.wav", args.news_s, 440.0),
                                    ("ca-nhac.wav", args.music_s, 660.0)):
            wav = write_tone_wav(tmp / name, seconds, freq=freq)
            recordings.append(ingest_media(session, settings=settings, src_path=wav,
                                           filename=name, actor=ACTOR).id)
        session.commit()
        built = set()
        for index in range(args.communes):
            for title, _rule, _targets, segments in commune_programmes(index, 5, recordings):
                if title not in built:
                    programme_media.build_media(session, settings=settings, segments=segments,
                                                title=title, actor=ACTOR)
                    built.add(title)
            if len(built) == 4:
                break
    engine.dispose()
    return Path(settings.resolved_database_url[len("sqlite:///"):]), recordings


class Commune:
    """One commune's head-end: its database, its settings, its receivers' keys."""

    def __init__(self, tmp, index, receivers, template, recordings, broker, start):
        self.index = index
        self.site = "xa-%03d" % (index + 1)
        self.villages = 3 + index % 3
        # No heartbeats in this bench: the presence sweep must not take the receivers
        # offline while the other communes are set up or a simulated day runs.
        self.settings = Settings(data_dir=tmp / self.site, site_id=self.site,
                                 mqtt_host=broker.host, mqtt_port=broker.port,
                                 offline_after_s=7 * 86400)
        db = Path(self.settings.resolved_database_url[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, db)
        self.engine = make_engine(self.settings.resolved_database_url)
        self.factory = make_session_factory(self.engine)
        zones = [("thon-%d" % v, "Thôn %d" % v) for v in range(1, self.villages + 1)]
        with self.factory() as session:
            fleet = provision_fleet(session, settings=self.settings, receivers=receivers,
                                    zones=zones, prefix="r", broker=(broker.host, broker.port))
            self.keys = {d["id"]: d["key"] for d in fleet["devices"]}
            self.rules = []
            for title, rule, targets, segments in commune_programmes(index, self.villages,
                                                                     recordings):
                fields = {"title": title, "rrule": rule, "targets": targets,
                          "segments": segments, "start": start.isoformat()}
                made = programmes.create_programme(session, settings=self.settings,
                                                   fields=fields, actor=ACTOR)
                for step in (programmes.submit_programme, programmes.approve_programme):
                    step(session, settings=self.settings, programme_id=made.id, actor=ACTOR)
                self.rules.append(rule)

    def births(self, boot=1, conn=1):
        """Every receiver comes online, its birth applied by the ingest's own batch."""
        reports = []
        for device, key in self.keys.items():
            body = messages.birth(device, boot, conn, "0.1.0",
                                  {"codecs": ["mp3", "adpcm"], "sink": "sim"}, "wifi")
            reports.append(Report(topics.STATUS, device,
                                  messages.seal_report(key_from_hex(key), topics.STATUS, body),
                                  int(time.time() * 1000), qos=1))
        with self.factory() as session:
            apply_batch(session, settings=self.settings, reports=reports)
            session.commit()

    def targets_per_programme(self):
        """How many receivers each approved programme reaches (for the per-pair baseline)."""
        from headend.services.broadcasts import resolve_targets

        with self.factory() as session:
            return [len(resolve_targets(session, p.targets))
                    for p in session.scalars(select(Programme))]

    def close(self):
        self.engine.dispose()


class Recorder:
    """The head-end's MQTT service as the publisher, keeping what each receiver was sent."""

    def __init__(self, service):
        self.service = service
        self.sent = []

    def publish_many(self, outgoing):
        self.service.publish_many(outgoing)
        self.sent.extend(outgoing)


# -- the broker's side ------------------------------------------------------------------------

class Counting:
    """A plain paho subscriber on every command topic: messages and bytes delivered."""

    def __init__(self, broker):
        import paho.mqtt.client as mqtt

        self.n = 0
        self.bytes = 0
        self.last = 0.0
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-count")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(
            "%s/+/dev/+/%s" % (topics.ROOT, topics.CMD), qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("the counting subscriber did not subscribe")

    def _on_message(self, _c, _u, m):
        with self._lock:
            self.n += 1
            self.bytes += len(m.payload)
            self.last = time.time()

    def wait_for(self, n, timeout):
        deadline = time.time() + timeout
        while self.n < n and time.time() < deadline:
            time.sleep(0.01)
        return self.n

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def mqtt_downlink_bytes(topic, payload_len):
    """A QoS-1 PUBLISH as MQTT 3.1.1 puts it on the receiver's link (the firmware speaks
    3.1.1): fixed header with its remaining-length varint, topic, packet id, payload."""
    remaining = 2 + len(topic) + 2 + payload_len
    varint = 1 if remaining < 128 else 2 if remaining < 16384 else 3
    return 1 + varint + remaining


PUBACK_BYTES = 4  # the receiver's acknowledgement of a QoS-1 PUBLISH
SETTLE_S = 0.3  # after a start, the MQTT service's own first writes (its run, the sweep)


# -- measurements -----------------------------------------------------------------------------

def baseline(communes, start, now, end, per_pair):
    """Bare dateutil: rrulestr + between over the same 48 h for the same RRULE strings, in
    the site's zone as the head-end reads them; once per programme, or per (receiver,
    programme) pair (``per_pair``: the receivers each programme reaches, per commune)."""
    zone = communes[0].settings.tz
    dtstart = start.astimezone(zone)
    t0 = time.perf_counter()
    found = 0
    for i, commune in enumerate(communes):
        counts = per_pair[i] if per_pair else [1] * len(commune.rules)
        for rule, repeat in zip(commune.rules, counts, strict=True):
            for _ in range(repeat):
                found += len(rrulestr(rule, dtstart=dtstart).between(now, end, inc=True))
    return time.perf_counter() - t0, found


def started_service(commune):
    """``commune``'s head-end MQTT service, connected, its receivers just born, settled."""
    service = MqttService(settings=commune.settings, session_factory=commune.factory).start()
    if not service.wait_connected(10):
        service.stop()
        raise RuntimeError("the head-end's MQTT service did not connect")
    commune.births()
    time.sleep(SETTLE_S)
    return service


def window_pass(commune, service, sender, now, profile=None):
    """One scheduler window pass of ``commune``'s head-end at ``now``: (seconds, sent)."""
    recorder = Recorder(service)
    if profile is not None:
        profile.enable()
    t0 = time.perf_counter()
    with commune.factory() as session:
        send_windows(session, settings=commune.settings, publisher=recorder, sender=sender,
                     now=now)
    seconds = time.perf_counter() - t0
    if profile is not None:
        profile.disable()
    return seconds, recorder.sent


def simulated_day(commune, args, now):
    """The window passes of 24 h from the receivers' births: schedule commands per receiver
    (count, payload bytes, MQTT bytes) and the times a window was sent."""
    sender = WindowSender()
    service = started_service(commune)
    sends = Counter()
    payload = Counter()
    wire = Counter()
    when = []
    try:
        recorder = Recorder(service)
        steps = int(24 * 3600 / args.step_s)
        for step in range(steps):
            at = now + timedelta(seconds=step * args.step_s)
            before = len(recorder.sent)
            with commune.factory() as session:
                send_windows(session, settings=commune.settings, publisher=recorder,
                             sender=sender, now=at)
            if len(recorder.sent) > before:
                when.append(at)
        for out in recorder.sent:
            sends[out.device_id] += 1
            payload[out.device_id] += len(out.payload)
            wire[out.device_id] += mqtt_downlink_bytes(out.topic, len(out.payload))
    finally:
        service.stop()
    return sends, payload, wire, when


def local(at, zone):
    return at.astimezone(zone).strftime("%a %H:%M")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--communes", type=int, default=150)
    parser.add_argument("--receivers", type=int, default=5000, help="in the whole province")
    parser.add_argument("--day-communes", type=int, default=2,
                        help="communes whose 24 h of window passes are simulated (bytes/day)")
    parser.add_argument("--step-s", type=int, default=60,
                        help="simulated time between two window passes (the head-end's is "
                        "programme_check_s, 30 s; a window changes at most at each occurrence)")
    parser.add_argument("--profile", type=int, default=0,
                        help="print the N functions taking most of the first passes' time")
    parser.add_argument("--news-s", type=float, default=20.0)
    parser.add_argument("--music-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    command = ("%s %s" % (".venv/bin/python bench/bench_schedule_windows.py",
                          shlex.join(argv if argv is not None else sys.argv[1:]))).rstrip()
    tmp = Path(tempfile.mkdtemp(prefix="loaxa-bench-windows-"))
    broker = start_mosquitto(tmp / "mosquitto", log_types=("error", "warning"),
                             extra_conf=BROKER_CONF)
    communes = []
    counter = None
    try:
        t0 = time.perf_counter()
        template, recordings = make_template(tmp, args)
        # The rules' first day: last midnight in the site's zone (a weekly rule's DTSTART).
        zone = Settings().tz
        now = datetime.now(UTC).replace(microsecond=0)
        start = now.astimezone(zone).replace(hour=0, minute=0, second=0).astimezone(UTC)
        per = [args.receivers // args.communes + (1 if i < args.receivers % args.communes
                                                  else 0) for i in range(args.communes)]
        for i in range(args.communes):
            communes.append(Commune(tmp, i, per[i], template, recordings, broker, start))
        setup_s = time.perf_counter() - t0
        counter = Counting(broker)

        # The head-end's window pass, commune by commune (each its own head-end).
        first, again, warm, sent_n, published, sizes = [], [], [], 0, 0, []
        profile = cProfile.Profile() if args.profile else None
        for commune in communes:
            sender = WindowSender()
            service = started_service(commune)
            try:
                seconds, sent = window_pass(commune, service, sender, now, profile)
                first.append(seconds)
                sent_n += len(sent)
                published += len(sent)
                sizes += [len(o.payload) for o in sent]
                seconds, resent = window_pass(commune, service, sender, now)
                again.append(seconds)
                assert resent == [], "nothing changed, yet windows were sent again"
                # Every receiver back on a new connection: every window again, on a head-end
                # whose statements are compiled and whose rows are cached already.
                commune.births(conn=2)
                seconds, sent = window_pass(commune, service, sender, now)
                assert len(sent) == len(commune.keys), "not every window was sent again"
                warm.append(seconds)
                published += len(sent)
            finally:
                service.stop()
        delivered = counter.wait_for(published, 30)

        end = now + timedelta(hours=communes[0].settings.programme_window_h)
        per_pair = [c.targets_per_programme() for c in communes]
        base_s, base_found = baseline(communes, start, now, end, None)
        pair_s, _found = baseline(communes, start, now, end, per_pair)
        pairs = sum(sum(p) for p in per_pair)

        total, total_warm = sum(first), sum(warm)
        print("province: %d communes (one head-end database each), %d receivers, %d "
              "programmes (%d receiver-programme pairs); set up in %.0f s" % (
                  len(communes), sum(per), 4 * len(communes), pairs, setup_s))
        print("window pass (send_windows: plan + sign + publish to Mosquitto), every receiver"
              " just born:")
        print("  first pass (a head-end's first: its SQL not compiled yet, as after a start):")
        print("  all communes: %.2f s for %d schedule commands (%.2f ms a receiver); per "
              "commune p50 %.0f ms, max %.0f ms" % (
                  total, sent_n, 1000 * total / max(1, sent_n),
                  1000 * statistics.median(first), 1000 * max(first)))
        print("  delivered by the broker to a paho subscriber on every command topic (both "
              "sending passes): %d of %d" % (delivered, published))
        print("  schedule payload: mean %.0f B, max %d B" % (statistics.mean(sizes), max(sizes)))
        print("  every receiver back (a new session), every window again: %.2f s in all, per "
              "commune p50 %.0f ms, max %.0f ms (%.2f ms a receiver)" % (
                  sum(warm), 1000 * statistics.median(warm), 1000 * max(warm),
                  1000 * sum(warm) / max(1, sent_n)))
        print("  the same pass again, nothing changed (every programme_check_s): %.2f s in all,"
              " per commune p50 %.0f ms, max %.0f ms" % (
                  sum(again), 1000 * statistics.median(again), 1000 * max(again)))
        print("baseline, bare dateutil rrulestr + between over the same 48 h:")
        print("  once per programme (%d expansions, %d occurrences): %.3f s; head-end / "
              "baseline = %.0fx (first pass), %.0fx (again)" % (
                  4 * len(communes), base_found, base_s, total / base_s, total_warm / base_s))
        print("  once per receiver-programme pair (%d expansions): %.2f s; head-end / "
              "baseline = %.1fx (first pass), %.1fx (again)" % (
                  pairs, pair_s, total / pair_s, total_warm / pair_s))

        if profile is not None:
            print("where the first passes' time goes (cProfile, cumulative):")
            pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(
                args.profile)
        for commune in communes[:args.day_communes]:
            day_now = now + timedelta(seconds=1)
            sends, payload, wire, when = simulated_day(commune, args, day_now)
            n = len(commune.keys)
            mean = lambda c, n=n: sum(c.values()) / n  # noqa: E731
            print("bytes per receiver per day, %s (%d receivers, 24 h of window passes every "
                  "%d s from their births):" % (commune.site, n, args.step_s))
            print("  schedule commands: %.1f a receiver (min %d, max %d); sent at %s" % (
                mean(sends), min(sends.values()), max(sends.values()),
                ", ".join(local(w, commune.settings.tz) for w in when)))
            print("  payload %.0f B; on the receiver's link with MQTT 3.1.1 framing and PUBACKs "
                  "%.0f B (%.0f B of it MQTT)" % (
                      mean(payload), mean(wire) + PUBACK_BYTES * mean(sends),
                      mean(wire) - mean(payload) + PUBACK_BYTES * mean(sends)))
            print("  each further reconnection (a new session) adds one window: %.0f B" % (
                mean(wire) / max(1, mean(sends))))
    finally:
        if counter is not None:
            counter.stop()
        for commune in communes:
            commune.close()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("command: %s" % command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
