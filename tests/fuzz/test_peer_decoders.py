"""Every decoder a peer can reach, fed arbitrary bytes and authentic-but-mutated messages
(issue 9): each returns a value or raises ProtocolError (a ValueError), never anything else,
and a signed message changed by even one byte never verifies.

Reached by a peer: on the receiver, MQTT packets from the broker (firmware/mqtt_packets.py),
commands (firmware/guard.py, then the sans-IO core), time replies and live audio frames; on
the head-end, reports (births, deaths, heartbeats, events: headend/mqtt/ingest.py).
Bounded: derandomized, a fixed number of examples, no deadline (2 shared cores)."""

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firmware import mqtt_packets as P
from firmware.clock import ClockEstimator
from firmware.core import ReceiverCore
from firmware.guard import CommandGuard
from headend.app import create_app
from headend.models import Receiver
from headend.mqtt.ingest import Report, _validated, apply_batch
from headend.settings import Settings
from protocol import frames
from protocol import messages as M
from protocol.errors import ProtocolError
from protocol.fields import HI, INT, LO, NUMBER, TYPE, row_of
from protocol.signing import HmacKey, open_sealed, seal

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
DEVICE = "a1"
NOW = 1_800_000_000_000  # network ms: the guard judges counters and expiry against this
SHA = "ab" * 32

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# What JSON can carry, and a little more Python's json accepts (NaN, Infinity): the values
# an attacker (or a buggy head-end) puts where a field should be.
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**32, 2**63, 2**64, -2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=80),
    st.sampled_from(["", "mp3", "adpcm", "ended", "finished", "a" * 65, SHA]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)

MEDIA = {"item": "m1", "url": "http://127.0.0.1/m1.mp3", "sha": SHA, "size": 1000,
         "dur": 3000, "codec": "mp3", "rate": 22050}
PLAY_ARGS = dict(MEDIA, bid="b1", at=NOW + 5000, prio=0, vol=50)
VALID_ARGS = {
    M.PLAY: PLAY_ARGS,
    M.FETCH: dict(MEDIA),
    M.STREAM: {"bid": "b2", "sid": "s1", "sno": 7, "key": "cd" * 32, "codec": "adpcm",
               "rate": 16000, "prio": 2, "vol": 80, "until": NOW + 60000},
    M.STOP: {"bid": "b1"},
    M.VOLUME: {"vol": 30},
    M.REBOOT: {},
    M.RESET_FLOOR: {"nonce": "ef" * 32},
    M.IDENTIFY: {"secs": 5},
    M.SCHEDULE: {"from": NOW, "to": NOW + 3600000, "items": [PLAY_ARGS]},
    M.UPDATE: {"ver": "0.2.0", "man": SHA, "msize": 900, "url": "http://127.0.0.1/fw/0.2.0",
               "total": 200000},
    M.SELFTEST: {"run": "r1", "lvl": -30, "ms": 1000},
    M.REKEY: {"rid": "0123456789abcdef", "user": DEVICE + ".b", "box": "ab" * 40},
}
# Every command kind is fuzzed: a new one without valid arguments here fails at import.
assert set(VALID_ARGS) == set(M.COMMANDS), set(M.COMMANDS) ^ set(VALID_ARGS)


def command_dict(kind, ctr=NOW, exp=NOW + 60000):
    return {"v": 1, "dev": DEVICE, "id": "c1", "ctr": ctr, "exp": exp, "k": kind,
            "a": json.loads(json.dumps(VALID_ARGS[kind]))}


def body_of(obj):
    # allow_nan (the default): NaN and Infinity reach the wire as Python's json writes them.
    return json.dumps(obj, separators=(",", ":")).encode()


@st.composite
def mutated(draw, base):
    """``base`` (a JSON object) with one field, at the top or one level down, replaced by an
    arbitrary value, dropped or added."""
    obj = json.loads(json.dumps(base))
    target = obj
    nested = [k for k, v in obj.items() if isinstance(v, dict) and v]
    if nested and draw(st.booleans()):
        target = obj[draw(st.sampled_from(sorted(nested)))]
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "add" or not target:
        target[draw(st.text(max_size=6))] = draw(json_values)
    elif action == "drop":
        del target[draw(st.sampled_from(sorted(target)))]
    else:
        target[draw(st.sampled_from(sorted(target)))] = draw(json_values)
    return obj


