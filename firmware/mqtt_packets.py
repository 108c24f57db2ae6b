"""MQTT 3.1.1 packets, sans-IO: bytes in, values out; values in, bytes out.

No sockets, no asyncio, no state: firmware/mqtt.py reads and writes the stream and calls these.
Shaped after micropython-lib's umqtt/simple.py (small, memoryview, no per-byte allocation on the
receive side). Only what a receiver needs: QoS 0 and 1 both ways, no QoS 2 (the broker never
sends QoS 2 to a client that only subscribes with QoS 0/1, so a QoS 2 PUBLISH is malformed here).

Decoders take the first byte of the fixed header and the body (everything after the remaining
length) as a memoryview, and raise ProtocolError("mqtt_malformed", why) on anything a
well-behaved broker would not send. The caller counts it and drops the connection.
"""

from protocol.errors import ProtocolError

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

# Fixed-header first bytes (packet type in the high nibble, flags in the low one).
CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)  # SUBSCRIBE and UNSUBSCRIBE carry the mandatory flags 0b0010
SUBACK = const(0x90)
UNSUBSCRIBE = const(0xA2)
UNSUBACK = const(0xB0)
PINGREQ = const(0xC0)
PINGRESP = const(0xD0)
DISCONNECT = const(0xE0)

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

MAX_REMAINING_LENGTH = const(268435455)  # 4 bytes of 7 bits: the most MQTT can express
SUBACK_FAILURE = const(0x80)

# CONNACK return codes 1..5 (0 is accepted), for logs and on_disconnect reasons.
CONNACK_REFUSALS = (
    "accepted",
    "bad_protocol_version",
    "client_id_rejected",
    "server_unavailable",
    "bad_credentials",
    "not_authorized",
)

_MALFORMED = "mqtt_malformed"


def malformed(why):
    return ProtocolError(_MALFORMED, why)


# -- remaining length ------------------------------------------------------------------------

def remaining_length_size(n):
    """How many bytes the remaining-length field of ``n`` takes (1..4)."""
    if n < 0 or n > MAX_REMAINING_LENGTH:
        raise ValueError("remaining length out of range: %d" % n)
    size = 1
    while n > 127:
        n >>= 7
        size += 1
    return size


def encode_remaining_length(n, buf, offset):
    """Write ``n`` as an MQTT variable-length integer into ``buf`` at ``offset``; return the
    offset just after it."""
    remaining_length_size(n)  # range check
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            buf[offset] = byte | 0x80
            offset += 1
        else:
            buf[offset] = byte
            return offset + 1


def add_length_byte(total, index, byte):
    """Fold the ``index``-th byte (from 0) of a remaining-length field into ``total``.

    The field is complete when ``byte & 0x80`` is clear. Lets a stream reader decode the field a
    byte at a time without buffering it."""
    if index > 3 or (index == 3 and byte & 0x80):
        raise malformed("remaining length longer than 4 bytes")
    return total | ((byte & 0x7F) << (7 * index))


def decode_remaining_length(data, offset=0):
    """``(value, offset after the field)`` from a buffer holding a whole field."""
    total = 0
    index = 0
    while True:
        if offset + index >= len(data):
            raise malformed("remaining length truncated")
        byte = data[offset + index]
        total = add_length_byte(total, index, byte)
        index += 1
        if not byte & 0x80:
            return total, offset + index


# -- encoders (client to broker) ---------------------------------------------------------------

def _as_bytes(text):
    if isinstance(text, str):
        return text.encode("utf-8")
    return text


def _put_u16(buf, offset, value):
    buf[offset] = value >> 8
    buf[offset + 1] = value & 0xFF
    return offset + 2


def _put_field(buf, offset, data):
    """A 2-byte length then the data (MQTT's "UTF-8 encoded string" and binary fields)."""
    offset = _put_u16(buf, offset, len(data))
    buf[offset:offset + len(data)] = data
    return offset + len(data)


def _start_packet(first_byte, body_len):
    """A bytearray sized for the whole packet, fixed header written; returns (buf, offset)."""
    buf = bytearray(1 + remaining_length_size(body_len) + body_len)
    buf[0] = first_byte
    return buf, encode_remaining_length(body_len, buf, 1)


def encode_connect(client_id, keepalive, user=None, password=None, will=None, clean=True):
    """CONNECT. ``will`` is ``(topic, payload, qos, retain)`` or None; ``keepalive`` in seconds."""
    client_id = _as_bytes(client_id)
    body_len = 10 + 2 + len(client_id)
    flags = 0x02 if clean else 0
    if will is not None:
        will_topic = _as_bytes(will[0])
        will_payload = _as_bytes(will[1])
        body_len += 4 + len(will_topic) + len(will_payload)
        flags |= 0x04 | (will[2] & 0x03) << 3
        if will[3]:
            flags |= 0x20
    if user is not None:
        user = _as_bytes(user)
        body_len += 2 + len(user)
        flags |= 0x80
        if password is not None:  # MQTT 3.1.1 allows a password only with a user name
            password = _as_bytes(password)
            body_len += 2 + len(password)
            flags |= 0x40
    buf, i = _start_packet(CONNECT, body_len)
    i = _put_field(buf, i, b"MQTT")
    buf[i] = 4  # protocol level 4 = MQTT 3.1.1
    buf[i + 1] = flags
    i = _put_u16(buf, i + 2, keepalive)
    i = _put_field(buf, i, client_id)
    if will is not None:
        i = _put_field(buf, i, will_topic)
        i = _put_field(buf, i, will_payload)
    if flags & 0x80:
        i = _put_field(buf, i, user)
    if flags & 0x40:
        i = _put_field(buf, i, password)
    return buf


