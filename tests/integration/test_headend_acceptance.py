"""Issue 3 acceptance, end to end: the head-end as its own process, real Mosquitto, and
simulated receivers running the real firmware (clocks off by up to ±1.5 s, drifting).

Everything an operator does goes through the HTTP API; what a receiver played is read from its
recording sink (true time); what the head-end knows comes from GET /api/v1/broadcasts/{id}
and /api/v1/playlog, which it built from the receivers' own reports.
"""

import asyncio
import math
import struct
import time
import wave
from datetime import UTC, datetime

import httpx
import pytest
from polling import until

from headend.db import make_engine, make_session_factory, migrate
from headend.process import HeadendProcess
from headend.services.provisioning import export_mosquitto, provision_fleet
from headend.services.users import create_user
from headend.settings import Settings
from simulator.fleet import DeviceSpec, Fleet
from tools.testbrokers import HEADEND_USER, start_embedded_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

SITE = "xa-accept"
PASSWORD = "acceptance-pass"
MQTT_PASSWORD = "acceptance-mqtt-pass"
START_TOLERANCE_MS = 50.0
WITHIN_S = 1.0


def write_tone(path, seconds, freq=440.0, rate=16000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(
            struct.pack("<h", int(10000 * math.sin(2 * math.pi * freq * i / rate)))
            for i in range(int(seconds * rate))))
    return path


