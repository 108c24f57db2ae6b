"""The brokers every integration test stands on: both keep retained messages and fire last
wills, come back on the same port after a crash, and the secured Mosquitto enforces the
per-device ACL of protocol/topics.py."""

import queue
import subprocess
import sys

import paho.mqtt.client as mqtt
import pytest

from protocol import topics
from tools.testbrokers import free_port

pytestmark = pytest.mark.integration
WAIT_S = 5


class Client:
    """A paho client that records what it receives, for plain sequential test code."""

    def __init__(self, broker, client_id, username=None, password=None, will=None):
        self.messages = queue.Queue()
        self.subscribed = queue.Queue()
        self.connected = queue.Queue()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self.mqtt.username_pw_set(username, password)
        if will:
            self.mqtt.will_set(will[0], will[1], qos=1, retain=True)
        self.mqtt.on_connect = lambda c, u, f, rc, p: self.connected.put(rc)
        self.mqtt.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.mqtt.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.put(rcs)
        self.mqtt.connect(broker.host, broker.port, keepalive=5)
        self.mqtt.loop_start()
        self.result = self.connected.get(timeout=WAIT_S)

    def subscribe(self, topic):
        self.mqtt.subscribe(topic, qos=1)
        return self.subscribed.get(timeout=WAIT_S)

    def publish(self, topic, payload, retain=False):
        self.mqtt.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def next_message(self, timeout=WAIT_S):
        return self.messages.get(timeout=timeout)

    def no_message(self, timeout=0.5):
        try:
            self.messages.get(timeout=timeout)
        except queue.Empty:
            return True
        return False

    def cut(self):
        """Drop the TCP connection without DISCONNECT, as a receiver losing power does."""
        self.mqtt.loop_stop()
        self.mqtt.socket().close()

    def close(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def test_retained_status_and_last_will_reach_a_late_subscriber(mqtt_broker):
    status = topics.device_topic("xa1", "dev1", topics.STATUS)
    device = Client(mqtt_broker, "dev1", will=(status, b"death"))
    device.publish(status, b"birth", retain=True)
    device.cut()

    headend = Client(mqtt_broker, "headend")
    headend.subscribe(topics.uplink_filter("xa1", topics.STATUS))
    assert headend.next_message() == (status, b"death", True)
    headend.close()


def test_broker_comes_back_on_the_same_port_after_a_crash(mqtt_broker):
    port = mqtt_broker.port
    mqtt_broker.kill()
    assert not mqtt_broker.running
    mqtt_broker.start()
    assert mqtt_broker.port == port
    client = Client(mqtt_broker, "after-restart")
    assert client.result == 0
    client.publish("loaxa/v1/xa1/stream/s1", b"x")
    client.close()


def test_secure_mosquitto_holds_each_device_to_its_own_topics(secure_mosquitto_factory):
    broker = secure_mosquitto_factory({"dev1": "pw-one", "dev2": "pw-two"})
    headend = Client(broker, "he", "headend", broker.accounts["headend"])
    assert headend.result == 0
    headend.subscribe("loaxa/v1/#")

    dev1 = Client(broker, "dev1", "dev1", "pw-one")
    assert dev1.result == 0
    granted = dev1.subscribe(topics.device_topic("xa1", "dev2", topics.CMD))
    dev1.subscribe(topics.device_topic("xa1", "dev1", topics.CMD))
    dev1.subscribe(topics.stream_topic("xa1", "live"))

    # A device cannot speak for another device; it can speak for itself.
    dev1.publish(topics.device_topic("xa1", "dev2", topics.EVENT), b"forged")
    dev1.publish(topics.device_topic("xa1", "dev1", topics.EVENT), b"mine")
    assert headend.next_message()[:2] == (topics.device_topic("xa1", "dev1", topics.EVENT), b"mine")
    assert headend.no_message()

    # It hears its own commands and the streams, never another device's commands.
    headend.publish(topics.device_topic("xa1", "dev2", topics.CMD), b"for dev2")
    headend.publish(topics.device_topic("xa1", "dev1", topics.CMD), b"for dev1")
    headend.publish(topics.stream_topic("xa1", "live"), b"frame")
    received = {dev1.next_message()[1], dev1.next_message()[1]}
    assert received == {b"for dev1", b"frame"}
    assert dev1.no_message()
    assert granted is not None
    for client in (headend, dev1):
        client.close()


def test_secure_mosquitto_refuses_anonymous_and_wrong_passwords(secure_mosquitto_factory):
    broker = secure_mosquitto_factory({"dev1": "pw-one"})
    for username, password in ((None, None), ("dev1", "wrong"), ("nobody", "pw-one")):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder")
        if username:
            client.username_pw_set(username, password)
        codes = queue.Queue()
        client.on_connect = lambda c, u, f, rc, p, codes=codes: codes.put(rc)
        client.connect(broker.host, broker.port)
        client.loop_start()
        code = codes.get(timeout=WAIT_S)
        client.loop_stop()
        assert code.is_failure, (username, code)


def test_loaxa_broker_command_announces_its_address_and_stops_on_sigterm(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "broker", "--port", str(port),
                             "--allow-anonymous"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == "broker listening on 127.0.0.1:%d" % port
        proc.terminate()
        assert proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_loaxa_lists_its_commands_and_explains_a_missing_one(capsys):
    from tools import cli

    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    for name in ("broker", "headend", "sim", "audio", "device"):
        assert name in listing
    assert cli.main(["no-such-command"]) == 2
