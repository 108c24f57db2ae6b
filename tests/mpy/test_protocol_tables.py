"""The field tables (protocol/messages.py) and their one validator and encoder
(protocol/fields.py) as the receiver runs them: under CPython (pytest) and under MicroPython,
WebAssembly and the ESP32's number model (31-bit small ints, float32; `make test-micropython`)."""

import json

from protocol import fields as F
from protocol import messages as M
from protocol import presence
from protocol.errors import ProtocolError

SHA = "ab" * 32
NOW = 1763787600000  # network ms: a big int on the board


def reason_of(call, *args):
    """(reason, detail) of the ProtocolError ``call(*args)`` raises, or None if it returns."""
    try:
        call(*args)
    except ProtocolError as exc:
        return (exc.reason, exc.detail)
    return None


def all_tables():
    """(name, table) of every message table, nested ones included."""
    out = [("command", M.COMMAND_TABLE), ("time-request", M.TIME_REQUEST_TABLE),
           ("time-reply", M.TIME_REPLY_TABLE), ("birth", M.BIRTH_TABLE), ("caps", M.CAPS_TABLE),
           ("death", M.DEATH_TABLE), ("heartbeat", M.HEARTBEAT_TABLE), ("event", M.EVENT_TABLE),
           ("schedule-item", M.SCHEDULE_ITEM_ARGS), ("schedule-early", M.EARLY_TABLE),
           ("play-lead", M.LEAD_TABLE)]
    for kind in M.COMMANDS:
        out.append((kind, M.COMMAND_ARGS[kind]))
    for kind in M.EVENTS:
        out.append(("event-" + kind, M.EVENT_FIELDS[kind]))
    return out


def valid_args():
    play = {"bid": "b1", "item": "m1", "url": "http://h/m1.mp3", "sha": SHA, "size": 1000,
            "dur": 60000, "codec": "mp3", "rate": 22050, "at": NOW, "prio": 0, "vol": 70}
    fetch = dict(play)
    for name in ("bid", "at", "prio", "vol"):
        del fetch[name]
    return {
        M.PLAY: play, M.FETCH: fetch,
        M.STREAM: {"bid": "b2", "sid": "s1", "sno": 0xFFFFFFFF, "key": "cd" * 32,
                   "codec": "adpcm", "rate": 16000, "prio": 3, "vol": 100, "until": NOW},
        M.STOP: {"bid": "b1"}, M.VOLUME: {"vol": 0}, M.IDENTIFY: {"secs": 600},
        M.SCHEDULE: {"from": NOW, "to": NOW + 3600000, "items": [dict(play)]},
        M.REBOOT: {}, M.RESET_FLOOR: {"nonce": "ef" * 32},
        M.UPDATE: {"ver": "0.2.0", "man": SHA, "msize": 900, "url": "http://h/fw/0.2.0",
                   "total": 200000},
        M.SELFTEST: {"run": "r1"},
        M.REKEY: {"rid": "0123456789abcdef", "user": "r1.b", "box": "ab" * 40},
    }


# -- the tables themselves ----------------------------------------------------------------------

def test_every_row_is_a_well_formed_tuple_with_a_meaning():
    for table_name, table in all_tables():
        seen = []
        for row in table:
            assert isinstance(row, tuple) and len(row) == 7, (table_name, row)
            name = row[F.NAME]
            assert isinstance(name, str) and name and name not in seen, (table_name, name)
            seen.append(name)
            assert row[F.TYPE] in F.TYPES, (table_name, name)
            assert row[F.USE] in F.USES, (table_name, name)
            assert isinstance(row[F.MEANING], str) and row[F.MEANING], (table_name, name)
            if row[F.TYPE] == F.ONE_OF:
                assert isinstance(row[F.LO], tuple) and row[F.LO], (table_name, name)


def test_every_message_table_starts_with_the_version():
    for table in (M.COMMAND_TABLE, M.TIME_REQUEST_TABLE, M.TIME_REPLY_TABLE, M.BIRTH_TABLE,
                  M.DEATH_TABLE, M.HEARTBEAT_TABLE, M.EVENT_TABLE):
        assert table[0][F.NAME] == "v" and table[0][F.USE] == F.REQUIRED


