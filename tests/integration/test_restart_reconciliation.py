"""Issue 8 acceptance 1: a power cut takes everything down at once, in the middle of a
broadcast and again in the middle of an emergency; everything comes back.

Every part is its own process, killed with SIGKILL: Mosquitto (persistence on, saved on every
change: what it acknowledged survives it), the head-end (headend/process.py) and the
receivers (`loaxa sim` with a fleet file, the real firmware; its boards' flash in a folder
kept across runs, so a restart is a reboot). What the receivers really play is read from their
sinks (the simulator's status table); what the head-end believes from its API. An observer
subscribed to the receivers' events keeps what the broker accepted before each kill.

Within 60 s of the restart no delivery is "playing" on a receiver that is not playing it; the
play log shows each interruption with its reason; nothing the broker had accepted before the
kill is missing from the head-end's database.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import paho.mqtt.client as mqtt
import pytest
from polling import wait_for
from sqlalchemy import create_engine, text

from headend.db import make_engine, make_session_factory, migrate
from headend.process import REPO_ROOT, HeadendProcess
from headend.services.provisioning import provision_fleet
from headend.services.users import create_user
from headend.settings import Settings
from protocol import messages, topics
from protocol.errors import ProtocolError
from protocol.signing import key_from_hex
from tools.testaudio import tone_wav

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

SITE = "xa-mat-dien"
PASSWORD = "restart-pass"
RECEIVERS = 4
RECONCILED_WITHIN_S = 60.0


class Receivers:
    """`loaxa sim --fleet FILE --workdir DIR` as a process: started, SIGKILLed, started again
    on the same flash. ``playing()`` reads the last status table it printed: per receiver, the
    item its sink is playing ("" when idle)."""

    def __init__(self, tmp_path, fleet):
        self.fleet_path = tmp_path / "fleet.json"
        self.fleet_path.write_text(json.dumps(fleet))
        self.workdir = tmp_path / "boards"
        self.out_path = tmp_path / "sim.out"
        self.ids = [d["id"] for d in fleet["devices"]]
        self._proc = None
        self._offset = 0

    def start(self):
        self._offset = self.out_path.stat().st_size if self.out_path.exists() else 0
        out = open(self.out_path, "ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", "--fleet", str(self.fleet_path),
             "--workdir", str(self.workdir), "--status-every", "0.5"],
            cwd=str(REPO_ROOT), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
        out.close()

    def kill(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)

    def stop(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self, since=0):
        if not self.out_path.exists():
            return ""
        return self.out_path.read_bytes()[since:].decode(errors="replace")

    def playing(self):
        """{id: item prefix or ""} from the newest complete table this run printed, None
        before its first."""
        lines = self.output(self._offset).splitlines()
        for end in range(len(lines) - 1, -1, -1):
            if " receivers, " not in lines[end]:
                continue
            rows = {}
            for line in lines[end - len(self.ids):end]:
                fields = line.split()
                if fields and fields[0] in self.ids:
                    rows[fields[0]] = "" if fields[8] == "-" else fields[8]
            if sorted(rows) == sorted(self.ids):
                return rows
        return None


class Observer:
    """A subscriber to the receivers' presence and events (opened with their keys): what the
    broker accepted, and each receiver's boots."""

    def __init__(self, broker, keys):
        self.keys = {d: key_from_hex(k) for d, k in keys.items()}
        self.events = {}  # (device, seq) -> (kind, bid)
        self.boots = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="observer")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect_async(broker.host, broker.port)
        self.client.loop_start()

    def _on_connect(self, client, _u, _f, _rc, _p):
        client.subscribe([(topics.uplink_filter(SITE, topics.EVENT), 1),
                          (topics.uplink_filter(SITE, topics.STATUS), 1)])

    def _on_message(self, _client, _u, msg):
        parsed = topics.parse(msg.topic)
        if parsed is None or parsed[2] not in self.keys:
            return
        device, leaf = parsed[2], parsed[3]
        try:
            body = messages.open_report(self.keys[device], leaf, msg.payload)
        except ProtocolError:
            return
        with self._lock:
            if leaf == topics.EVENT:
                self.events[(device, body["seq"])] = (body.get("k"), body.get("bid"))
            elif body.get("k") == "birth":
                self.boots[device] = max(self.boots.get(device, 0), body["boot"])

    def accepted(self):
        """{(device, seq)} of every event the broker passed on."""
        with self._lock:
            return set(self.events)

    def reported(self, kind, bid):
        """The receivers whose ``kind`` event of ``bid`` the broker passed on."""
        with self._lock:
            return {d for (d, _seq), (k, b) in self.events.items() if k == kind and b == bid}

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Commune:
    def __init__(self, tmp_path, broker_factory):
        self.tmp = tmp_path
        db_dir = tmp_path / "broker-db"
        db_dir.mkdir()
        # What the broker acknowledged must outlive a power cut: saved at every change.
        self.broker = broker_factory.mosquitto(extra_conf=[
            "persistence true", "persistence_location %s/" % db_dir,
            "autosave_on_changes true", "autosave_interval 1"])
        data = tmp_path / "headend"
        settings = Settings(data_dir=data, site_id=SITE, mqtt_host=self.broker.host,
                            mqtt_port=self.broker.port)
        self.database_url = settings.resolved_database_url
        migrate(self.database_url)
        engine = make_engine(self.database_url)
        with make_session_factory(engine)() as session:
            fleet = provision_fleet(session, settings=settings, receivers=RECEIVERS,
                                    zones=[("thon-1", "Thôn 1")])
            create_user(session, username="op", password=PASSWORD, role="operator")
        engine.dispose()
        self.ids = [d["id"] for d in fleet["devices"]]
        self.server = HeadendProcess(data, mqtt=(self.broker.host, self.broker.port),
                                     env={"LOAXA_SITE_ID": SITE})
        self.receivers = Receivers(tmp_path, fleet)
        self.observer = Observer(self.broker, {d["id"]: d["key"] for d in fleet["devices"]})
        self.http = None

    # -- the parts -------------------------------------------------------------------------

    def start_headend(self):
        self.server.start()
        if self.http is not None:
            self.http.close()
        self.http = httpx.Client(base_url=self.server.url, timeout=10)
        r = self.http.post("/api/v1/auth/token", data={"username": "op", "password": PASSWORD})
        self.http.headers["Authorization"] = "Bearer " + r.json()["access_token"]

    def power_cut(self):
        """Everything at once: the broker, the head-end, the receivers."""
        self.broker.kill()
        self.server.kill()
        self.receivers.kill()

    def close(self):
        self.receivers.stop()
        self.observer.close()
        self.server.stop()
        if self.http is not None:
            self.http.close()

    def why(self):
        return "\nhead-end log:\n%s\nsim:\n%s" % (self.server.log_text()[-2500:],
                                                   self.receivers.output()[-1500:])

    # -- the API ---------------------------------------------------------------------------

    def get(self, path, **params):
        r = self.http.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path, body):
        r = self.http.post(path, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def upload(self, name, seconds, freq):
        r = self.http.post("/api/v1/media", files={"file": (name, tone_wav(seconds, freq=freq),
                                                            "audio/wav")})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def states(self, bid):
        return {d["id"]: d["state"] for d in self.get("/api/v1/broadcasts/" + bid)["devices"]}

    # -- what is true ----------------------------------------------------------------------

    def all_playing(self, item):
        playing = self.receivers.playing()
        return playing is not None and all(item.startswith(p) and p for p in playing.values())

    def mismatches(self, items):
        """Receivers where the head-end and the sink disagree about ``items`` ({bid: item}):
        the head-end says "playing" and the sink plays something else, or the reverse."""
        playing = self.receivers.playing()
        if playing is None:
            return ["no status table yet"]
        wrong = []
        for bid, item in items.items():
            for device, state in self.states(bid).items():
                heard = bool(playing[device]) and item.startswith(playing[device])
                if (state == "playing") != heard:
                    wrong.append("%s: head-end %s %s, sink %r" % (device, bid, state,
                                                                  playing[device]))
        return wrong

    def stored_events(self):
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return set(conn.execute(text("SELECT device_id, seq FROM device_events")).all())
        finally:
            engine.dispose()


@pytest.fixture
def commune(tmp_path, broker_factory):
    c = Commune(tmp_path, broker_factory)
    yield c
    c.close()


def reconciled(commune, items, since):
    """Wait (bounded) until the head-end agrees with every sink about ``items``."""
    deadline = since + RECONCILED_WITHIN_S
    wrong = []
    while time.monotonic() < deadline:
        wrong = commune.mismatches(items)
        if not wrong:
            return time.monotonic() - since
        time.sleep(0.25)
    raise AssertionError("%.0f s after the restart the head-end still disagrees with the "
                         "receivers: %s%s" % (RECONCILED_WITHIN_S, wrong, commune.why()))


def interruptions(commune, bid):
    return {e["device_id"]: e for e in commune.get("/api/v1/playlog", broadcast_id=bid)
            if e["outcome"] == "interrupted"}


def test_a_power_cut_during_a_programme_and_during_an_emergency(commune):
    c = commune
    c.start_headend()
    c.receivers.start()
    wait_for(lambda: all(d["online"] for d in c.get("/api/v1/devices")), timeout=20,
             what="every receiver online")
    programme = c.upload("chuong-trinh.wav", 12.0, 330)
    alarm = c.upload("bao-lu.wav", 5.0, 880)

    # 1. a programme: the head-end goes down just before air time, the receivers play it from
    #    their cache and report to the broker, then the power cut takes the rest
    bid = c.post("/api/v1/broadcasts", {"media_id": programme, "targets": {"all": True}})["id"]
    wait_for(lambda: set(c.states(bid).values()) == {"fetched"}, timeout=15,
             what="every receiver to hold the programme")
    c.server.kill()
    wait_for(lambda: c.all_playing(programme), timeout=10, what="the programme on every sink")
    wait_for(lambda: c.observer.reported("started", bid) == set(c.ids), timeout=5,
             what="the receivers' starts accepted by the broker")
    time.sleep(1.0)  # the broker saves what it queued for the head-end
    accepted = c.observer.accepted()
    c.power_cut()
    boots = dict(c.observer.boots)

    c.broker.start()
    c.start_headend()
    c.receivers.start()
    restarted = time.monotonic()
    took = reconciled(c, {bid: programme}, restarted)
    wait_for(lambda: all(c.observer.boots.get(d, 0) > boots.get(d, 0) for d in c.ids),
             timeout=10, what="every receiver rebooted")
    wait_for(lambda: accepted <= c.stored_events(), timeout=20,
             what="every event the broker accepted before the cut in the database")
    cut = wait_for(lambda: len(interruptions(c, bid)) == RECEIVERS and interruptions(c, bid),
                   timeout=10, what="each receiver's interruption in the play log")
    for entry in cut.values():
        assert entry["reason"] == "receiver-restarted" and entry["ended_at"], entry
        assert entry["reason_text"]["en"].startswith("the receiver restarted")
    print("programme reconciled %.1f s after the restart" % took)

    # 2. an emergency: the power cut in the middle of it, the head-end back last
    emergency = c.post("/api/v1/emergency", {"media_id": alarm})["id"]
    wait_for(lambda: c.all_playing(alarm), timeout=15, what="the emergency on every sink")
    wait_for(lambda: set(c.states(emergency).values()) == {"playing"}, timeout=5,
             what="the head-end to see the emergency playing")
    time.sleep(1.0)
    accepted = c.observer.accepted()
    c.power_cut()
    c.broker.start()
    c.receivers.start()
    time.sleep(2.0)  # the receivers are back before the head-end
    c.start_headend()
    restarted = time.monotonic()
    took = reconciled(c, {bid: programme, emergency: alarm}, restarted)
    wait_for(lambda: accepted <= c.stored_events(), timeout=20,
             what="every event the broker accepted before the second cut in the database")
    cut = wait_for(lambda: len(interruptions(c, emergency)) == RECEIVERS
                   and interruptions(c, emergency), timeout=10,
                   what="each receiver's interruption of the emergency in the play log")
    assert {e["reason"] for e in cut.values()} == {"receiver-restarted"}
    # A current emergency is played again by a receiver that restarted, to the end.
    wait_for(lambda: set(c.states(emergency).values()) == {"played"},
             timeout=max(1.0, restarted + RECONCILED_WITHIN_S - time.monotonic()),
             what="the replayed emergency played everywhere")
    assert c.get("/api/v1/broadcasts/" + emergency)["state"] == "played"
    reconciled(c, {bid: programme, emergency: alarm}, restarted)
    print("emergency reconciled %.1f s after the restart" % took)
