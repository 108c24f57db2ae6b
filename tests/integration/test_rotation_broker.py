"""Rotation of a receiver's key and broker password end to end, with no moment it is locked out:
the head-end in its own process, a real Mosquitto that reads the head-end's account files
(``LOAXA_BROKER_ACCOUNTS_DIR``; sent a SIGHUP when they change, as Mosquitto needs), and
simulated receivers. A technician asks for the rotation over the HTTP API; the receiver takes
the new account and key, the head-end confirms and drops the old ones, and the receiver stays
online and obeys commands under the new key. Power cuts (the MicroPython process killed):
before the offer reached it, right after the offer reached its flash, and with an offer on
flash that the broker does not know: each time it boots and connects.
"""

import asyncio
import json
import os
import signal

import httpx
import pytest
from polling import until
from sqlalchemy import select

from headend.db import make_engine, make_session_factory, migrate
from headend.keystore import open_stored
from headend.models import Receiver
from headend.process import HeadendProcess
from headend.services.provisioning import provision_fleet
from headend.services.rotation import password_aad
from headend.services.users import create_user
from headend.settings import Settings
from simulator.fleet import DeviceSpec, Fleet
from tools.broker_acl import read_passwd
from tools.testbrokers import BrokerProcess, find_mosquitto, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "xa-rot"
PASSWORD = "rot-tech-pass"
HEADEND_PASSWORD = "headend-rot-pass"


def start_mosquitto_on(accounts_dir, workdir):
    """Mosquitto with the head-end's own passwd and acl (its loaxa.conf's account lines)."""
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    host, port = "127.0.0.1", free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "mosquitto.log"
    conf = ["listener %d %s" % (port, host), "persistence false", "log_dest file %s" % log_path,
            "log_type error", "log_type warning", "log_type notice"]
    if os.geteuid() == 0:
        conf.append("user root")
    keep = ("allow_anonymous", "use_username_as_clientid", "password_file", "acl_file")
    conf += [line for line in (accounts_dir / "loaxa.conf").read_text().splitlines()
             if line.startswith(keep)]
    conf_path = workdir / "mosquitto.conf"
    conf_path.write_text("\n".join(conf) + "\n")
    return BrokerProcess("mosquitto", [binary, "-c", str(conf_path)], host, port,
                         workdir / "mosquitto.out", log_path=log_path).start()


async def reload_on_change(broker, passwd):
    """SIGHUP Mosquitto whenever the head-end rewrites its password file."""
    seen = None
    while True:
        try:
            stat = passwd.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            stamp = None
        if stamp != seen:
            if seen is not None:
                os.kill(broker.pid, signal.SIGHUP)
            seen = stamp
        await asyncio.sleep(0.02)


class Site:
    def __init__(self, tmp_path, runtime):
        self.tmp = tmp_path
        self.runtime = runtime
        self.accounts = tmp_path / "broker-accounts"
        self.settings = Settings(data_dir=tmp_path / "headend", site_id=SITE,
                                 mqtt_username="headend", mqtt_password=HEADEND_PASSWORD,
                                 broker_accounts_dir=self.accounts)

    async def start(self):
        migrate(self.settings.resolved_database_url)
        self.engine = make_engine(self.settings.resolved_database_url)
        self.sessions = make_session_factory(self.engine)
        with self.sessions() as session:
            made = provision_fleet(session, settings=self.settings, receivers=1,
                                   zones=[("thon-1", "Thôn 1")], prefix="r-",
                                   broker=("127.0.0.1", 1))
            create_user(session, username="tech", password=PASSWORD, role="technician")
        self.broker = start_mosquitto_on(self.accounts, self.tmp / "mosquitto")
        self.reloader = asyncio.ensure_future(reload_on_change(self.broker,
                                                               self.accounts / "passwd"))
        self.server = HeadendProcess(
            self.tmp / "headend", mqtt=(self.broker.host, self.broker.port),
            env={"LOAXA_SITE_ID": SITE, "LOAXA_MQTT_USERNAME": "headend",
                 "LOAXA_MQTT_PASSWORD": HEADEND_PASSWORD,
                 "LOAXA_BROKER_ACCOUNTS_DIR": str(self.accounts)})
        await asyncio.to_thread(self.server.start)
        self.http = httpx.AsyncClient(base_url=self.server.url, timeout=20)
        r = await self.http.post("/api/v1/auth/token",
                                 data={"username": "tech", "password": PASSWORD})
        self.headers = {"Authorization": "Bearer " + r.json()["access_token"]}
        specs = [DeviceSpec.from_json(d) for d in made["devices"]]
        self.device = specs[0].id
        self.fleet = Fleet(specs, site=SITE, broker=(self.broker.host, self.broker.port),
                           workdir=str(self.tmp / "boards"), runtime=self.runtime)
        await self.fleet.start()
        self.sim = self.fleet[self.device]
        self.flash = os.path.join(str(self.tmp / "boards"), self.device)
        await self.online()
        return self

    async def stop(self):
        await self.fleet.stop()
        await self.http.aclose()
        await asyncio.to_thread(self.server.stop)
        self.reloader.cancel()
        self.broker.stop()
        self.engine.dispose()

    def logs(self):
        rx = getattr(self.sim, "receiver", None)
        state = "" if rx is None else "receiver: %r %r %r %r" % (
            rx.core.counters, rx.credentials.__dict__, rx.mqtt.stats, rx.mqtt.user)
        from headend.models import DeviceEvent
        with self.sessions() as session:
            state += "\nevents: %r" % [(e.kind, e.seq) for e in session.scalars(
                select(DeviceEvent).where(DeviceEvent.device_id == self.device))]
        state += "\nacl:\n" + (self.accounts / "acl").read_text()
        return "head-end:\n%s\nbroker:\n%s\n%s" % (self.server.log_text()[-2000:],
                                                     self.broker.log_text()[-1500:], state)

    def row(self):
        with self.sessions() as session:
            return session.scalars(select(Receiver).where(Receiver.id == self.device)).one()

    def boots(self):
        return self.row().session_boot or 0

    async def online(self, timeout=60):
        async def check():
            r = await self.http.get("/api/v1/devices/%s" % self.device, headers=self.headers)
            return r.json()["online"]
        await until(check, timeout, "receiver online", log=self.logs)

    async def rotate(self):
        r = await self.http.post("/api/v1/devices/%s/rotate" % self.device, headers=self.headers)
        assert r.status_code == 202, r.text
        return r.json()

    async def rotated(self, user, timeout=60):
        await until(lambda: self.row().rekey_id is None and self.row().mqtt_user == user,
                    timeout, "rotation to %s confirmed" % user, log=self.logs)

    async def obeys(self):
        """A command sent now (signed with the head-end's current key) is acked."""
        r = await self.http.post("/api/v1/devices/%s/commands" % self.device,
                                 json={"kind": "identify", "args": {"secs": 1}},
                                 headers=self.headers)
        assert r.status_code == 202, r.text
        cmd_id = r.json()["command_id"]

        async def done():
            r = await self.http.get("/api/v1/devices/%s/commands" % self.device,
                                    headers=self.headers)
            return any(c["id"] == cmd_id and c["state"] == "done" for c in r.json())
        await until(done, 30, "command acked", log=self.logs)

    def pending_on_flash(self, key_hex, user, password, rid="00000000deadbeef"):
        with open(os.path.join(self.flash, "rekey.json"), "w") as f:
            json.dump({"rid": rid, "key": key_hex, "user": user, "password": password}, f)


