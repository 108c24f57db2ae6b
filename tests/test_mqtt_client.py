"""The receiver's MQTT client (firmware/mqtt.py) under CPython asyncio against real brokers.

Each broker test runs against Mosquitto and the embedded broker (the `mqtt_broker` fixture);
the peer on the other side is paho-mqtt, an independent implementation. Packet bytes are
checked in tests/mpy/test_mqtt_packets.py; here it is what a receiver on a pole would live
through: messages both ways, retained state, wills, broker restarts, a broker that hangs,
garbage on the wire, and many receivers in one process as in the simulator.
"""

import asyncio
import os
import queue
import signal
import threading
import time
import uuid

import paho.mqtt.client as paho
import pytest
from local_server import LocalServer

from firmware.mqtt import MQTTClient

pytestmark = pytest.mark.integration

WAIT_S = 10  # upper bound for anything that should happen "soon"; tests end when it does


def ticks_ms():
    return int(time.monotonic() * 1000)


def ticks_diff(new, old):
    return new - old


async def open_connection(host, port, ssl=None):
    return await asyncio.open_connection(host, port, ssl=ssl)


async def until(condition, timeout_s=WAIT_S):
    """Wait for ``condition()`` to hold; its last value (falsy when it timed out)."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return condition()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Receiver:
    """One MQTTClient running in the test's loop, with what it saw."""

    def __init__(self, host, port, client_id=None, **options):
        self.messages = []
        self.message_event = asyncio.Event()
        self.reasons = []
        options.setdefault("backoff_min_ms", 100)
        options.setdefault("backoff_max_ms", 1000)
        self.client = MQTTClient(client_id or unique("rx"), host, port,
                                 open_connection=open_connection, ticks_ms=ticks_ms,
                                 ticks_diff=ticks_diff, on_message=self._on_message,
                                 on_disconnect=self.reasons.append, **options)
        self.task = asyncio.create_task(self.client.run())

    def _on_message(self, topic, payload, retained):
        self.messages.append((topic, bytes(payload), retained))
        self.message_event.set()

    async def next_message(self, timeout_s=WAIT_S):
        deadline = time.monotonic() + timeout_s
        while not self.messages:
            self.message_event.clear()
            await asyncio.wait_for(self.message_event.wait(), deadline - time.monotonic())
        return self.messages.pop(0)

    async def close(self):
        await self.client.close()
        await asyncio.wait_for(self.task, WAIT_S)


