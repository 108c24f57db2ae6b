"""The simulated link: bytes pass both ways, and cut/latency/loss do what a test asks."""

import asyncio

import pytest

from firmware.mqtt_packets import encode_publish_head
from simulator.network import LinkPath, mqtt_packet_length


def publish(topic, payload, qos):
    return bytes(encode_publish_head(topic, len(payload), qos=qos, packet_id=7 if qos else 0)) + payload


@pytest.fixture
async def broker_stub():
    """A TCP server that records what it receives and can send bytes to its client."""

    class Stub:
        received = bytearray()
        writers = []

    async def handle(reader, writer):
        Stub.writers.append(writer)
        while data := await reader.read(4096):
            Stub.received += data

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    Stub.port = server.sockets[0].getsockname()[1]
    yield Stub
    for writer in Stub.writers:
        writer.close()
    server.close()
    await server.wait_closed()


async def read_exactly(reader, n):
    return await asyncio.wait_for(reader.readexactly(n), 5)


def test_packet_length_waits_for_the_whole_packet():
    packet = publish("a/b", b"x" * 200, 0)  # remaining length needs two bytes
    assert mqtt_packet_length(packet) == len(packet)
    assert mqtt_packet_length(packet[:2]) is None
    assert mqtt_packet_length(packet[:-1]) is None
    assert mqtt_packet_length(packet + b"\xc0") == len(packet)


async def test_bytes_pass_both_ways(broker_stub):
    link = LinkPath()
    reader, writer = await link.open_connection("127.0.0.1", broker_stub.port)
    writer.write(b"hello broker")
    await writer.drain()
    while bytes(broker_stub.received) != b"hello broker":
        await asyncio.sleep(0.01)
    broker_stub.writers[0].write(b"\xd0\x00")  # PINGRESP
    assert await read_exactly(reader, 2) == b"\xd0\x00"
    writer.close()


async def test_cut_ends_the_connection_and_refuses_new_ones_until_restored(broker_stub):
    link = LinkPath()
    reader, _ = await link.open_connection("127.0.0.1", broker_stub.port)
    link.cut()
    assert await asyncio.wait_for(reader.read(10), 5) == b""
    with pytest.raises(OSError):
        await link.open_connection("127.0.0.1", broker_stub.port)
    assert link.refused == 1
    link.restore()
    _, writer = await link.open_connection("127.0.0.1", broker_stub.port)
    writer.close()


async def test_blackhole_swallows_bytes_without_closing(broker_stub):
    link = LinkPath()
    reader, writer = await link.open_connection("127.0.0.1", broker_stub.port)
    link.cut(mode="blackhole")
    writer.write(b"lost")
    await writer.drain()
    broker_stub.writers[0].write(b"\xd0\x00")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(10), 0.3)
    assert bytes(broker_stub.received) == b""


async def test_loss_drops_only_qos0_publishes_and_keeps_order(broker_stub):
    link = LinkPath(seed=1)
    link.set_loss(1.0)
    link.set_latency(5)
    reader, writer = await link.open_connection("127.0.0.1", broker_stub.port)
    writer.write(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x00")  # CONNECT
    await writer.drain()
    while not broker_stub.received:
        await asyncio.sleep(0.01)
    kept_first = publish("t/cmd", b"one", 1)
    lost = publish("t/time", b"two", 0)
    kept_last = b"\xd0\x00"
    broker_stub.writers[0].write(kept_first + lost + kept_last)
    assert await read_exactly(reader, len(kept_first) + 2) == kept_first + kept_last
    assert link.dropped_publishes == 1


async def test_loss_leaves_other_protocols_alone(broker_stub):
    """The same path carries HTTP media downloads: only MQTT connections lose packets."""
    link = LinkPath(seed=1)
    link.set_loss(1.0)
    reader, writer = await link.open_connection("127.0.0.1", broker_stub.port)
    writer.write(b"GET /media/x HTTP/1.1\r\n\r\n")
    await writer.drain()
    while not broker_stub.writers:
        await asyncio.sleep(0.01)
    body = b"HTTP/1.1 200 OK\r\n\r\n" + bytes(range(256)) * 8
    broker_stub.writers[0].write(body)
    broker_stub.writers[0].close()
    assert await asyncio.wait_for(reader.read(), 5) == body


async def test_counts_bytes_and_whole_mqtt_packets_each_way(broker_stub):
    link = LinkPath()
    seen = []
    link.on_packet = lambda direction, packet: seen.append((direction, packet))
    reader, writer = await link.open_connection("127.0.0.1", broker_stub.port)
    connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x00"
    hb = publish("s/hb", b"{}", 0)
    writer.write(connect + hb[:3])  # the heartbeat arrives in two pieces
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(hb[3:])
    await writer.drain()
    while not broker_stub.writers:
        await asyncio.sleep(0.01)
    broker_stub.writers[0].write(b"\x20\x02\x00\x00\xd0\x00")  # CONNACK, PINGRESP in one read
    assert await read_exactly(reader, 6) == b"\x20\x02\x00\x00\xd0\x00"
    while bytes(broker_stub.received) != connect + hb:
        await asyncio.sleep(0.01)
    assert (link.bytes_out, link.packets_out) == (len(connect) + len(hb), 2)
    assert (link.bytes_in, link.packets_in) == (6, 2)
    assert seen == [("out", connect), ("out", hb), ("in", b"\x20\x02\x00\x00"), ("in", b"\xd0\x00")]
    assert (link.other_bytes_in, link.other_bytes_out) == (0, 0)
    writer.close()


async def test_a_connection_that_is_not_mqtt_counts_as_other_bytes(broker_stub):
    link = LinkPath()
    reader, writer = await link.open_connection("127.0.0.1", broker_stub.port)
    request = b"GET /m.mp3 HTTP/1.1\r\n\r\n"
    writer.write(request)
    await writer.drain()
    while bytes(broker_stub.received) != request:
        await asyncio.sleep(0.01)
    broker_stub.writers[0].write(b"HTTP/1.1 200 OK\r\n\r\nabc")
    assert await read_exactly(reader, 22) == b"HTTP/1.1 200 OK\r\n\r\nabc"
    assert (link.other_bytes_out, link.other_bytes_in) == (len(request), 22)
    assert link.bytes_in == 22 and link.packets_out == 1
    writer.close()


async def test_power_off_leaves_the_broker_side_open_and_silent_until_restore():
    """A board that lost power sends no FIN: the broker finds out by its keepalive."""
    ended = asyncio.Event()

    async def handle(reader, writer):
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
        ended.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = LinkPath()
    reader, writer = await link.open_connection("127.0.0.1", port)
    link.power_off()
    writer.close()  # what the firmware's sockets do as it is stopped: reaches nobody
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ended.wait(), 0.3)
    with pytest.raises(OSError):
        await link.open_connection("127.0.0.1", port)
    link.restore()  # power back: the old half-open connection is ended
    await asyncio.wait_for(ended.wait(), 5)
    server.close()
    await server.wait_closed()