@pytest.fixture
def runtime(request):
    if request.param == "micropython":
        from tools import mpbuild

        if mpbuild.esp32_model() is None:
            pytest.skip("no ESP32-model MicroPython: %s" % mpbuild.skip_reason())
    return request.param


@pytest.mark.parametrize("runtime", ["cpython", "micropython"], indirect=True)
async def test_a_receiver_rotates_and_stays_connected(tmp_path, runtime):
    site = await Site(tmp_path, runtime).start()
    try:
        device = site.device
        assert site.row().mqtt_user == device
        started = await site.rotate()
        await site.rotated(device + ".b")
        await site.online()
        await site.obeys()  # commands under the new key, acked under it
        passwd = read_passwd(site.accounts / "passwd")
        assert device + ".b" in passwd and device not in passwd  # the old account is gone
        done = json.load(open(os.path.join(site.flash, "rekey.done.json")))
        assert done["rid"] == started["rotation_id"] and done["user"] == device + ".b"
        assert not os.path.exists(os.path.join(site.flash, "rekey.json"))
        # and back to the account named as the device
        await site.rotate()
        await site.rotated(device)
        await site.obeys()
    finally:
        await site.stop()


@pytest.mark.parametrize("runtime", ["micropython"], indirect=True)
async def test_power_cuts_during_a_rotation_leave_a_receiver_that_connects(tmp_path, runtime):
    site = await Site(tmp_path, runtime).start()
    try:
        device, sim = site.device, site.sim
        # 1. Cut before the offer reached it: it boots on the old account, and its birth under
        # the old key gets the offer again.
        await sim.kill()
        await site.rotate()
        await sim.start()
        await site.rotated(device + ".b")
        await site.online()
        await site.obeys()
        # 2. Cut right after the offer reached its flash: both sets there; it connects with
        # the new one, which ends the rotation.
        await sim.kill()
        await site.rotate()
        with site.sessions() as session:
            row = session.get(Receiver, device)
            new_key = open_stored(session, device, row.pending_key)
            password = bytes.fromhex(open_stored(session, password_aad(device),
                                                 row.pending_password)).decode()
            rid, user = row.rekey_id, row.pending_mqtt_user
        site.pending_on_flash(new_key, user, password, rid)
        await sim.start()
        await site.rotated(device)
        await site.online()
        await site.obeys()
        # 3. An offer on flash the broker refuses (a rotation it never had): it goes back to
        # the set it has and connects.
        await sim.kill()
        boots = site.boots()
        site.pending_on_flash("ab" * 32, device + ".b", "not-this-one")
        await sim.start()
        await until(lambda: site.boots() > boots, 90, "a birth after the boot", log=site.logs)
        await site.online()
        await site.obeys()
    finally:
        await site.stop()