class PahoPeer:
    """An independent MQTT client on its own thread (paho-mqtt, MQTT 3.1.1)."""

    def __init__(self, broker):
        self.messages = queue.Queue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=unique("peer"),
                                  protocol=paho.MQTTv311)
        self.client.on_connect = lambda *args: self._connected.set()
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put(
            (m.topic, m.payload, bool(m.retain)))
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(WAIT_S), "paho could not connect"

    def subscribe(self, topic):
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(WAIT_S)

    def publish(self, topic, payload, qos=1, retain=False):
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(WAIT_S)

    async def next_message(self, timeout_s=WAIT_S):
        return await asyncio.to_thread(self.messages.get, True, timeout_s)

    async def no_message_within(self, seconds):
        try:
            got = await asyncio.to_thread(self.messages.get, True, seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected message {got!r}")

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def receivers():
    """``receivers(broker, **options)`` starts a Receiver; all are closed after the test."""
    started = []

    def start(broker, **options):
        receiver = Receiver(broker.host, broker.port, **options)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.close()


@pytest.fixture
def peer_factory():
    started = []

    def start(broker):
        peer = PahoPeer(broker)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


async def test_messages_flow_both_ways_with_qos0_and_qos1(mqtt_broker, receivers, peer_factory):
    peer = await asyncio.to_thread(peer_factory, mqtt_broker)
    await asyncio.to_thread(peer.subscribe, "loaxa/test/up/#")
    rx = receivers(mqtt_broker)
    assert await rx.client.wait_connected(WAIT_S * 1000)
    assert await rx.client.subscribe("loaxa/test/down", qos=1)

    for qos in (0, 1):
        payload = f"lệnh qos{qos}"
        await asyncio.to_thread(peer.publish, "loaxa/test/down", payload.encode(), qos)
        assert await rx.next_message() == ("loaxa/test/down", payload.encode(), False)

        assert await rx.client.publish(f"loaxa/test/up/{qos}", b"\x00report", qos=qos)
        assert await peer.next_message() == (f"loaxa/test/up/{qos}", b"\x00report", False)
    assert rx.client.stats["connects"] == 1 and rx.client.stats["malformed"] == 0


async def test_retained_state_arrives_on_subscribe(mqtt_broker, receivers, peer_factory):
    peer = await asyncio.to_thread(peer_factory, mqtt_broker)
    await asyncio.to_thread(peer.publish, "loaxa/test/config", b"volume=70", 1, True)
    rx = receivers(mqtt_broker)
    await rx.client.subscribe("loaxa/test/config", qos=1)  # remembered while offline
    assert await rx.client.wait_connected(WAIT_S * 1000)
    assert await rx.next_message() == ("loaxa/test/config", b"volume=70", True)


async def test_will_fires_on_abort_and_not_on_clean_close(mqtt_broker, receivers, peer_factory):
    peer = await asyncio.to_thread(peer_factory, mqtt_broker)
    await asyncio.to_thread(peer.subscribe, "loaxa/test/will/#")

    closing = receivers(mqtt_broker, will=("loaxa/test/will/a", b"dead-a", 1, False))
    assert await closing.client.wait_connected(WAIT_S * 1000)
    await closing.close()

    aborting = receivers(mqtt_broker, will=("loaxa/test/will/b", b"dead-b", 1, False))
    assert await aborting.client.wait_connected(WAIT_S * 1000)
    aborting.client.abort()
    # The only will the peer sees is the aborted one's (the closed one's would have come first).
    assert await peer.next_message() == ("loaxa/test/will/b", b"dead-b", False)
    assert await until(lambda: aborting.reasons)
    assert aborting.reasons == ["aborted"] and closing.reasons == ["closed"]
    assert await aborting.client.wait_connected(WAIT_S * 1000)  # and it comes back by itself


async def test_reconnects_and_resubscribes_after_broker_restart(mqtt_broker, receivers,
                                                               peer_factory):
    births = []
    rx = receivers(mqtt_broker)

    async def on_connect():
        births.append(await rx.client.publish("loaxa/test/birth", b"hello", qos=1))

    rx.client.on_connect = on_connect
    await rx.client.subscribe("loaxa/test/cmd", qos=1)
    assert await rx.client.wait_connected(WAIT_S * 1000)

    await asyncio.to_thread(mqtt_broker.restart)
    assert await until(lambda: rx.client.stats["connects"] == 2 and rx.client.connected), \
        f"no reconnect; reasons {rx.reasons!r}"
    assert births == [True, True]

    peer = await asyncio.to_thread(peer_factory, mqtt_broker)
    await asyncio.to_thread(peer.publish, "loaxa/test/cmd", b"after restart", 1)
    assert await rx.next_message() == ("loaxa/test/cmd", b"after restart", False)


async def test_keepalive_notices_a_frozen_broker_and_reconnects(mqtt_broker, receivers):
    keepalive_s = 1
    rx = receivers(mqtt_broker, keepalive=keepalive_s)
    assert await rx.client.wait_connected(WAIT_S * 1000)
    os.kill(mqtt_broker.pid, signal.SIGSTOP)  # alive for TCP, silent for MQTT
    try:
        frozen_at = time.monotonic()
        while not rx.reasons:
            assert time.monotonic() - frozen_at < WAIT_S, "the hung broker went unnoticed"
            await asyncio.sleep(0.02)
        noticed_s = time.monotonic() - frozen_at
    finally:
        os.kill(mqtt_broker.pid, signal.SIGCONT)
    assert rx.reasons == ["keepalive_timeout"]
    assert noticed_s <= 1.5 * keepalive_s + 1.0, noticed_s
    assert await rx.client.wait_connected(WAIT_S * 1000)
    assert await rx.client.publish("loaxa/test/alive", b"1", qos=1)


class GarbageServer(LocalServer):
    """A TCP server on 127.0.0.1 that answers each connection with the next canned reply."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.connections = 0

    async def _handle(self, reader, writer):
        reply = self.replies[min(self.connections, len(self.replies) - 1)]
        self.connections += 1
        try:
            await reader.read(1024)  # the CONNECT
            writer.write(reply)
            await writer.drain()
            await reader.read(1024)  # until the client hangs up
        except OSError:
            pass
        writer.close()


async def test_garbage_from_the_server_is_counted_and_never_crashes():
    connack = b"\x20\x02\x00\x00"
    replies = [
        b"HTTP/1.1 400 Bad Request\r\n\r\n",          # not MQTT at all
        b"\x20\x03\x00\x00\x00",                      # CONNACK of the wrong length
        connack + b"\x30\xff\xff\xff\xff\x7f",        # remaining length of 5 bytes
        connack + b"\x32\x05\x00\x09ab\x00",          # topic longer than the packet
        connack + b"\x90\x03\x00\x01\x07",            # SUBACK with an invalid code
        connack + b"\x30\x05\x00\x02\xff\xfeX",       # topic not UTF-8
        connack + b"\x20\x02\x00\x00",                # a second CONNACK
    ]
    async with GarbageServer(replies) as server:
        rx = Receiver("127.0.0.1", server.port, backoff_min_ms=10, backoff_max_ms=40)
        assert await until(lambda: rx.client.stats["malformed"] >= len(replies)
                           or rx.task.done()), rx.client.stats
        assert not rx.task.done(), rx.task  # run() never ends on its own
        await rx.close()
    assert rx.client.stats["malformed"] >= len(replies)
    assert rx.client.stats["callback_errors"] == 0
    assert rx.task.exception() is None


async def test_fifty_receivers_in_one_loop_all_connect_and_exchange(mqtt_broker, receivers):
    count = 50
    fleet = [receivers(mqtt_broker, client_id=f"fleet-{i:02d}", keepalive=30)
             for i in range(count)]
    for i, rx in enumerate(fleet):
        await rx.client.subscribe(f"loaxa/test/fleet/{i:02d}", qos=1)
    connected = await asyncio.gather(*(rx.client.wait_connected(WAIT_S * 1000) for rx in fleet))
    assert all(connected)

    # Each receiver sends one message to its neighbour.
    sent = await asyncio.gather(*(
        rx.client.publish(f"loaxa/test/fleet/{(i + 1) % count:02d}", f"from {i:02d}".encode(), qos=1)
        for i, rx in enumerate(fleet)))
    assert all(sent)
    got = await asyncio.gather(*(rx.next_message() for rx in fleet))
    for i, message in enumerate(got):
        assert message == (f"loaxa/test/fleet/{i:02d}", f"from {(i - 1) % count:02d}".encode(), False)


async def test_wrong_password_is_refused_and_backs_off_then_right_one_connects(
        secure_mosquitto_factory, receivers):
    broker = secure_mosquitto_factory({"rx-pole-7": "right"})
    wrong = receivers(broker, client_id="rx-pole-7", user="rx-pole-7", password="wrong")
    assert await until(lambda: wrong.client.stats["refused"]), wrong.client.stats
    assert wrong.client.last_refusal in ("bad_credentials", "not_authorized")
    assert not wrong.client.connected
    await wrong.close()

    right = receivers(broker, client_id="rx-pole-7", user="rx-pole-7", password="right")
    assert await right.client.wait_connected(WAIT_S * 1000)
