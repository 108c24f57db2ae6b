"""The new credentials of a ``rekey`` command (rotation of a receiver's key and broker
password), encrypted under the receiver's current key.

MicroPython on the ESP32 has ``hashlib.sha256`` (and ``cryptolib`` AES in ECB/CBC only, no
GCM): the smallest sound scheme it runs is a stream cipher whose keystream is HMAC-SHA256 (a
PRF, protocol/signing.py) of the current key over a domain, the rotation id and a block
number::

    block_i = HMAC-SHA256(current_key, "loaxa-rekey\\n" || rid || "\\n" || i)   i = 0, 1, ...
    box     = hex((new_key(32 bytes) || password utf-8) XOR keystream)

Integrity comes from the command itself: its HMAC (the same current key) covers the box, so
a changed box is refused as "bad-signature" before this is opened (encrypt-then-MAC). The
head-end draws a fresh random ``rid`` for every rotation, so no keystream is used twice.
Anyone without the current key (the broker's operator, a captured TLS-less link) learns the
new password's length and nothing else.
"""

from binascii import hexlify, unhexlify

from protocol.errors import ProtocolError
from protocol.signing import HmacKey

KEY_BYTES = 32
MAX_PASSWORD = 64
_DOMAIN = b"loaxa-rekey\n"


def _xor_stream(key, rid, data):
    mac = HmacKey(key)
    out = bytearray(len(data))
    rid = rid.encode() if isinstance(rid, str) else rid
    block = b""
    for i in range(len(data)):
        if i % 32 == 0:
            block = mac.digest(_DOMAIN, rid, b"\n", bytes((i // 32,)))
        out[i] = data[i] ^ block[i % 32]
    return bytes(out)


def seal_box(key, rid, new_key, password):
    """The ``box`` (hex str) carrying ``new_key`` (32 bytes) and ``password`` (str)."""
    pw = password.encode()
    if len(new_key) != KEY_BYTES or not 1 <= len(pw) <= MAX_PASSWORD:
        raise ValueError("new key must be 32 bytes, password 1-64 bytes")
    return hexlify(_xor_stream(key, rid, bytes(new_key) + pw)).decode()


def open_box(key, rid, box):
    """(new key hex, password) from a ``box``; ProtocolError("bad-field") if it cannot be."""
    try:
        raw = unhexlify(box)
    except Exception:
        raise ProtocolError("bad-field", "box is not hex")
    if not KEY_BYTES < len(raw) <= KEY_BYTES + MAX_PASSWORD:
        raise ProtocolError("bad-field", "box size")
    plain = _xor_stream(key, rid, raw)
    try:
        password = plain[KEY_BYTES:].decode()
    except Exception:
        raise ProtocolError("bad-field", "password is not text")
    return hexlify(plain[:KEY_BYTES]).decode(), password
