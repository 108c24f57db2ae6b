"""HMAC-SHA256 signing of commands and audio frames.

MicroPython has ``hashlib.sha256`` but no ``hmac`` module, so HMAC (RFC 2104) is written out
here once and used by both sides. A signed command travels as::

    <64 lowercase hex chars of HMAC-SHA256(device_key, body)> "\\n" <body: compact JSON>

The signature covers the exact body bytes as sent, so no canonical JSON form is needed. The
body names the device, a counter that only grows and an expiry (see ``protocol.messages``):
the receiver checks all three, which makes a captured command useless for another device, for a
replay, or after it expires.

Receivers' reports travel in the same form, their MAC computed over a ``domain`` (the kind of
report) followed by the body, so a report can never pass for a command or for a report of
another kind: the same key authenticates both directions.
"""

import hashlib
from binascii import hexlify, unhexlify

from protocol.errors import ProtocolError

_BLOCK = 64
SIG_HEX_LEN = 64
FRAME_TAG_LEN = 8


def _xor_pad(key, byte):
    out = bytearray(_BLOCK)
    for i in range(len(key)):
        out[i] = key[i] ^ byte
    for i in range(len(key), _BLOCK):
        out[i] = byte
    return out


# CPython's hash objects copy their state; MicroPython's do not. Where they do, a key keeps the
# two hashes with its pads already absorbed and each MAC starts from copies of them (half the
# compression rounds of a short message; the head-end signs a thousand commands at once).
_COPIES = hasattr(hashlib.sha256(), "copy")


class HmacKey:
    """A key with its inner and outer pads computed once, for repeated signing (audio frames,
    and the head-end's commands: one per receiver, kept while its stored key is unchanged)."""

    def __init__(self, key):
        if isinstance(key, str):
            key = key.encode()
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        self._ipad = _xor_pad(key, 0x36)
        self._opad = _xor_pad(key, 0x5C)
        self._inner = hashlib.sha256(self._ipad) if _COPIES else None
        self._outer = hashlib.sha256(self._opad) if _COPIES else None

    def digest(self, *parts):
        if self._inner is not None:  # only where hashes copy (_COPIES): not on the board
            inner = self._inner.copy()  # type: ignore[attr-defined]
            outer = self._outer.copy()  # type: ignore[attr-defined]
        else:
            inner = hashlib.sha256(self._ipad)
            outer = hashlib.sha256(self._opad)
        for part in parts:
            inner.update(part)
        outer.update(inner.digest())
        return outer.digest()


def hmac_sha256(key, data):
    return HmacKey(key).digest(data)


def equal(a, b):
    """Constant-time comparison of two byte strings."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def key_from_hex(text):
    """Device and stream keys are provisioned as hex strings (32 bytes = 64 hex chars)."""
    try:
        key = unhexlify(text)
    except Exception:
        raise ProtocolError("bad-key", "not hex")
    if len(key) < 16:
        raise ProtocolError("bad-key", "shorter than 16 bytes")
    return key


def seal(key, body, domain=b""):
    """Return the signed wire form of ``body`` (bytes); ``domain`` is MACed before the body.
    ``key``: bytes, or an ``HmacKey`` made from them once for many messages."""
    if not isinstance(key, HmacKey):
        key = HmacKey(key)
    return hexlify(key.digest(domain, body)) + b"\n" + body


def open_sealed(key, payload, domain=b""):
    """Check a signed payload and return its body bytes, or raise ProtocolError("bad-signature")."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ProtocolError("malformed", "payload is not bytes")
    payload = bytes(payload)
    if len(payload) < SIG_HEX_LEN + 2 or payload[SIG_HEX_LEN] != 0x0A:
        raise ProtocolError("malformed", "no signature line")
    try:
        sig = unhexlify(payload[:SIG_HEX_LEN])
    except Exception:
        raise ProtocolError("malformed", "signature is not hex")
    # unhexlify reads "AB" as "ab": without this, re-casing the signature of a genuine
    # message would mint a second, different payload that verifies.
    if hexlify(sig) != payload[:SIG_HEX_LEN]:
        raise ProtocolError("malformed", "signature is not lowercase hex")
    body = payload[SIG_HEX_LEN + 1:]
    if not equal(sig, HmacKey(key).digest(domain, body)):
        raise ProtocolError("bad-signature")
    return body


def open_with_keys(opener, key, alt_key, *args):
    """``opener(key, *args)``; on a bad signature, ``opener(alt_key, *args)`` when there is an
    ``alt_key`` (a key rotation's pending key, accepted beside the current one until it is
    confirmed). Returns (what opener returned, True if ``alt_key`` opened it)."""
    try:
        return opener(key, *args), False
    except ProtocolError as e:
        if e.reason != "bad-signature" or alt_key is None:
            raise
    return opener(alt_key, *args), True
