"""The MQTT service against real brokers: receivers' reports become rows, time requests are
answered at once, malformed input is counted, and reports sent while the head-end is away are
delivered when it is back (persistent session, acknowledged only after the commit)."""

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from polling import wait_for
from sqlalchemy import select

from headend.db import make_engine, make_session_factory, migrate
from headend.models import PlayLog, Receiver
from headend.mqtt.service import MqttService
from headend.services.devices import provision_device
from headend.settings import Settings
from protocol import messages, topics
from protocol.signing import key_from_hex

SITE = "xa-ingest"


class FakeBoard:
    """A receiver's MQTT side, reduced to publishing reports (paho, like any client), sealed
    with its key as the firmware does."""

    def __init__(self, broker, device, key):
        self.device = device
        self.key = key_from_hex(key)
        self.replies = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device)
        self.client.on_message = lambda c, u, m: self.replies.append(m.payload)
        self.client.will_set(topics.device_topic(SITE, device, "status"),
                             messages.seal_report(self.key, "status",
                                                  messages.death(device, 1, 1)),
                             qos=1, retain=True)
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.device_topic(SITE, device, "time"), qos=0)
        self.client.loop_start()

    def send(self, leaf, payload, qos=1, retain=False, sealed=True):
        if sealed and leaf in messages.REPORT_LEAVES:
            payload = messages.seal_report(self.key, leaf, payload)
        info = self.client.publish(topics.device_topic(SITE, self.device, leaf), payload,
                                   qos=qos, retain=retain)
        info.wait_for_publish(5)

    def event(self, seq, kind, **fields):
        self.send("evt", messages.encode(messages.event(seq, kind, int(time.time() * 1000),
                                                        fields)))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def headend(tmp_path, database_url):
    """A database (SQLite, then PostgreSQL) with two receivers, and a way to start MQTT
    services on it."""
    url = database_url or "sqlite:///%s" % (tmp_path / "h.sqlite3")
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    keys = {}
    with factory() as session:
        for device in ("d1", "d2"):
            keys[device] = provision_device(
                session, site_id=SITE, name=device, device_id=device,
                settings=Settings(data_dir=tmp_path, database_url=url)).device_key  # its KEK
    services = []

    def start(broker, **overrides):
        settings = Settings(data_dir=tmp_path, database_url=url, site_id=SITE,
                            mqtt_host=broker.host, mqtt_port=broker.port, **overrides)
        service = MqttService(settings=settings, session_factory=factory).start()
        services.append(service)
        assert service.wait_connected(10), "head-end did not connect"
        return service

    start.factory = factory
    start.keys = keys
    yield start
    for service in services:
        service.stop()
    engine.dispose()