def test_every_command_and_event_kind_has_a_table():
    for kind in M.COMMANDS:
        assert kind in M.COMMAND_ARGS, kind
    for kind in M.EVENTS:
        assert kind in M.EVENT_FIELDS, kind
    assert sorted(M.COMMAND_ARGS) == sorted(M.COMMANDS)
    assert sorted(M.EVENT_FIELDS) == sorted(M.EVENTS)


def test_birth_field_names_come_from_the_birth_tables():
    assert M.BIRTH_FIELDS == ("v", "k", "dev", "boot", "conn", "fw", "caps", "link")
    assert "reset" in M.BIRTH_BOOT_FIELDS and "rebooted" in M.BIRTH_BOOT_FIELDS
    assert F.names(M.BIRTH_TABLE) == M.BIRTH_FIELDS + M.BIRTH_BOOT_FIELDS


def test_no_command_declares_an_adpcm_block_size():
    # The ADPCM block is fixed (protocol.media.ADPCM_BLOCK_BYTES): no command carries one.
    for kind in M.COMMANDS:
        assert F.row_of(M.COMMAND_ARGS[kind], "block") is None


# -- commands: every table-driven refusal names its field ---------------------------------------

def test_valid_arguments_of_every_command_pass():
    args = valid_args()
    for kind in M.COMMANDS:
        assert reason_of(M.check_args, kind, args[kind]) is None, kind


def test_a_missing_required_argument_is_refused_by_name():
    args = valid_args()
    for kind in M.COMMANDS:
        for row in M.COMMAND_ARGS[kind]:
            if row[F.USE] != F.REQUIRED:
                continue
            a = dict(args[kind])
            del a[row[F.NAME]]
            assert reason_of(M.check_args, kind, a) == ("bad-field", row[F.NAME]), (kind, row)


def test_a_missing_optional_argument_is_fine_and_null_is_missing():
    args = valid_args()
    for kind in M.COMMANDS:
        for row in M.COMMAND_ARGS[kind]:
            if row[F.USE] == F.REQUIRED:
                continue
            a = dict(args[kind])
            a[row[F.NAME]] = None
            assert reason_of(M.check_args, kind, a) is None, (kind, row)


def test_a_schedule_item_needs_a_start_time_and_valid_play_fields():
    a = valid_args()[M.SCHEDULE]
    a["items"][0]["at"] = None
    assert reason_of(M.check_args, M.SCHEDULE, a) == ("bad-field", "at")
    a["items"] = [dict(valid_args()[M.PLAY], sha="AB" * 32)]
    assert reason_of(M.check_args, M.SCHEDULE, a) == ("bad-field", "sha")
    a["items"] = ["not an object"]
    assert reason_of(M.check_args, M.SCHEDULE, a) == ("bad-field", "items")
    a["items"] = [valid_args()[M.PLAY]] * (M.MAX_SCHEDULE_ITEMS + 1)
    assert reason_of(M.check_args, M.SCHEDULE, a) == ("bad-field", "items")


def test_arguments_that_are_not_an_object_or_of_no_kind_are_bad_args():
    assert reason_of(M.check_args, M.PLAY, [1])[0] == "bad-args"
    assert reason_of(M.check_args, "self-destruct", {})[0] == "bad-args"
    assert reason_of(M.check_args, None, {})[0] == "bad-args"


def test_commands_check_in_place_without_copying():
    a = valid_args()[M.PLAY]
    a["extra"] = "kept, never read"
    key = b"k" * 32
    cmd = M.open_command(key, M.sign_command(key, "d1", M.PLAY, a, NOW, NOW + 60000, "c1"), "d1")
    assert cmd["a"]["extra"] == "kept, never read" and cmd["ctr"] == NOW


# -- the validator under the board's numbers ----------------------------------------------------

def test_ints_at_the_count_bound_pass_and_one_more_is_refused():
    row = F.row_of(M.HEARTBEAT_TABLE, "up")
    assert F.check_value(row, M.MAX_COUNT) == 0x7FFFFFFF  # not a small int on the ESP32
    assert reason_of(F.check_value, row, M.MAX_COUNT + 1) == ("bad-field", "up")
    assert reason_of(F.check_value, row, -1) == ("bad-field", "up")


