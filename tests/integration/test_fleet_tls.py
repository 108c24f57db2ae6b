"""Receivers verify the broker: TLS with CERT_REQUIRED against the site's CA, made by provisioning.

A real Mosquitto listens with TLS on 127.0.0.1, configured with the lines `loaxa headend
export-broker-tls` writes and the certificates the provisioning code made; a second, plain
listener lets the head-end's account watch what arrives. The receiver is the firmware's shell
and MQTT client on the simulator's board (HostPlatform), configured from the provisioned fleet
file exactly as a pole would be. It gets its birth through when the broker's certificate chains
to its site's CA and names the broker; it refuses to connect (no birth, counted TLS failures)
when the broker shows a certificate from another CA, or one for another name. Each connect
cycle asks DNS once (the link's counting resolver), however many attempts it makes.
"""

import asyncio
import queue
import ssl
import threading
import time

import paho.mqtt.client as paho
import pytest

from firmware.shell import Receiver
from headend.db import make_engine, make_session_factory, migrate
from headend.services import tls
from headend.services.provisioning import provision_fleet, receiver_config
from headend.settings import Settings
from protocol import messages, topics
from protocol.signing import key_from_hex
from simulator.host import HostPlatform
from tools.testbrokers import BrokerUnavailable, free_port, start_mosquitto

pytestmark = pytest.mark.integration

SITE = "xa-tls"
NAME = "broker.xa-tls.test"  # the broker's name; the receiver's DNS (link.hosts) says 127.0.0.1
WAIT_S = 15
REFUSED_S = 3.0  # a refusing receiver is watched this long: several attempts, no birth


def site_settings(path, site=SITE):
    return Settings(data_dir=path, site_id=site, broker_tls=True, broker_tls_names=[NAME])


def provision(settings, port):
    """One receiver provisioned for TLS: (its config.json, the fleet file)."""
    url = settings.resolved_database_url
    migrate(url)
    session = make_session_factory(make_engine(url))()
    try:
        fleet = provision_fleet(session, settings=settings, receivers=1, zones=[],
                                broker=(NAME, port), actor="test")
    finally:
        session.close()
    return receiver_config(fleet, fleet["devices"][0]), fleet


