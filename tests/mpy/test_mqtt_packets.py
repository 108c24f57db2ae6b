# MQTT 3.1.1 packet codec: golden bytes (worked out by hand from the 3.1.1 spec, not copied from
# the encoder's output), remaining-length edge cases, parsing, and malformed input.
# Then the client (firmware/mqtt.py) over in-memory streams, so its asyncio code is proven under
# a real MicroPython too. Runs under CPython pytest and under MicroPython (tools/mptest): plain
# asserts, no pytest.

import asyncio

from firmware.mqtt import MQTTClient
from firmware.mqtt_packets import (
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PUBLISH,
    SUBACK,
    add_length_byte,
    check_fixed_header,
    decode_connack,
    decode_packet_id,
    decode_publish,
    decode_remaining_length,
    decode_suback,
    encode_connect,
    encode_puback,
    encode_publish_head,
    encode_remaining_length,
    encode_subscribe,
    encode_unsubscribe,
    remaining_length_size,
)
from protocol.errors import ProtocolError

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(new, old):
        return new - old


def _hex(text):
    return bytes(int(pair, 16) for pair in text.split())


def _raises_malformed(function, *args):
    try:
        function(*args)
    except ProtocolError as exc:
        assert exc.reason == "mqtt_malformed", exc.reason
        assert exc.detail  # says what was wrong
        return
    raise AssertionError("no ProtocolError for " + repr(args))


def test_connect_with_will_user_and_password_matches_the_spec_bytes():
    packet = encode_connect("rx1", 30, user="u", password="p", will=("w/t", b"bye", 1, True))
    expected = _hex(
        "10 1f"                      # CONNECT, remaining length 31
        " 00 04 4d 51 54 54 04"      # "MQTT", level 4 (3.1.1)
        " ee"                        # user, password, will retain, will QoS 1, will, clean
        " 00 1e"                     # keepalive 30 s
        " 00 03 72 78 31"            # client id "rx1"
        " 00 03 77 2f 74"            # will topic "w/t"
        " 00 03 62 79 65"            # will payload "bye"
        " 00 01 75 00 01 70")        # user "u", password "p"
    assert bytes(packet) == expected


def test_connect_without_options_is_a_clean_session_only():
    assert bytes(encode_connect("c", 60)) == _hex("10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 63")


def test_publish_qos0_and_qos1_heads_match_the_spec_bytes():
    head = encode_publish_head("a/b", 2)
    assert bytes(head) + b"hi" == _hex("30 07 00 03 61 2f 62 68 69")
    head = encode_publish_head("a/b", 2, qos=1, retain=True, packet_id=10)
    assert bytes(head) + b"hi" == _hex("33 09 00 03 61 2f 62 00 0a 68 69")


def test_publish_head_of_a_long_payload_has_a_two_byte_length():
    head = encode_publish_head("t", 200)
    assert bytes(head) == _hex("30 cb 01 00 01 74")  # 203 = 0xcb 0x01


def test_subscribe_unsubscribe_puback_ping_and_disconnect_bytes():
    assert bytes(encode_subscribe(1, [("a/#", 1), ("b", 0)])) == _hex(
        "82 0c 00 01 00 03 61 2f 23 01 00 01 62 00")
    assert bytes(encode_unsubscribe(2, ["a/#"])) == _hex("a2 07 00 02 00 03 61 2f 23")
    assert bytes(encode_puback(0x1234)) == _hex("40 02 12 34")
    assert PINGREQ_PACKET == _hex("c0 00")
    assert DISCONNECT_PACKET == _hex("e0 00")


def test_remaining_length_round_trips_at_every_size_boundary():
    cases = (
        (0, "00"), (127, "7f"), (128, "80 01"), (16383, "ff 7f"), (16384, "80 80 01"),
        (2097151, "ff ff 7f"), (2097152, "80 80 80 01"), (268435455, "ff ff ff 7f"),
    )
    for value, encoded in cases:
        expected = _hex(encoded)
        buf = bytearray(5)
        end = encode_remaining_length(value, buf, 1)
        assert bytes(buf[1:end]) == expected, value
        assert remaining_length_size(value) == len(expected)
        assert decode_remaining_length(expected) == (value, len(expected))


