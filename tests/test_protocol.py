"""protocol/ checked against CPython's own implementations (the MicroPython-safe code in
protocol/ cannot use them, so it must agree with them byte for byte)."""

import hashlib
import hmac
import json
import random
from pathlib import Path

import pytest

from protocol import messages, presence, signing, topics
from protocol.errors import ProtocolError


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


# -- one definition of each message: wire bytes as before, validated where they arrive ----------

def test_the_heartbeat_built_from_its_table_is_the_bytes_the_shell_sent_before():
    # docs/protocol.md's example, as firmware/shell.py built it by hand before the table.
    fields = {"boot": 12, "conn": 1, "up": 86400, "heap": 81234, "vol": 70, "cu": 524288,
              "off": -1873, "amp": 0, "mains": 1, "dc": 13.1, "ln": "wifi", "rssi": -67,
              "af": 0, "sy": 1, "play": None, "rej": 0, "mal": 0, "temp": None, "err": 0}
    assert messages.heartbeat(fields) == (
        b'{"v":1,"boot":12,"conn":1,"up":86400,"heap":81234,"vol":70,"cu":524288,"off":-1873,'
        b'"amp":0,"mains":1,"dc":13.1,"ln":"wifi","rssi":-67,"sy":1}')


def test_commands_births_deaths_and_time_messages_keep_their_bytes():
    assert messages.command_body("r001", "volume", {"vol": 50}, 1763771234567, 1763771264567,
                                 "c1") == (
        b'{"v":1,"dev":"r001","id":"c1","ctr":1763771234567,"exp":1763771264567,"k":"volume",'
        b'"a":{"vol":50}}')
    assert messages.birth("r001", 12, 1, "0.1.0", {"codecs": ["mp3"]}, "wifi",
                          {"reset": "hard", "brownouts": 0, "rebooted": "offline"}) == (
        b'{"v":1,"k":"birth","dev":"r001","boot":12,"conn":1,"fw":"0.1.0",'
        b'"caps":{"codecs":["mp3"]},"link":"wifi","reset":"hard","brownouts":0,'
        b'"rebooted":"offline"}')
    assert messages.death("r001", 12, 1) == b'{"v":1,"k":"death","dev":"r001","boot":12,"conn":1}'
    assert messages.time_request(5123456) == b'{"v":1,"t0":5123456}'
    assert messages.encode(messages.event(3, "started", 10, {"bid": "b1", "item": "m1",
                                                             "at": None, "skip": 0})) == (
        b'{"v":1,"seq":3,"k":"started","t":10,"bid":"b1","item":"m1","at":null,"skip":0}')


async def test_the_shells_error_count_goes_out_in_the_heartbeat(tmp_path):
    from test_shell_receiver import make_receiver, started, stop

    rx = make_receiver(tmp_path)
    task = await started(rx)
    assert "err" not in messages.decode(rx.heartbeat())  # none yet: left out, 4G is paid
    rx._stats["errors"] += 3
    hb = messages.decode(rx.heartbeat())
    assert hb["err"] == 3 and messages.check_heartbeat(hb) == hb
    await stop(rx, task)


def test_the_head_end_keeps_only_validated_report_fields():
    from headend.mqtt.ingest import _validated

    hb = _validated(topics.HEARTBEAT, {"v": 1, "boot": 1, "conn": 1, "up": 5, "err": 2,
                                       "mood": "not a field"})
    assert hb == {"v": 1, "boot": 1, "conn": 1, "up": 5, "err": 2}
    birth = json.loads(messages.birth("d1", 1, 1, "0.1.0", {"codecs": ["mp3"], "hb": 60,
                                                            "colour": "red"}, "ppp"))
    kept = _validated(topics.STATUS, dict(birth, extra=1))
    assert kept["caps"] == {"codecs": ["mp3"], "hb": 60} and "extra" not in kept
    event = messages.event(1, messages.EV_ENDED, 10, {"bid": "b1", "reason": "finished",
                                                      "played": -5})
    assert _validated(topics.EVENT, dict(event, mood=1)) == {
        "v": 1, "seq": 1, "k": "ended", "t": 10, "bid": "b1", "reason": "finished"}
    with pytest.raises(ProtocolError) as refused:
        _validated(topics.STATUS, dict(birth, k="zombie"))
    assert (refused.value.reason, refused.value.detail) == ("bad-field", "k")


def test_presence_figures_come_from_one_rule():
    from headend.mqtt.ingest import offline_allowance_s
    from headend.settings import Settings

    settings = Settings()
    period = presence.period_s("wifi")
    assert settings.offline_after_s == presence.offline_allowance_s(period) == 42
    assert settings.presence_sweep_s == presence.SWEEP_S
    assert settings.offline_after_s + settings.presence_sweep_s <= presence.NOTICE_WITHIN_S
    assert offline_allowance_s(settings, {"hb": 60}) == presence.offline_allowance_s(60) == 84
    assert offline_allowance_s(settings, {"hb": 10}) == 42  # never below the default
    assert offline_allowance_s(settings, None) == 42


def test_birth_and_death_are_named_once():
    # The head-end and the firmware use protocol.messages.BIRTH / DEATH, never the words.
    root = Path(__file__).resolve().parents[1]
    for folder in ("headend", "firmware"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert '"birth"' not in text and '"death"' not in text, path
    assert (messages.BIRTH, messages.DEATH) == ("birth", "death")