class Observer:
    """The head-end's account on the plain listener, watching receivers' status topic."""

    def __init__(self, broker):
        self.messages = queue.Queue()
        connected = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="headend",
                                  protocol=paho.MQTTv311)
        self.client.username_pw_set("headend", broker.accounts["headend"])
        self.client.on_connect = lambda *a: connected.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.connect(broker.host, broker.plain_port, keepalive=30)
        self.client.loop_start()
        assert connected.wait(WAIT_S), "observer could not connect: " + broker.log_text()[-2000:]
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.subscribe("%s/%s/dev/+/status" % (topics.ROOT, SITE), qos=1)
        assert subscribed.wait(WAIT_S)

    async def births(self, timeout_s, key_hex):
        """Births seen within ``timeout_s`` (returns at the first one), each opened with the
        receiver's key as the head-end does."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                _topic, payload = self.messages.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.05)
                continue
            message = messages.open_report(key_from_hex(key_hex), topics.STATUS, payload)
            if message.get("k") == "birth":
                return [message]
        return []

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def tls_mosquitto(tmp_path):
    """``start(files, accounts)``: Mosquitto with a TLS listener using ``files`` (what
    export_broker_tls wrote) and a plain one (``broker.plain_port``); stopped after the test."""
    started = []

    def start(files, accounts):
        plain = free_port()
        paths = {"cafile": files[0], "certfile": files[1], "keyfile": files[2]}
        try:
            broker = start_mosquitto(tmp_path / ("mosquitto-%d" % len(started)), tls=paths,
                                     accounts=accounts,
                                     extra_conf=["listener %d 127.0.0.1" % plain])
        except BrokerUnavailable as exc:
            pytest.skip(str(exc))
        broker.plain_port = plain
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


async def run_receiver(config, tmp_path):
    platform = HostPlatform(config["device"], storage_dir=str(tmp_path / "flash"))
    platform.link.hosts[NAME] = "127.0.0.1"
    receiver = Receiver(config, platform)
    task = asyncio.create_task(receiver.run())
    return receiver, platform, task


async def stop_receiver(receiver, task):
    await asyncio.wait_for(receiver.shutdown(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def until(condition, timeout_s=WAIT_S):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return condition()


async def test_receiver_verifies_the_broker_and_gets_its_birth_through(tmp_path, tls_mosquitto):
    settings = site_settings(tmp_path / "headend")
    port = free_port()
    config, fleet = provision(settings, port)
    files = tls.export_broker_tls(settings=settings, directory=tmp_path / "broker-tls")
    broker = tls_mosquitto(files, {config["broker"]["user"]: config["broker"]["password"]})
    assert broker.port != port  # the receiver dials the broker's real port:
    config["broker"]["port"] = broker.port
    observer = Observer(broker)
    receiver, platform, task = await run_receiver(config, tmp_path)
    try:
        births = await observer.births(WAIT_S, config["key"])
        assert births and births[0]["dev"] == config["device"], broker.log_text()[-2000:]
        mqtt = receiver.mqtt
        # The context the firmware built is a verifying one, for the broker's name.
        assert mqtt.ssl.verify_mode == ssl.CERT_REQUIRED and mqtt.ssl.check_hostname
        assert mqtt.server_hostname == NAME == fleet["broker"]["server_name"]
        assert mqtt.stats["tls_failures"] == 0 and mqtt.stats["connects"] == 1
        assert platform.link.resolves == 1 and mqtt.stats["resolves"] == 1

        # The broker goes away and comes back: a new connect cycle, so one more lookup, however
        # many attempts the outage cost.
        broker.stop()
        assert await until(lambda: not mqtt.connected)
        await asyncio.sleep(2.0)  # a few failed attempts while it is gone
        failures = mqtt.stats["connect_failures"]
        broker.start()
        assert await until(lambda: mqtt.stats["connects"] == 2), broker.log_text()[-2000:]
        assert failures >= 2
        assert 2 <= platform.link.resolves <= 2 + mqtt.stats["connect_failures"] // 3
        assert platform.link.resolves < 1 + mqtt.stats["connect_failures"]
        assert mqtt.stats["tls_failures"] == 0
    finally:
        await stop_receiver(receiver, task)
        observer.stop()


async def refused(tmp_path, config, files, tls_mosquitto):
    broker = tls_mosquitto(files, {config["broker"]["user"]: config["broker"]["password"]})
    config["broker"]["port"] = broker.port
    observer = Observer(broker)
    receiver, platform, task = await run_receiver(config, tmp_path)
    try:
        assert not await observer.births(REFUSED_S, config["key"])
        mqtt = receiver.mqtt
        assert mqtt.stats["connects"] == 0 and not mqtt.connected
        assert mqtt.stats["tls_failures"] >= 2, mqtt.stats
        assert mqtt.stats["tls_failures"] == mqtt.stats["connect_failures"]
        # Each cycle of attempts asked DNS once.
        assert platform.link.resolves <= mqtt.stats["connect_failures"] // 3 + 1
        return mqtt
    finally:
        await stop_receiver(receiver, task)
        observer.stop()


async def test_broker_with_a_certificate_from_another_ca_is_refused(tmp_path, tls_mosquitto):
    settings = site_settings(tmp_path / "headend")
    config, _fleet = provision(settings, 8883)
    # Another site's CA, and a broker certificate from it with the right name.
    other = site_settings(tmp_path / "impostor", site="xa-khac")
    files = tls.export_broker_tls(settings=other, directory=tmp_path / "impostor-tls")
    assert tls.ca_base64(settings=other) != config["broker"]["ca"]
    await refused(tmp_path, config, files, tls_mosquitto)


async def test_broker_certificate_for_another_name_is_refused(tmp_path, tls_mosquitto):
    settings = site_settings(tmp_path / "headend")
    config, _fleet = provision(settings, 8883)
    # The site's own CA, but a certificate for another host (as if the name pointed at another
    # of the site's machines).
    ca_cert, ca_key = tls.load_or_create_ca(settings=settings)
    key = tls._new_key()
    cert = tls.issue_server_certificate(ca_cert, ca_key, key.public_key(),
                                        ["other.xa-tls.test", "127.0.0.2"])
    directory = tmp_path / "wrong-name"
    directory.mkdir()
    paths = [directory / "ca.pem", directory / "broker.pem", directory / "broker.key"]
    paths[0].write_bytes(tls._cert_pem(ca_cert))
    paths[1].write_bytes(tls._cert_pem(cert))
    paths[2].write_bytes(tls._key_pem(key))
    paths[2].chmod(0o600)
    await refused(tmp_path, config, paths, tls_mosquitto)