@st.composite
def byte_mutation(draw, data):
    """``data`` with one byte changed, inserted or removed (never the same bytes)."""
    data = bytearray(data)
    i = draw(st.integers(0, len(data) - 1))
    how = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    if how == "flip":
        data[i] ^= draw(st.integers(1, 255))
    elif how == "insert":
        data.insert(i, draw(st.integers(0, 255)))
    elif how == "delete":
        del data[i]
    else:
        del data[i:]
    return bytes(data)


def refused_or_value(call, *args):
    """Run a decoder; only ProtocolError may come out of it (anything else fails the test)."""
    try:
        return call(*args)
    except ProtocolError:
        return None


# -- commands on the receiver ---------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=400))
def test_a_command_of_arbitrary_bytes_is_refused_and_the_core_survives_it(payload):
    guard = CommandGuard(KEY, DEVICE)
    try:
        guard.check(payload, NOW)
    except ProtocolError as e:
        assert e.reason in ("malformed", "bad-signature")
    else:
        raise AssertionError("arbitrary bytes verified as a command")
    assert guard.command_id(payload) is None
    core = ReceiverCore(DEVICE, "s", KEY)
    core.set_synced(NOW)
    assert isinstance(core.on_command(payload, NOW), list)
    assert core.counters["rejected"] == 1


@FUZZ
@given(st.sampled_from(M.COMMANDS).flatmap(lambda kind: mutated(command_dict(kind))))
def test_an_authentic_command_with_any_field_mutated_never_crashes_the_receiver(cmd):
    payload = seal(KEY, body_of(cmd))
    refused_or_value(M.open_command, KEY, payload, DEVICE)
    refused_or_value(CommandGuard(KEY, DEVICE).check, payload, NOW)
    core = ReceiverCore(DEVICE, "s", KEY)
    core.set_synced(NOW)
    for now in (NOW, NOW + 10000, NOW + 4000000):  # act on it, then let time play it out
        assert isinstance(core.on_command(payload, now), list)
        assert isinstance(core.tick(now), list)
    core.next_due(NOW)


@FUZZ
@given(st.sampled_from(M.COMMANDS).flatmap(
    lambda kind: byte_mutation(M.sign_command(KEY, DEVICE, kind, VALID_ARGS[kind], NOW,
                                              NOW + 60000, "c1"))))
def test_a_signed_command_changed_by_one_byte_never_verifies(payload):
    try:
        M.open_command(KEY, payload, DEVICE)
    except ProtocolError as e:
        assert e.reason in ("malformed", "bad-signature")
    else:
        raise AssertionError("a changed command verified: %r" % payload)


@FUZZ
@given(st.sampled_from(M.COMMANDS))
def test_a_command_sealed_with_another_key_never_verifies(kind):
    payload = seal(OTHER_KEY, body_of(command_dict(kind)))
    assert refused_or_value(M.open_command, KEY, payload, DEVICE) is None


# -- time replies on the receiver -----------------------------------------------------------

TIME_REPLY = {"v": 1, "dev": DEVICE, "t0": 1000, "t1": NOW, "t2": NOW + 1}


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(TIME_REPLY).map(
    lambda body: seal(KEY, body_of(body)))))
def test_a_time_reply_decodes_to_three_ints_or_is_refused(payload):
    got = refused_or_value(M.open_time_reply, KEY, payload, DEVICE)
    if got is not None:
        t0, t1, t2 = got
        assert all(type(t) is int for t in got) and t1 >= 0 and t2 >= 0
        clock = ClockEstimator()
        clock.add_sample(t0, t1, t2, t0 + 40)  # what the shell does with a matched reply


@FUZZ
@given(byte_mutation(M.time_reply(KEY, DEVICE, 1000, NOW, NOW + 1)))
def test_a_signed_time_reply_changed_by_one_byte_never_verifies(payload):
    assert refused_or_value(M.open_time_reply, KEY, payload, DEVICE) is None


# -- live audio frames on the receiver ------------------------------------------------------

STREAM_KEY = HmacKey(bytes.fromhex("cd" * 32))
FRAME = frames.pack_frame(STREAM_KEY, frames.CODEC_ADPCM, 7, 1, NOW + 2000, 505, b"\x00" * 256)