def rows(factory, model, **where):
    with factory() as session:
        query = select(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return list(session.scalars(query))


def test_reports_are_stored_and_time_requests_answered(mqtt_broker, headend):
    service = headend(mqtt_broker)
    board = FakeBoard(mqtt_broker, "d1", headend.keys["d1"])
    try:
        board.send("status", messages.birth("d1", 1, 1, "0.1.0", {"codecs": ["mp3"]}, "sim"),
                   retain=True)
        board.send("hb", messages.encode({"v": 1, "boot": 1, "conn": 1, "up": 5}), qos=0)
        board.event(1, "started", bid="bx", item="m1", at=1, skip=0)
        board.event(2, "ended", bid="bx", item="m1", reason="finished", played=1000)
        wait_for(lambda: rows(headend.factory, PlayLog, device_id="d1", outcome="played"),
                 what="proof of play in the database")
        (receiver,) = rows(headend.factory, Receiver, id="d1")
        assert receiver.online and receiver.telemetry["up"] == 5
        t0 = 123456
        board.send("treq", messages.time_request(t0), qos=0)
        reply = wait_for(lambda: board.replies, what="a time reply")[0]
        got_t0, t1, t2 = messages.open_time_reply(key_from_hex(headend.keys["d1"]), reply, "d1")
        assert got_t0 == t0 and t1 <= t2 and abs(t2 - time.time() * 1000) < 5000
        # malformed input on every subscribed topic: counted, dropped, the service goes on
        for leaf in ("status", "hb", "evt", "treq"):
            board.send(leaf, b"\x00garbage", qos=1 if leaf in ("status", "evt") else 0,
                       sealed=False)
        board.event(3, "fetched", item="m1", sha="a" * 64)
        wait_for(lambda: service.stats["malformed"] >= 4, what="malformed reports counted")
        wait_for(lambda: service.stats["event.fetched"] == 1, what="service still ingesting")
    finally:
        board.close()


def test_reports_sent_while_the_headend_is_away_arrive_when_it_returns(mosquitto_broker,
                                                                      headend):
    # Mosquitto only: the embedded amqtt broker (0.12) does not keep a disconnected client's
    # QoS-1 messages for it, so this guarantee needs Mosquitto (or another full broker).
    first = headend(mosquitto_broker)
    first.stop()  # the persistent session stays on the broker
    board = FakeBoard(mosquitto_broker, "d2", headend.keys["d2"])
    try:
        for seq in range(1, 21):
            board.event(seq, "started", bid="b%d" % seq, item="m1", at=1, skip=0)
        headend(mosquitto_broker)
        wait_for(lambda: len(rows(headend.factory, PlayLog, device_id="d2")) == 20, timeout=15,
                 what="all 20 reports sent while the head-end was away")
    finally:
        board.close()


def test_a_death_marks_the_receiver_offline(mqtt_broker, headend):
    headend(mqtt_broker)
    board = FakeBoard(mqtt_broker, "d1", headend.keys["d1"])
    board.send("status", messages.birth("d1", 1, 1, "0.1.0", {"codecs": ["mp3"]}, "sim"),
               retain=True)
    wait_for(lambda: rows(headend.factory, Receiver, id="d1", online=True), what="online")
    board.client.loop_stop()
    board.client.socket().close()  # the link dies: the broker publishes the will
    wait_for(lambda: rows(headend.factory, Receiver, id="d1", online=False), timeout=15,
             what="offline from the death message")
    assert threading.active_count() < 50


def test_reports_forged_with_a_stolen_broker_password_change_nothing(mqtt_broker, headend):
    """Somebody with d1's broker password (sniffed, or read off the pole's box) but not its
    key publishes on d1's topics through the real broker: a forged death, a false proof of
    play, a heartbeat with a far-future session. None of it reaches a row."""
    service = headend(mqtt_broker)
    board = FakeBoard(mqtt_broker, "d1", headend.keys["d1"])
    attacker = FakeBoard(mqtt_broker, "d1-attacker", headend.keys["d2"])  # a key, not d1's
    try:
        board.send("status", messages.birth("d1", 1, 1, "0.1.0", {"codecs": ["mp3"]}, "sim"),
                   retain=True)
        wait_for(lambda: rows(headend.factory, Receiver, id="d1", online=True), what="online")
        forged = {"status": messages.death("d1", 1, 1),
                  "hb": messages.encode({"v": 1, "boot": 2 ** 30, "conn": 1, "up": 5}),
                  "evt": messages.encode(messages.event(7, "ended", int(time.time() * 1000),
                                                        {"bid": "bx", "reason": "finished"}))}
        for leaf, body in forged.items():
            info = attacker.client.publish(topics.device_topic(SITE, "d1", leaf),
                                           messages.seal_report(attacker.key, leaf, body), qos=1)
            info.wait_for_publish(5)
            info = attacker.client.publish(topics.device_topic(SITE, "d1", leaf), body, qos=1)
            info.wait_for_publish(5)
        wait_for(lambda: service.stats["malformed"] >= 6, what="the forgeries dropped")
        (receiver,) = rows(headend.factory, Receiver, id="d1")
        assert receiver.online and (receiver.session_boot, receiver.session_conn) == (1, 1)
        assert receiver.telemetry is None
        assert rows(headend.factory, PlayLog, device_id="d1") == []
        assert service.stats["malformed.bad-signature"] == 3
    finally:
        attacker.close()
        board.close()
