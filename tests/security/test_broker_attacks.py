"""Attacks from the "hostile run" on the brokers, each replayed against the embedded broker
(amqtt, `loaxa broker`) and Mosquitto with the head-end's accounts (docs/security.md).

A receiver holds its own password (dev2 here) and tries to reach what belongs to another
receiver (dev1) or to the head-end."""

import queue

import paho.mqtt.client as mqtt
import pytest

from protocol import topics
from tests import test_embedded_broker_security as accounts
from tests.test_embedded_broker_security import SITE, WAIT_S, Client, cmd

pytestmark = pytest.mark.integration
secure_broker = accounts.secure_broker  # the same fixture: amqtt and Mosquitto, same accounts


def status(device):
    return topics.device_topic(SITE, device, topics.STATUS)


class Peer(Client):
    """A Client that may carry a last will, records its disconnection and never reconnects on
    its own (an automatic reconnect would take the session back and hide what is tested)."""

    def __init__(self, broker, client_id, username, password, clean=True, will=None):
        self.messages = queue.Queue()
        self.acks = queue.Queue()
        self.disconnected = queue.Queue()
        connected = queue.Queue()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                clean_session=clean, reconnect_on_failure=False)
        self.mqtt.username_pw_set(username, password)
        if will:
            self.mqtt.will_set(will[0], will[1], qos=1)
        self.mqtt.on_connect = lambda c, u, f, rc, p: connected.put((rc, f.session_present))
        self.mqtt.on_disconnect = self._on_disconnect
        self._connected = connected
        self.mqtt.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.mqtt.on_subscribe = lambda c, u, mid, rcs, p: self.acks.put(rcs)
        self.mqtt.connect(broker.host, broker.port, keepalive=30)
        self.mqtt.loop_start()
        # (None, None) if the broker closed the connection without a CONNACK
        self.result, self.session_present = connected.get(timeout=WAIT_S)

    def _on_disconnect(self, client, userdata, flags, rc, properties):
        self.disconnected.put(rc)
        self._connected.put((None, None))

    def publish_retained(self, topic, payload):
        self.mqtt.publish(topic, payload, qos=1, retain=True).wait_for_publish(WAIT_S)

    def drop(self):
        """Lose the link without a DISCONNECT, as a receiver losing power: the will is due."""
        self.mqtt.loop_stop()
        sock = self.mqtt.socket()
        if sock is not None:
            sock.close()

    def drain(self, timeout=0.5):
        """Every message received until none has come for ``timeout`` seconds."""
        got = []
        while True:
            try:
                got.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                return got

    def was_disconnected(self, timeout=WAIT_S):
        try:
            self.disconnected.get(timeout=timeout)
        except queue.Empty:
            return False
        return True


@pytest.fixture
def peers():
    made = []

    def connect(broker, client_id, username, password, clean=True, will=None):
        made.append(Peer(broker, client_id, username, password, clean, will))
        return made[-1]

    yield connect
    for peer in made:
        peer.close()


def test_a_receiver_cannot_forge_another_receivers_report_with_its_last_will(secure_broker,
                                                                             peers):
    headend = peers(secure_broker, "headend", "headend", "pw-headend")
    assert headend.subscribe("loaxa/v1/#")

    forger = peers(secure_broker, "dev2", "dev2", "pw-two",
                   will=(status("dev1"), b"forged offline"))
    if secure_broker.name == "amqtt":
        # refused at CONNECT, before any session is touched
        assert str(forger.result) == "Not authorized"
    forger.drop()

    # the same drop with a will on its own topic is published: the mechanism works, and what
    # the head-end hears first would be the forged will if it had been published
    honest = peers(secure_broker, "dev2", "dev2", "pw-two", will=(status("dev2"), b"offline"))
    assert honest.result == 0
    honest.drop()
    assert headend.received(1) == {(status("dev2"), b"offline")}
    assert headend.nothing_more()


def test_a_will_topic_with_wildcards_is_refused(secure_broker, peers):
    headend = peers(secure_broker, "headend", "headend", "pw-headend")
    assert headend.subscribe("loaxa/v1/#")
    forger = peers(secure_broker, "dev2", "dev2", "pw-two",
                   will=("loaxa/v1/%s/dev/+/status" % SITE, b"everyone offline"))
    # amqtt answers "not authorized"; Mosquitto closes the connection without a CONNACK
    assert (str(forger.result) == "Not authorized" if secure_broker.name == "amqtt"
            else forger.result is None)
    forger.drop()
    assert headend.nothing_more()


def test_a_second_connect_with_the_same_client_id_closes_the_first(secure_broker, peers):
    """The old connection must be closed so that its client notices and reconnects, not be
    left open without its subscriptions; the new one carries on with the session."""
    first = peers(secure_broker, "dev1", "dev1", "pw-one", clean=False)
    assert first.subscribe(cmd("dev1"))
    second = peers(secure_broker, "dev1", "dev1", "pw-one", clean=False)
    assert second.result == 0 and second.session_present
    assert first.was_disconnected()
    assert not first.mqtt.is_connected()

    headend = peers(secure_broker, "headend", "headend", "pw-headend")
    headend.publish(cmd("dev1"), b"play")
    assert second.received(1) == {(cmd("dev1"), b"play")}
    assert first.nothing_more(0.2)
    assert second.mqtt.is_connected() and second.nothing_more(0.2)

    # a clean session taking over closes the old connection just the same
    third = peers(secure_broker, "dev1", "dev1", "pw-one")
    assert third.result == 0 and not third.session_present
    assert second.was_disconnected()
    assert third.subscribe(cmd("dev1"))
    headend.publish(cmd("dev1"), b"stop")
    assert third.received(1) == {(cmd("dev1"), b"stop")}


def test_retained_messages_obey_the_read_acl(secure_broker, peers):
    headend = peers(secure_broker, "headend", "headend", "pw-headend")
    assert headend.subscribe("loaxa/v1/#")  # a filter every connecting client could be fed
    dev2 = peers(secure_broker, "dev2", "dev2", "pw-two")
    try:
        dev2.publish_retained(status("dev2"), b"born")  # every receiver's retained birth
        headend.publish_retained(cmd("dev1"), b"for dev1")
        assert headend.received(2) == {(status("dev2"), b"born"), (cmd("dev1"), b"for dev1")}

        dev1 = peers(secure_broker, "dev1", "dev1", "pw-one")
        for wide in ("loaxa/v1/#", "loaxa/v1/%s/dev/+/status" % SITE, status("dev2")):
            dev1.subscribe(wide)  # amqtt refuses these, Mosquitto grants and filters
        # its own retained command does come, and it comes after anything the filters above
        # would have let through
        assert dev1.subscribe(cmd("dev1"))
        # (Mosquitto also sends it for the wide filters, which do match this readable topic)
        got = [dev1.messages.get(timeout=WAIT_S)] + dev1.drain()
        assert set(got) == {(cmd("dev1"), b"for dev1")}, got
    finally:
        headend.publish_retained(cmd("dev1"), b"")  # clear them for the other tests
        dev2.publish_retained(status("dev2"), b"")
