"""protocol/ checked against CPython's own implementations (the MicroPython-safe code in
protocol/ cannot use them, so it must agree with them byte for byte)."""

import hashlib
import hmac
import json
import random

import pytest

from protocol import messages, signing, topics


def test_hmac_agrees_with_pythons_hmac_for_random_keys_and_messages():
    rng = random.Random(20261122)
    lengths = [0, 1, 16, 32, 63, 64, 65, 100, 128, 200]
    for _ in range(300):
        key = rng.randbytes(rng.choice(lengths) or 1)
        data = rng.randbytes(rng.choice(lengths + [1000, 5000]))
        assert signing.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


def test_reused_key_signs_multipart_data_as_one_message():
    key = signing.HmacKey(b"stream key " * 3)
    head, payload = b"h" * 24, b"p" * 300
    assert key.digest(head, payload) == hmac.new(b"stream key " * 3, head + payload,
                                                  hashlib.sha256).digest()
    assert key.digest(memoryview(head), memoryview(payload)) == key.digest(head + payload)


@pytest.mark.parametrize("leaf", topics.DEVICE_UPLINK + topics.DEVICE_DOWNLINK)
def test_parse_names_every_device_topic_kind(leaf):
    assert topics.parse(topics.device_topic("xa-1", "d_2", leaf)) == ("xa-1", "dev", "d_2", leaf)


def test_parse_names_a_stream_topic_and_uplink_filters_match_the_device_topics():
    assert topics.parse(topics.stream_topic("xa-1", "s9")) == ("xa-1", "stream", "s9", "")
    assert topics.uplink_filter("xa-1") == "loaxa/v1/xa-1/dev/+/+"
    assert topics.uplink_filter("xa-1", topics.HEARTBEAT) == "loaxa/v1/xa-1/dev/+/hb"


def test_compact_json_is_what_cpython_would_write_and_reads_back():
    msg = {"v": 1, "k": "birth", "dev": "d1", "name": "Loa thôn Đông"}
    wire = messages.encode(msg)
    assert wire == json.dumps(msg, separators=(",", ":")).encode()
    assert messages.decode(wire) == msg