def test_remaining_length_beyond_four_bytes_is_refused():
    try:
        remaining_length_size(268435456)
        raise AssertionError("268435456 accepted")
    except ValueError as exc:
        assert not isinstance(exc, ProtocolError)
    _raises_malformed(decode_remaining_length, _hex("ff ff ff ff 7f"))
    _raises_malformed(decode_remaining_length, _hex("80 80"))  # truncated
    _raises_malformed(add_length_byte, 0, 3, 0x80)             # a fifth byte would follow


def test_publish_is_parsed_into_topic_packet_id_retain_and_payload():
    packet = _hex("33 0e 00 07 6c 6f 61 78 61 2f 78 00 2a 68 69 21")
    length, start = decode_remaining_length(packet, 1)
    body = memoryview(packet)[start:start + length]
    assert check_fixed_header(packet[0]) == PUBLISH
    topic, qos, retained, packet_id, payload = decode_publish(packet[0], body)
    assert (topic, qos, retained, packet_id) == ("loaxa/x", 1, True, 42)
    assert bytes(payload) == b"hi!"

    topic, qos, retained, packet_id, payload = decode_publish(0x30, memoryview(
        _hex("00 04 74 2f c3 a1 00 ff")))  # QoS 0: no packet id; UTF-8 topic "t/á"
    assert (topic, qos, retained, packet_id, bytes(payload)) == ("t/\u00e1", 0, False, 0,
                                                                 _hex("00 ff"))


def test_connack_puback_and_suback_are_parsed():
    assert decode_connack(memoryview(_hex("00 00"))) == (False, 0)
    assert decode_connack(memoryview(_hex("01 05"))) == (True, 5)
    assert decode_packet_id(memoryview(_hex("12 34"))) == 0x1234
    assert check_fixed_header(0x90) == SUBACK
    packet_id, codes = decode_suback(memoryview(_hex("00 07 01 80 00")))
    assert packet_id == 7
    assert list(codes) == [1, 0x80, 0]


def test_malformed_packets_raise_a_protocol_error_that_says_why():
    _raises_malformed(check_fixed_header, 0x36)   # PUBLISH QoS 3
    _raises_malformed(check_fixed_header, 0x34)   # PUBLISH QoS 2: never subscribed with it
    _raises_malformed(check_fixed_header, 0x10)   # a CONNECT from the broker
    _raises_malformed(check_fixed_header, 0xD1)   # PINGRESP with flags set
    _raises_malformed(check_fixed_header, 0x00)   # reserved type
    _raises_malformed(decode_publish, 0x30, memoryview(_hex("00")))
    _raises_malformed(decode_publish, 0x30, memoryview(_hex("00 09 61 62")))  # topic too long
    _raises_malformed(decode_publish, 0x30, memoryview(_hex("00 00 61")))     # empty topic
    _raises_malformed(decode_publish, 0x32, memoryview(_hex("00 01 61 00")))  # no packet id
    _raises_malformed(decode_publish, 0x32, memoryview(_hex("00 01 61 00 00")))  # id 0
    _raises_malformed(decode_publish, 0x30, memoryview(_hex("00 02 ff fe")))  # not UTF-8
    _raises_malformed(decode_connack, memoryview(_hex("00")))
    _raises_malformed(decode_connack, memoryview(_hex("00 06")))
    _raises_malformed(decode_connack, memoryview(_hex("02 00")))
    _raises_malformed(decode_packet_id, memoryview(_hex("00 01 02")))
    _raises_malformed(decode_packet_id, memoryview(_hex("00 00")))
    _raises_malformed(decode_suback, memoryview(_hex("00 01")))
    _raises_malformed(decode_suback, memoryview(_hex("00 01 03")))


# -- the client (firmware/mqtt.py) over in-memory streams, under both interpreters ------------
# A scripted broker at the stream boundary: it answers CONNECT, SUBSCRIBE, QoS 1 PUBLISH and
# PINGREQ as a broker would, and lets a test inject what a broker (or garbage) would send.

class _FakeReader:
    def __init__(self):
        self.data = b""
        self.eof = False
        self.event = asyncio.Event()

    def feed(self, data):
        self.data += bytes(data)
        self.event.set()

    def end(self):
        self.eof = True
        self.event.set()

    async def readexactly(self, n):
        while len(self.data) < n:
            if self.eof:
                raise EOFError
            self.event.clear()
            await self.event.wait()
        out = self.data[:n]
        self.data = self.data[n:]
        return out