class Station:
    """A commune: the head-end process, its receivers (a simulated fleet) and an API client.

    With ``accounts_dir`` every MQTT client logs in as itself: the head-end exports its
    accounts there (Mosquitto's passwd/acl) and the broker, not yet started, is started on them.
    With ``keep_bytes`` each receiver's sink keeps what it was given to play, for decoding.
    """

    def __init__(self, tmp_path, broker, zones, accounts_dir=None, env=None, keep_bytes=False):
        self.tmp = tmp_path
        self.broker = broker
        data = tmp_path / "headend"
        account = {"mqtt_username": HEADEND_USER, "mqtt_password": MQTT_PASSWORD}
        settings = Settings(data_dir=data, site_id=SITE, mqtt_host=broker.host,
                            mqtt_port=broker.port, **(account if accounts_dir else {}))
        url = settings.resolved_database_url
        migrate(url)
        engine = make_engine(url)
        with make_session_factory(engine)() as session:
            fleet = {}
            for zone, count in zones.items():
                fleet[zone] = provision_fleet(session, settings=settings, receivers=count,
                                              zones=[(zone, zone)], prefix=zone + "-")
            create_user(session, username="op", password=PASSWORD, role="operator")
            if accounts_dir:
                export_mosquitto(session, settings=settings, directory=accounts_dir)
        engine.dispose()
        if accounts_dir:
            broker.start()
        specs = []
        for i, device in enumerate(d for f in fleet.values() for d in f["devices"]):
            spec = DeviceSpec.from_json(device)
            spec.offset_ms = (-1500, 1500, 700, -900)[i % 4]
            spec.drift_ppm = (80, -80, 30, -50)[i % 4]
            specs.append(spec)
        self.zones = {zone: [d["id"] for d in f["devices"]] for zone, f in fleet.items()}
        env = dict(env or {}, LOAXA_SITE_ID=SITE)
        if accounts_dir:
            env.update(LOAXA_MQTT_USERNAME=HEADEND_USER, LOAXA_MQTT_PASSWORD=MQTT_PASSWORD)
        self.server = HeadendProcess(data, mqtt=(broker.host, broker.port), env=env)
        self.fleet = Fleet(specs, site=SITE, broker=(broker.host, broker.port),
                           workdir=str(tmp_path / "boards"), keep_bytes=keep_bytes)
        self.http = None
        self.headers = {}

    async def __aenter__(self):
        await asyncio.to_thread(self.server.start)
        self.http = httpx.AsyncClient(base_url=self.server.url, timeout=10)
        r = await self.http.post("/api/v1/auth/token",
                                 data={"username": "op", "password": PASSWORD})
        self.headers = {"Authorization": "Bearer " + r.json()["access_token"]}
        await self.fleet.start()
        await self.until(self.all_online, 30, "every receiver online at the head-end")
        await self.until(lambda: all(s.receiver is not None and s.receiver.core.synced
                                     for s in self.fleet), 20, "clocks synced")
        return self

    async def __aexit__(self, *exc):
        await self.fleet.stop()
        if self.http is not None:
            await self.http.aclose()
        await asyncio.to_thread(self.server.stop)

    async def all_online(self):
        devices = await self.get("/api/v1/devices")
        return len(devices) == len(self.fleet) and all(d["online"] for d in devices)

    async def get(self, path, **params):
        r = await self.http.get(path, params=params, headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    async def post(self, path, body):
        r = await self.http.post(path, json=body, headers=self.headers)
        assert r.status_code == 201, r.text
        return r.json()

    async def upload(self, name, seconds, freq):
        path = write_tone(self.tmp / name, seconds, freq)
        r = await self.http.post("/api/v1/media", headers=self.headers,
                                 files={"file": (name, path.read_bytes(), "audio/wav")})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    async def states(self, bid):
        detail = await self.get("/api/v1/broadcasts/" + bid)
        return {d["id"]: d["state"] for d in detail["devices"]}

    async def until(self, predicate, timeout, what):
        return await until(predicate, timeout, what,
                           lambda: self.server.log_text()[-2000:])

    def played(self, device, bid):
        return self.fleet[device].sink.playbacks_of(bid=bid)


async def test_zone_broadcast_emergency_and_offline_receivers(tmp_path, mosquitto_broker):
    """Acceptance 1, 2 and 3."""
    async with Station(tmp_path, mosquitto_broker, {"thon-1": 4, "thon-2": 3}) as st:
        zone, others = st.zones["thon-1"], st.zones["thon-2"]
        news = await st.upload("tin-sang.wav", 1.5, 440)

        # 1. a zone at T: every receiver of the zone starts at T, the others stay silent
        at = time.time() + 4.0
        bid = (await st.post("/api/v1/broadcasts", {
            "media_id": news, "targets": {"zones": ["thon-1"]}, "priority": "normal",
            "start_at": datetime.fromtimestamp(at, UTC).isoformat()}))["id"]
        await st.until(lambda: all(st.played(d, bid) and st.played(d, bid)[0].finished
                                   for d in zone), 15, "the zone to play")
        errors = {d: st.played(d, bid)[0].started_true * 1000 - at * 1000 for d in zone}
        late = {d: round(e, 1) for d, e in errors.items() if abs(e) > START_TOLERANCE_MS}
        assert not late, "started more than 50 ms off T (true time): %s" % late
        assert not any(st.fleet[d].sink.playbacks for d in others)
        await st.until(lambda: _all(st.states(bid), "played"), 10, "head-end shows played")
        assert set(await st.states(bid)) == set(zone)
        log = await st.get("/api/v1/playlog", broadcast_id=bid)
        assert sorted(e["device_id"] for e in log if e["outcome"] == "played") == sorted(zone)

        # 2. an emergency during a programme preempts it everywhere within 1 s
        programme = await st.upload("chuong-trinh.wav", 8.0, 330)
        alarm = await st.upload("bao-lu.wav", 6.0, 880)
        bid = (await st.post("/api/v1/broadcasts", {
            "media_id": programme, "targets": {"zones": ["thon-1"]}, "start_at": None}))["id"]
        await st.until(lambda: all(st.fleet[d].sink.current is not None for d in zone), 15,
                       "the programme to start")
        await asyncio.sleep(1.0)
        # 3. two receivers of thon-2 lose their link before the emergency
        back_early, back_late = others[0], others[1]
        st.fleet.cut(back_early)
        st.fleet.cut(back_late)
        await st.until(lambda: _offline(st, [back_early, back_late]), 10,
                       "the cut receivers offline at the head-end")
        called = time.time()
        emergency = (await st.post("/api/v1/emergency", {"media_id": alarm}))["id"]
        reached = [d for d in zone + others if d not in (back_early, back_late)]
        await st.until(lambda: all(st.played(d, emergency) for d in reached), 5,
                       "the emergency to play on every reachable receiver")
        for device in zone:
            (cut,) = st.played(device, bid)
            assert cut.how == "stopped" and cut.ended_true - called < WITHIN_S
        for device in reached:
            assert st.played(device, emergency)[0].started_true - called < WITHIN_S
        await st.until(lambda: _all(st.states(bid), "preempted"), 10,
                       "the programme shown as preempted")
        assert (await st.get("/api/v1/broadcasts/" + bid))["state"] == "preempted"

        # 3. back while the emergency is current: it plays it
        st.fleet.restore(back_early)
        await st.until(lambda: st.played(back_early, emergency), 20,
                       "the returning receiver to play the current emergency")

        # 2. cancel stops the emergency everywhere within 1 s
        cancelled = time.time()
        r = await st.http.delete("/api/v1/broadcasts/" + emergency, headers=st.headers)
        assert r.status_code == 200, r.text
        playing = reached + [back_early]
        await st.until(lambda: all(st.played(d, emergency)[-1].finished for d in playing), 5,
                       "the emergency to stop everywhere")
        for device in playing:
            assert st.played(device, emergency)[-1].ended_true - cancelled < WITHIN_S
        await st.until(lambda: _all_of(st.states(emergency), playing, "cancelled"), 10,
                       "the emergency shown as cancelled")

        # 3. back after the cancel: it does not play it
        st.fleet.restore(back_late)
        await st.until(lambda: _online(st, [back_late]), 20, "the late receiver back")
        await asyncio.sleep(2.0)
        assert not st.played(back_late, emergency)
        assert not st.fleet.crashed()


async def _all(states_coro, state):
    states = await states_coro
    return bool(states) and all(s == state for s in states.values())


async def _all_of(states_coro, ids, state):
    states = await states_coro
    return all(states.get(d) == state for d in ids)


async def _offline(st, ids):
    devices = {d["id"]: d for d in await st.get("/api/v1/devices")}
    return all(not devices[d]["online"] for d in ids)


async def _online(st, ids):
    devices = {d["id"]: d for d in await st.get("/api/v1/devices")}
    return all(devices[d]["online"] for d in ids)


async def test_headend_killed_during_a_broadcast_loses_no_proof_of_play(tmp_path,
                                                                       mosquitto_broker):
    """Acceptance 4: SIGKILL the head-end before air time, restart it after: every report
    the receivers sent meanwhile is in the play log."""
    await _kill_the_headend_during_a_broadcast(
        Station(tmp_path, mosquitto_broker, {"thon-1": 3, "thon-2": 3}))


async def test_headend_killed_loses_no_proof_of_play_on_the_embedded_broker_too(tmp_path):
    """Acceptance 4 on `loaxa broker` (amqtt), every client logged in with its own account
    from the head-end's export: amqtt queues for a persistent session only if it is not
    anonymous."""
    accounts = tmp_path / "broker"
    broker = start_embedded_broker(accounts, config_dir=accounts, start=False)
    try:
        await _kill_the_headend_during_a_broadcast(
            Station(tmp_path, broker, {"thon-1": 3, "thon-2": 3}, accounts_dir=accounts))
    finally:
        broker.stop()


async def _kill_the_headend_during_a_broadcast(station):
    async with station as st:
        ids = st.zones["thon-1"] + st.zones["thon-2"]
        news = await st.upload("tin-chieu.wav", 1.5, 523)
        at = time.time() + 3.0
        bid = (await st.post("/api/v1/broadcasts", {
            "media_id": news, "targets": {"all": True},
            "start_at": datetime.fromtimestamp(at, UTC).isoformat()}))["id"]
        await st.until(lambda: _all_in(st.states(bid), ("fetched",)), 10,
                       "every receiver to fetch the media")
        await asyncio.to_thread(st.server.kill)
        await st.until(lambda: all(st.played(d, bid) and st.played(d, bid)[0].finished
                                   for d in ids), 15, "every receiver to play while the "
                                                      "head-end is down")
        await asyncio.sleep(0.5)  # the last reports reach the broker
        await asyncio.to_thread(st.server.start)
        await st.until(lambda: _complete_log(st, bid, ids), 20,
                       "every proof-of-play record after the restart")
        await st.until(lambda: _all(st.states(bid), "played"), 10, "every receiver played")


async def _all_in(states_coro, allowed):
    states = await states_coro
    return bool(states) and all(s in allowed for s in states.values())


async def _complete_log(st, bid, ids):
    log = await st.get("/api/v1/playlog", broadcast_id=bid)
    done = sorted(e["device_id"] for e in log if e["outcome"] == "played" and e["started_at"])
    return done == sorted(ids)