def test_big_counters_and_times_are_ints_not_floats():
    ctr = F.row_of(M.COMMAND_TABLE, "ctr")
    assert F.check_value(ctr, 2 ** 63) == 2 ** 63  # unbounded above: the guard judges it
    t = F.row_of(M.EVENT_TABLE, "t")
    assert F.check_value(t, M.MAX_TIME_MS) == M.MAX_TIME_MS
    assert reason_of(F.check_value, t, M.MAX_TIME_MS + 1) == ("bad-field", "t")
    assert reason_of(F.check_value, t, float(NOW)) == ("bad-field", "t")


def test_ints_refuse_bools_floats_and_strings():
    row = F.row_of(M.VOLUME_ARGS, "vol")
    for bad in (True, False, 50.0, "50", None, [50]):
        assert reason_of(F.check_value, row, bad) == ("bad-field", "vol"), bad


def test_numbers_take_ints_and_floats_within_bounds_and_refuse_nan_and_infinity():
    row = F.row_of(M.HEARTBEAT_TABLE, "dc")
    assert F.check_value(row, 13) == 13
    assert F.check_value(row, 13.1) == 13.1  # float32 on the board: still within bounds
    for bad in (float("nan"), float("inf"), -0.5, 100.5, True, "13"):
        assert reason_of(F.check_value, row, bad) == ("bad-field", "dc"), bad


def test_strings_ids_hex_and_choices():
    assert reason_of(F.check_value, F.row_of(M.HEARTBEAT_TABLE, "ln"), "") == ("bad-field", "ln")
    assert reason_of(F.check_value, F.row_of(M.HEARTBEAT_TABLE, "ln"), "x" * 17)[0] == "bad-field"
    assert reason_of(F.check_value, F.row_of(M.STOP_ARGS, "bid"), "a/b")[0] == "bad-field"
    sha = F.row_of(M.FETCH_ARGS, "sha")
    assert F.check_value(sha, SHA) == SHA
    for bad in ("AB" * 32, "zz" * 32, SHA[:-1], SHA + "a", 12):
        assert reason_of(F.check_value, sha, bad) == ("bad-field", "sha"), bad
    codec = F.row_of(M.FETCH_ARGS, "codec")
    assert reason_of(F.check_value, codec, "opus") == ("bad-field", "codec")
    assert reason_of(F.check_value, F.row_of(M.EVENT_FIELDS[M.EV_ACK], "ok"), 1)[0] == "bad-field"


# -- encoders: built from the tables, read back by the validator --------------------------------

def shell_fields():
    """Everything firmware/shell.py heartbeat() hands over, on an idle receiver on battery."""
    return {"boot": 12, "conn": 1, "up": 86400, "heap": 81234, "vol": 70, "cu": 524288,
            "off": -1873, "amp": 0, "mains": 0, "dc": 12.3456, "ln": "wifi", "rssi": -67,
            "af": 0, "sy": 1, "play": None, "rej": 0, "mal": 2, "temp": None, "err": 3}


def test_heartbeat_leaves_out_none_and_if_set_fields_at_zero_but_keeps_mains_zero():
    msg = json.loads(M.heartbeat(shell_fields()))
    assert msg["v"] == 1 and msg["mains"] == 0 and msg["amp"] == 0
    for name in ("play", "temp", "af", "rej"):
        assert name not in msg, name
    assert msg["mal"] == 2 and msg["err"] == 3
    assert abs(msg["dc"] - 12.35) < 0.001  # rounded to 2 decimals: bytes on 4G
    assert M.check_heartbeat(msg) == msg


def test_encoders_refuse_a_field_their_table_does_not_have():
    for call, arg in ((M.heartbeat, dict(shell_fields(), mood=1)),
                      (M.heartbeat, {"boot": 1, "conn": 1}),  # "up" is required
                      ):
        try:
            call(arg)
        except ValueError:
            continue
        raise AssertionError("encoded %r" % (arg,))
    try:
        M.event(1, M.EV_STARTED, NOW, {"bid": "b1", "mood": 1})
    except ValueError:
        return
    raise AssertionError("an event with an unknown field was built")