class _FakeReaderWithReadinto(_FakeReader):
    """Like MicroPython's Stream: readinto() fills the caller's buffer, a few bytes at a time."""

    async def readinto(self, buf):
        while not self.data:
            if self.eof:
                return 0
            self.event.clear()
            await self.event.wait()
        n = min(len(buf), len(self.data), 3)
        buf[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


class _FakeWriter:
    def __init__(self, broker, reader):
        self.broker = broker
        self.reader = reader
        self.pending = b""
        self.closed = False
        self.writes = 0

    def write(self, data):
        if self.closed:
            raise OSError(32)  # EPIPE
        self.writes += 1
        self.pending += bytes(data)
        while len(self.pending) >= 2:
            try:
                length, start = decode_remaining_length(self.pending, 1)
            except ProtocolError:
                return  # remaining length not complete yet
            if len(self.pending) < start + length:
                return
            self.broker.handle(self.reader, self.pending[0], self.pending[start:start + length])
            self.pending = self.pending[start + length:]

    async def drain(self):
        pass

    def close(self):
        self.closed = True
        self.reader.end()


class _ScriptedBroker:
    def __init__(self, connack_code=0, reader_class=_FakeReader):
        self.connack_code = connack_code
        self.reader_class = reader_class
        self.connections = 0
        self.received = []  # (connection number, first byte, body)
        self.reader = None

    async def open_connection(self, host, port, ssl):
        self.connections += 1
        self.reader = self.reader_class()
        self.writer = _FakeWriter(self, self.reader)
        return self.reader, self.writer

    def got(self, first_byte):
        return [body for _n, first, body in self.received if first == first_byte]

    def handle(self, reader, first_byte, body):
        self.received.append((self.connections, first_byte, body))
        kind = first_byte & 0xF0
        if kind == 0x10:
            reader.feed(bytes((0x20, 2, 0, self.connack_code)))
        elif first_byte == 0x82:
            codes = b""
            i = 2
            while i < len(body):
                end = i + 2 + (body[i] << 8 | body[i + 1])
                codes += b"\x80" if body[i + 2:end] == b"forbidden" else b"\x01"
                i = end + 1
            reader.feed(bytes((0x90, 2 + len(codes))) + body[:2] + codes)
        elif first_byte == 0xA2:
            reader.feed(b"\xb0\x02" + body[:2])
        elif kind == 0x30 and first_byte & 0x02:
            topic_end = 2 + (body[0] << 8 | body[1])
            reader.feed(b"\x40\x02" + body[topic_end:topic_end + 2])
        elif first_byte == 0xC0:
            reader.feed(b"\xd0\x00")


async def _until(condition, timeout_ms=3000):
    start = ticks_ms()
    while not condition():
        if ticks_diff(ticks_ms(), start) > timeout_ms:
            return False
        await asyncio.sleep(0.005)
    return True


def _client(broker, **options):
    messages = []
    reasons = []
    kwargs = {
        "open_connection": broker.open_connection, "ticks_ms": ticks_ms,
        "ticks_diff": ticks_diff, "backoff_min_ms": 20, "backoff_max_ms": 200,
        "random_below": lambda n: 0,
        "on_message": lambda t, p, r: messages.append((t, bytes(p), r)),
        "on_disconnect": reasons.append,
    }
    kwargs.update(options)
    client = MQTTClient("rx1", "broker.test", **kwargs)
    return client, messages, reasons


async def _exercise_client_over_scripted_broker():
    broker = _ScriptedBroker(reader_class=_FakeReaderWithReadinto)
    births = []
    client, messages, reasons = _client(broker, will=("w/rx1", b"dead-1", 1, True))

    async def on_connect():
        births.append(await client.publish("s/rx1", b"birth", qos=1, retain=True))

    client.on_connect = on_connect
    runner = asyncio.create_task(client.run())
    assert await client.wait_connected(3000)
    assert births == [True]  # publishing from on_connect works before "connected"
    assert await client.subscribe("cmd/rx1", qos=1)
    assert not await client.subscribe("forbidden")  # refused by the broker (0x80)
    assert client.stats["suback_failures"] == 1
    assert await client.unsubscribe("forbidden")

    # A QoS 1 message from the broker reaches on_message and is acknowledged with its id.
    broker.reader.feed(_hex("32 0d 00 07 63 6d 64 2f 72 78 31 00 05 67 6f"))
    assert await _until(lambda: broker.got(0x40))
    assert messages == [("cmd/rx1", b"go", False)]
    assert broker.got(0x40) == [_hex("00 05")]
    assert await client.publish("e/rx1", b"x", qos=1)
    assert await client.publish("e/rx1", b"y")

    # An oversized message is skipped and the link kept; the next one still arrives.
    big = client.max_packet + 10
    broker.reader.feed(bytes(encode_publish_head("cmd/rx1", big - 9)) + bytes(big - 9))
    broker.reader.feed(_hex("31 0a 00 07 63 6d 64 2f 72 78 31 21"))
    assert await _until(lambda: len(messages) == 2)
    assert messages[1] == ("cmd/rx1", b"!", True)
    assert client.stats["oversized"] == 1 and broker.connections == 1

    # Garbage: counted, the connection dropped and made again, the subscription re-sent,
    # with the will the firmware set meanwhile.
    client.will = ("w/rx1", b"dead-2", 1, True)
    broker.reader.feed(_hex("30 ff ff ff ff 7f"))
    assert await _until(lambda: client.connected and broker.connections == 2)
    assert client.stats["malformed"] == 2
    assert reasons[0].startswith("malformed")
    subscribes = [body for n, first, body in broker.received if first == 0x82 and n == 2]
    assert subscribes and b"cmd/rx1" in subscribes[0]
    connects = broker.got(0x10)
    assert b"dead-1" in connects[0] and b"dead-2" in connects[1]
    assert births == [True, True]

    await client.close()
    await _until(lambda: runner.done())
    assert runner.done()
    assert broker.got(0xE0) == [b""]  # DISCONNECT: the broker drops the will
    assert reasons[-1] == "closed"
    assert not client.connected
    assert not await client.publish("e/rx1", b"late")


async def test_client_talks_mqtt_and_survives_garbage_over_a_scripted_broker():
    await asyncio.create_task(_exercise_client_over_scripted_broker())


async def _exercise_refusal():
    broker = _ScriptedBroker(connack_code=5)
    asked = []

    def random_below(n):
        asked.append(n)
        return 0

    client, _messages, _reasons = _client(broker, random_below=random_below)
    runner = asyncio.create_task(client.run())
    assert await _until(lambda: broker.connections >= 2)
    assert client.stats["refused"] >= 1 and client.last_refusal == "not_authorized"
    assert not client.connected and client.stats["connects"] == 0
    assert asked[0] == client.backoff_max_ms + 1  # refused: back off at the longest delay
    await client.close()
    await _until(lambda: runner.done())
    assert runner.done()


async def test_refused_connect_backs_off_at_the_longest_delay():
    await asyncio.create_task(_exercise_refusal())


async def _exercise_cancel():
    broker = _ScriptedBroker()
    client, _messages, reasons = _client(broker)
    runner = asyncio.create_task(client.run())
    assert await client.wait_connected(3000)
    writer_reader = broker.reader
    runner.cancel()
    assert await _until(lambda: writer_reader.eof)  # the stream was closed, no DISCONNECT
    assert reasons == ["stopped"] and not broker.got(0xE0)
    assert not client.connected
    assert not await client.publish("e/rx1", b"x")


async def test_cancelling_run_closes_the_stream_and_reports_stopped():
    await asyncio.create_task(_exercise_cancel())


async def _exercise_one_write_per_small_publish():
    broker = _ScriptedBroker()
    client, _messages, _reasons = _client(broker)
    runner = asyncio.create_task(client.run())
    assert await client.wait_connected(3000)
    writes = broker.writer.writes
    # A heartbeat-sized publish leaves as one write (one TCP segment, one TLS record on 4G),
    # whether its payload is bytes or a view.
    assert await client.publish("hb/rx1", b"x" * 200, qos=1)
    assert await client.publish("hb/rx1", memoryview(b"y" * 100))
    assert broker.writer.writes == writes + 2
    # A large payload is not copied to join its head: two writes.
    assert await client.publish("big/rx1", bytes(4000))
    assert broker.writer.writes == writes + 4
    assert [len(body) for body in broker.got(0x32)] == [2 + 6 + 2 + 200]
    assert [len(body) for body in broker.got(0x30)] == [2 + 6 + 100, 2 + 7 + 4000]
    await client.close()
    await _until(lambda: runner.done())


async def test_a_small_publish_is_one_write_and_a_large_one_is_not_copied():
    await asyncio.create_task(_exercise_one_write_per_small_publish())