@FUZZ
@given(st.binary(max_size=300))
def test_a_frame_of_arbitrary_bytes_is_refused(data):
    assert refused_or_value(frames.unpack_frame, STREAM_KEY, data) is None
    refused_or_value(frames.unpack_frame, None, data)  # header only: a value or a refusal


@FUZZ
@given(byte_mutation(FRAME))
def test_a_frame_changed_by_one_byte_never_verifies_and_the_core_survives_it(data):
    assert refused_or_value(frames.unpack_frame, STREAM_KEY, data) is None
    core = ReceiverCore(DEVICE, "s", KEY)
    core.set_synced(NOW)
    core.on_command(M.sign_command(KEY, DEVICE, M.STREAM, VALID_ARGS[M.STREAM], NOW,
                                   NOW + 60000, "c1"), NOW)
    core.tick(NOW)
    core.on_frame("s1", data, NOW)
    core.on_frame("s1", FRAME, NOW)
    assert core.counters["bad_frames"] + core.counters["malformed"] >= 1


# -- MQTT packets from the broker -----------------------------------------------------------

@FUZZ
@given(st.integers(0, 255), st.binary(max_size=200))
def test_an_mqtt_packet_of_arbitrary_bytes_decodes_or_is_refused(first_byte, body):
    for decoder in (P.decode_connack, P.decode_packet_id, P.decode_suback):
        refused_or_value(decoder, memoryview(body))
    refused_or_value(P.decode_publish, first_byte, memoryview(body))
    refused_or_value(P.check_fixed_header, first_byte)
    got = refused_or_value(P.decode_remaining_length, body)
    if got is not None:
        assert 0 <= got[0] <= P.MAX_REMAINING_LENGTH and got[1] <= min(len(body), 4)


# -- reports on the head-end ----------------------------------------------------------------

REPORTS = {
    "status": json.loads(M.birth(DEVICE, 3, 1, "1.0", ["mp3"], "wifi")),
    "hb": {"v": 1, "boot": 3, "conn": 1, "up": 60, "heap": 1000, "vol": 70, "dc": 12.5,
           "ln": "wifi", "rssi": -60, "play": "b1", "temp": 40.5, "off": -20},
    "evt": M.event(5, M.EV_ENDED, NOW, {"bid": "b1", "item": "m1", "reason": "finished",
                                       "played": 3000}),
}


def open_and_validate(leaf, payload):
    """What the head-end's ingest does with a report before anything looks at it."""
    return _validated(leaf, M.open_report(KEY, leaf, payload))


@FUZZ
@given(st.sampled_from(sorted(REPORTS)), st.binary(max_size=400))
def test_a_report_of_arbitrary_bytes_is_refused(leaf, payload):
    assert refused_or_value(open_and_validate, leaf, payload) is None


@FUZZ
@given(st.sampled_from(sorted(REPORTS)).flatmap(
    lambda leaf: st.tuples(st.just(leaf), mutated(REPORTS[leaf]))))
def test_an_authentic_report_with_any_field_mutated_is_validated_or_refused(leaf_and_msg):
    leaf, msg = leaf_and_msg
    got = refused_or_value(open_and_validate, leaf, M.seal_report(KEY, leaf, body_of(msg)))
    if got is not None and leaf == "hb":
        for name, value in got.items():  # only known fields, each within its bounds
            if name != "v":
                row = row_of(M.HEARTBEAT_TABLE, name)
                if row[TYPE] in (INT, NUMBER):
                    assert row[LO] <= value <= row[HI]
    if got is not None and leaf == "evt":
        assert 0 <= got["seq"] <= M.MAX_COUNT and 0 <= got["t"] <= M.MAX_TIME_MS


@FUZZ
@given(st.sampled_from(sorted(REPORTS)).flatmap(lambda leaf: st.tuples(
    st.just(leaf), byte_mutation(M.seal_report(KEY, leaf, body_of(REPORTS[leaf]))))))
def test_a_sealed_report_changed_by_one_byte_never_verifies(leaf_and_payload):
    leaf, payload = leaf_and_payload
    assert refused_or_value(M.open_report, KEY, leaf, payload) is None


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.binary(max_size=16))
def test_a_sealed_body_opens_only_with_its_key_and_domain(body, domain):
    assume(domain != b"x")
    sealed = seal(KEY, body, domain)
    assert open_sealed(KEY, sealed, domain) == body
    assert refused_or_value(open_sealed, OTHER_KEY, sealed, domain) is None
    assert refused_or_value(open_sealed, KEY, sealed, b"x") is None