def encode_publish_head(topic, payload_len, qos=0, retain=False, packet_id=0, dup=False):
    """Everything of a PUBLISH before its payload (fixed header, topic, packet id).

    The payload is written after it as it is, so a large payload is never copied."""
    topic = _as_bytes(topic)
    if qos not in (0, 1):
        raise ValueError("qos must be 0 or 1")
    body_len = 2 + len(topic) + (2 if qos else 0) + payload_len
    first = PUBLISH | qos << 1
    if retain:
        first |= 0x01
    if dup:
        first |= 0x08
    head_len = 1 + remaining_length_size(body_len) + 2 + len(topic) + (2 if qos else 0)
    buf = bytearray(head_len)
    buf[0] = first
    i = encode_remaining_length(body_len, buf, 1)
    i = _put_field(buf, i, topic)
    if qos:
        _put_u16(buf, i, packet_id)
    return buf


def encode_subscribe(packet_id, topics):
    """SUBSCRIBE for ``topics``, a list of ``(topic, qos)``."""
    encoded = [(_as_bytes(topic), qos) for topic, qos in topics]
    body_len = 2
    for topic, _qos in encoded:
        body_len += 3 + len(topic)
    buf, i = _start_packet(SUBSCRIBE, body_len)
    i = _put_u16(buf, i, packet_id)
    for topic, qos in encoded:
        i = _put_field(buf, i, topic)
        buf[i] = qos
        i += 1
    return buf


def encode_unsubscribe(packet_id, topics):
    """UNSUBSCRIBE for ``topics``, a list of topic filters."""
    encoded = [_as_bytes(topic) for topic in topics]
    body_len = 2
    for topic in encoded:
        body_len += 2 + len(topic)
    buf, i = _start_packet(UNSUBSCRIBE, body_len)
    i = _put_u16(buf, i, packet_id)
    for topic in encoded:
        i = _put_field(buf, i, topic)
    return buf


def encode_puback(packet_id):
    return bytes((PUBACK, 2, packet_id >> 8, packet_id & 0xFF))


# -- decoders (broker to client) ---------------------------------------------------------------

def check_fixed_header(first_byte):
    """The packet type of a packet from the broker, after checking its flags; raises on a type
    a 3.1.1 broker does not send to a QoS 0/1 client."""
    kind = first_byte & 0xF0
    if kind == PUBLISH:
        if first_byte & 0x06 == 0x06:
            raise malformed("PUBLISH with QoS 3")
        if first_byte & 0x06 == 0x04:
            raise malformed("PUBLISH with QoS 2 (never subscribed with QoS 2)")
        return kind
    if first_byte in (CONNACK, PUBACK, SUBACK, UNSUBACK, PINGRESP):
        return kind
    raise malformed("unexpected packet 0x%02x" % first_byte)


def _u16(body, offset):
    return body[offset] << 8 | body[offset + 1]


def decode_connack(body):
    """``(session_present, return_code)``; return code 0 means accepted."""
    if len(body) != 2:
        raise malformed("CONNACK length %d" % len(body))
    if body[0] & 0xFE:
        raise malformed("CONNACK reserved flags")
    if body[1] > 5:
        raise malformed("CONNACK return code %d" % body[1])
    return bool(body[0] & 1), body[1]


def decode_packet_id(body):
    """The packet id of a PUBACK or UNSUBACK."""
    if len(body) != 2:
        raise malformed("ack length %d" % len(body))
    packet_id = _u16(body, 0)
    if not packet_id:
        raise malformed("packet id 0")
    return packet_id


def decode_suback(body):
    """``(packet_id, return codes)``; the codes are a view into ``body`` (0, 1, 2 or 0x80)."""
    if len(body) < 3:
        raise malformed("SUBACK length %d" % len(body))
    packet_id = _u16(body, 0)
    if not packet_id:
        raise malformed("packet id 0")
    codes = body[2:]
    for code in codes:
        if code > 2 and code != SUBACK_FAILURE:
            raise malformed("SUBACK return code 0x%02x" % code)
    return packet_id, codes


def decode_publish(first_byte, body):
    """``(topic, qos, retain, packet_id, payload)``; ``payload`` is a view into ``body``."""
    qos = (first_byte >> 1) & 0x03
    if qos > 1:
        raise malformed("PUBLISH QoS %d" % qos)
    if len(body) < 2:
        raise malformed("PUBLISH too short")
    topic_end = 2 + _u16(body, 0)
    if topic_end == 2:
        raise malformed("PUBLISH with an empty topic")
    payload_start = topic_end + (2 if qos else 0)
    if payload_start > len(body):
        raise malformed("PUBLISH topic or packet id past the end")
    topic = None
    try:
        topic = str(bytes(body[2:topic_end]), "utf-8")
    except UnicodeError:
        pass  # raised below, outside the handler (no exception chaining in MicroPython)
    if topic is None:
        raise malformed("PUBLISH topic is not UTF-8")
    packet_id = 0
    if qos:
        packet_id = _u16(body, topic_end)
        if not packet_id:
            raise malformed("packet id 0")
    return topic, qos, bool(first_byte & 0x01), packet_id, body[payload_start:]