def test_every_event_the_core_sends_validates_as_sent():
    # The fields of firmware/core.py's _ack and _event call sites.
    sent = [
        (M.EV_ACK, {"cmd": "c1", "ok": True}),
        (M.EV_ACK, {"cmd": None, "ok": False, "reason": "bad-signature"}),
        (M.EV_REJECTED, {"topic": "cmd", "reason": "replay"}),
        (M.EV_FETCHED, {"item": "m1", "sha": SHA}),
        (M.EV_FETCH_FAILED, {"item": "m1", "sha": SHA, "reason": "http 404"}),
        (M.EV_STARTED, {"bid": "b1", "item": "m1", "at": NOW, "skip": 40}),
        (M.EV_STARTED, {"bid": "b2", "sid": "s1", "at": None, "skip": 0}),
        (M.EV_ENDED, {"bid": "b1", "item": "m1", "reason": M.END_FAILED, "played": 0,
                      "detail": "not-cached"}),
        (M.EV_ENDED, {"bid": "b2", "sid": "s1", "reason": M.END_FINISHED, "played": 60000}),
    ]
    seq = 0
    for kind, fields in sent:
        seq += 1
        msg = json.loads(M.encode(M.event(seq, kind, NOW, fields)))
        for name in fields:  # null stays null: "at": null is "as soon as ready"
            assert name in msg and msg[name] == fields[name], (kind, name)
        checked = M.check_event(msg)
        for name in msg:  # the head-end keeps every field, nulls aside
            assert checked.get(name) == msg[name], (kind, name)


def test_event_texts_are_cut_to_their_limit_so_they_always_validate():
    msg = M.event(1, M.EV_FETCH_FAILED, NOW, {"item": "m1", "sha": SHA, "reason": "e" * 500})
    assert len(msg["reason"]) == 128 and M.check_event(msg) == msg


def test_a_bad_optional_event_field_is_left_out_and_a_bad_required_one_refuses_it():
    msg = M.event(1, M.EV_STARTED, NOW, {"bid": "b1", "item": "m1", "at": NOW, "skip": 0})
    msg["at"] = 2 ** 63
    msg["mood"] = "unknown fields are not kept"
    checked = M.check_event(msg)
    assert "at" not in checked and "mood" not in checked and checked["bid"] == "b1"
    ended = M.event(2, M.EV_ENDED, NOW, {"bid": "b1", "reason": M.END_FINISHED})
    ended["reason"] = "exploded"
    assert reason_of(M.check_event, ended) == ("bad-field", "reason")
    assert reason_of(M.check_event, dict(ended, k="mood")) == ("bad-field", "k")


def test_birth_and_death_round_trip_and_bad_capabilities_cost_only_themselves():
    caps = {"codecs": ["mp3", "adpcm"], "sink": "i2s", "cache_free": 3145728,
            "cache_total": 4194304, "rates": [16000, 22050], "hb": 60}
    body = M.birth("d1", 3, 2, "0.1.0", caps, "ppp", {"reset": "hard", "brownouts": 0,
                                                      "crashes": None})
    msg = json.loads(body)
    assert msg["k"] == M.BIRTH and "crashes" not in msg and msg["brownouts"] == 0
    assert M.check_status(msg) == msg
    msg["caps"]["hb"] = -5
    msg["caps"]["rates"] = "all of them"
    checked = M.check_status(msg)
    assert checked["caps"] == {"codecs": ["mp3", "adpcm"], "sink": "i2s",
                               "cache_free": 3145728, "cache_total": 4194304}
    death = json.loads(M.death("d1", 3, 2))
    assert death == {"v": 1, "k": M.DEATH, "dev": "d1", "boot": 3, "conn": 2}
    assert M.check_status(death) == death
    assert reason_of(M.check_status, dict(death, boot=-1)) == ("bad-field", "boot")
    assert reason_of(M.check_status, dict(death, k="zombie")) == ("bad-field", "k")


# -- presence rules -----------------------------------------------------------------------------

def test_presence_periods_and_the_offline_allowance_in_whole_seconds():
    assert presence.period_s("wifi") == 30 and presence.period_s("eth") == 30
    assert presence.period_s("ppp") == 60 and presence.period_s("sim") == 30
    assert presence.offline_allowance_s(30) == 42 and presence.offline_allowance_s(60) == 84
    for link in ("wifi", "eth"):
        assert presence.noticed_within_s(presence.period_s(link)) <= presence.NOTICE_WITHIN_S