@FUZZ
@given(st.sampled_from(M.COMMANDS), st.data())
def test_a_signed_message_with_its_signature_recased_never_verifies(kind, data):
    # The same MAC bytes in other hex letters are other bytes on the wire: a relay (or the
    # broker) must not be able to mint a second valid copy of a command or report.
    payload = M.sign_command(KEY, DEVICE, kind, VALID_ARGS[kind], NOW, NOW + 60000, "c1")
    letters = [i for i in range(64) if payload[i:i + 1].isalpha()]
    chosen = data.draw(st.sets(st.sampled_from(letters), min_size=1))
    recased = bytearray(payload)
    for i in chosen:
        recased[i] = ord(chr(recased[i]).upper())
    assert refused_or_value(M.open_command, KEY, bytes(recased), DEVICE) is None


def start_headend(tmp_path_factory, database_url=""):
    """A head-end (SQLite by default) with receiver a1 (key KEY); its app and settings."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("fuzz") / "var", mqtt_enabled=False,
                        database_url=database_url, site_id="xa-test",
                        public_base_url="http://headend.test:8080")
    app = create_app(settings)
    with app.state.session_factory() as session:
        session.add(Receiver(id=DEVICE, site_id="xa-test", name=DEVICE, device_key=KEY.hex(),
                             mqtt_user=DEVICE, mqtt_password_hash="unused"))
        session.commit()
    return app, settings


@pytest.fixture(scope="module")
def headend(tmp_path_factory):
    """One SQLite head-end for the module, every example rolled back, so hypothesis's
    examples do not see each other's rows."""
    app, settings = start_headend(tmp_path_factory)
    yield app, settings
    app.state.engine.dispose()


BIRTH = Report("status", DEVICE, M.seal_report(KEY, "status", body_of(REPORTS["status"])), 0)


@settings(parent=FUZZ, max_examples=150)
@given(st.lists(st.sampled_from(sorted(REPORTS)).flatmap(lambda leaf: st.tuples(
    st.just(leaf), st.one_of(mutated(REPORTS[leaf]), st.just(REPORTS[leaf])))),
    min_size=1, max_size=4))
def test_the_ingest_applies_or_drops_authentic_mutated_reports_and_never_raises(headend, batch):
    # Past validation: what the ingest does with the fields it does not check (an event's
    # bid, item, played, reason, cmd; a birth's caps, fw, link) must not raise either.
    app, config = headend
    reports = [BIRTH] + [Report(leaf, DEVICE, M.seal_report(KEY, leaf, body_of(msg)), NOW,
                                qos=1) for leaf, msg in batch]
    with app.state.session_factory() as session:
        try:
            result = apply_batch(session, settings=config, reports=reports)
        finally:
            session.rollback()
    assert result.stats["birth"] >= 1


NON_FINITE = [
    # Python's json reads NaN and Infinity; PostgreSQL's json type refuses them, so the
    # insert of the event's body (or the birth's caps) raised DataError out of apply_batch
    # (found by this fuzzing); now the ingest drops them (headend/mqtt/ingest.py _finite).
    ("evt", dict(M.event(6, M.EV_REJECTED, NOW, {"topic": "cmd", "reason": "x"}),
                 z=float("nan"))),
    ("status", dict(REPORTS["status"], conn=2, caps={"hb": float("inf")})),
]


@pytest.mark.parametrize("leaf,msg", NON_FINITE, ids=["event-nan", "birth-caps-infinity"])
def test_a_report_with_a_non_finite_number_is_dropped_on_postgresql(tmp_path_factory, leaf, msg):
    from pg_server import PostgresServer, ServerUnavailable

    try:
        server = PostgresServer().start()
    except ServerUnavailable as why:
        pytest.skip("PostgreSQL: %s" % why)
    try:
        app, config = start_headend(tmp_path_factory, server.new_database())
        report = Report(leaf, DEVICE, M.seal_report(KEY, leaf, body_of(msg)), NOW, qos=1)
        with app.state.session_factory() as session:
            result = apply_batch(session, settings=config, reports=[BIRTH, report])
            session.commit()
        app.state.engine.dispose()
    finally:
        server.stop()
    assert result.stats["malformed"] == 1  # dropped, and the birth of the same batch counts
    assert result.stats["birth"] == 1
