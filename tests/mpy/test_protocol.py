"""protocol/ as the receiver runs it: these tests run under CPython (pytest) and under a real
MicroPython (`make test-micropython`), so both sides are proven to speak the same bytes."""

from binascii import hexlify

from protocol import frames, messages, signing, topics
from protocol.errors import ProtocolError

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
SHA = "ab" * 32
STREAM_KEY_HEX = "cd" * 32


def reason_of(call, *args):
    """The ProtocolError reason ``call(*args)`` raises, or None if it returns."""
    try:
        call(*args)
    except ProtocolError as exc:
        return exc.reason
    return None


def play_args():
    return {"bid": "b1", "item": "m1", "url": "http://h/m1.mp3", "sha": SHA, "size": 1000,
            "dur": 60000, "codec": "mp3", "rate": 22050, "prio": messages.PRIO_NORMAL}


# -- topics -------------------------------------------------------------------------------------

def test_device_topics_round_trip_through_parse():
    for leaf in topics.DEVICE_UPLINK + topics.DEVICE_DOWNLINK:
        topic = topics.device_topic("xa-an_phu", "loa-01", leaf)
        assert topic == "loaxa/v1/xa-an_phu/dev/loa-01/" + leaf
        assert topics.parse(topic) == ("xa-an_phu", "dev", "loa-01", leaf)


def test_stream_topic_round_trips_through_parse():
    topic = topics.stream_topic("xa1", "live-7")
    assert topics.parse(topic) == ("xa1", "stream", "live-7", "")


def test_topics_refuse_ids_that_would_escape_their_level():
    for bad in ("", "a/b", "+", "#", "a b", "x" * 49, None, 7, "loa\u0111"):
        try:
            topics.device_topic("xa1", bad, topics.CMD)
        except ValueError:
            continue
        raise AssertionError("accepted device id %r" % (bad,))


def test_parse_ignores_foreign_and_malformed_topics():
    for topic in ("", "loaxa", "loaxa/v2/xa1/dev/d1/cmd", "other/v1/xa1/dev/d1/cmd",
                  "loaxa/v1/xa1/dev/d1", "loaxa/v1/xa1/dev/d1/cmd/extra",
                  "loaxa/v1/x+1/dev/d1/cmd", "loaxa/v1/xa1/stream", "loaxa/v1/xa1/other/d1/cmd"):
        assert topics.parse(topic) is None, topic


# -- HMAC and sealed payloads -------------------------------------------------------------------

def test_hmac_matches_rfc4231_test_case_1():
    digest = signing.hmac_sha256(b"\x0b" * 20, b"Hi There")
    assert hexlify(digest) == (b"b0344c61d8db38535ca8afceaf0bf12b"
                               b"881dc200c9833da726e9376c2e32cff7")


def test_hmac_matches_rfc4231_test_case_2():
    digest = signing.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert hexlify(digest) == (b"5bdcc146bf60754e6a042426089575c7"
                               b"5a003f089d2739839dec58b964ec3843")


def test_hmac_with_a_key_longer_than_a_block_matches_rfc4231_test_case_6():
    digest = signing.hmac_sha256(b"\xaa" * 131,
                                 b"Test Using Larger Than Block-Size Key - Hash Key First")
    assert hexlify(digest) == (b"60e431591ee0b67f0d8a26aacbf5b77f"
                               b"8e0bc6213728c5140546040f0ee37f54")


def test_sealed_body_opens_with_the_same_key():
    body = b'{"v":1,"x":"xin ch\xc3\xa0o"}'
    assert signing.open_sealed(KEY, signing.seal(KEY, body)) == body


def test_sealed_body_refused_with_another_key():
    assert reason_of(signing.open_sealed, OTHER_KEY, signing.seal(KEY, b"{}")) == "bad-signature"


def test_tampered_sealed_body_is_refused():
    sealed = bytearray(signing.seal(KEY, b'{"v":1,"vol":40}'))
    sealed[-3] = ord("9")
    assert reason_of(signing.open_sealed, KEY, bytes(sealed)) == "bad-signature"


def test_unsigned_or_truncated_payloads_are_malformed():
    for payload in (b"", b"{}", b"z" * 64 + b"\n{}", b"ab" * 32 + b"{}", "text", None):
        assert reason_of(signing.open_sealed, KEY, payload) == "malformed", payload


# -- commands -----------------------------------------------------------------------------------

def test_signed_command_opens_for_its_device():
    wire = messages.sign_command(KEY, "loa-01", messages.PLAY, play_args(), 5, 1700000000000, "c1")
    cmd = messages.open_command(KEY, wire, "loa-01")
    assert (cmd["k"], cmd["ctr"], cmd["id"], cmd["a"]["bid"]) == ("play", 5, "c1", "b1")


def test_command_for_another_device_is_refused():
    wire = messages.sign_command(KEY, "loa-02", messages.VOLUME, {"vol": 70}, 1, 0, "c2")
    assert reason_of(messages.open_command, KEY, wire, "loa-01") == "wrong-device"


def test_command_signed_with_another_key_is_refused():
    wire = messages.sign_command(OTHER_KEY, "loa-01", messages.VOLUME, {"vol": 70}, 1, 0, "c3")
    assert reason_of(messages.open_command, KEY, wire, "loa-01") == "bad-signature"


def test_unknown_command_is_refused_even_when_signed():
    body = messages.encode({"v": 1, "dev": "loa-01", "id": "c4", "ctr": 1, "exp": 0,
                            "k": "self-destruct", "a": {}})
    wire = signing.seal(KEY, body)
    assert reason_of(messages.open_command, KEY, wire, "loa-01") == "bad-args"
    assert reason_of(messages.sign_command, KEY, "loa-01", "self-destruct", {}, 1, 0, "c") == "bad-args"


def test_bad_arguments_are_refused_before_signing_and_after_opening():
    assert reason_of(messages.sign_command, KEY, "loa-01", messages.VOLUME, {"vol": 101},
                     1, 0, "c5") == "bad-field"
    args = play_args()
    args["sha"] = "short"
    assert reason_of(messages.sign_command, KEY, "loa-01", messages.PLAY, args, 1, 0, "c6") == "bad-field"
    body = messages.encode({"v": 1, "dev": "loa-01", "id": "c7", "ctr": 1, "exp": 0,
                            "k": "volume", "a": {"vol": True}})
    assert reason_of(messages.open_command, KEY, signing.seal(KEY, body), "loa-01") == "bad-field"


def test_encode_is_compact_json():
    assert messages.encode({"v": 1, "a": [1, 2]}) in (b'{"v":1,"a":[1,2]}', b'{"a":[1,2],"v":1}')


def test_decode_refuses_garbage():
    for payload in (b"", b"\xff\xfe", b"not json", b"[1,2]", b"42", b'{"v":2}', b'{"x":1}',
                    b"{" * 10, b"x" * (messages.MAX_PAYLOAD + 1), None):
        assert reason_of(messages.decode, payload) == "malformed", payload


def test_time_reply_round_trip():
    wire = messages.time_reply(KEY, "loa-01", 100, 1700000000000, 1700000000002)
    assert messages.open_time_reply(KEY, wire, "loa-01") == (100, 1700000000000, 1700000000002)
    assert reason_of(messages.open_time_reply, KEY, wire, "loa-02") == "wrong-device"


def test_time_request_round_trip_and_garbage_is_malformed():
    assert messages.open_time_request(messages.time_request(1234)) == 1234
    assert reason_of(messages.open_time_request, b'{"v":1,"t0":"soon"}') == "bad-field"
    assert reason_of(messages.open_time_request, b"not json") == "malformed"


def test_command_counters_grow_past_the_last_and_never_fall_behind_the_clock():
    assert messages.next_counter(0, 1700000000000) == 1700000000000
    assert messages.next_counter(1700000000005, 1700000000000) == 1700000000006


# -- audio frames -------------------------------------------------------------------------------

def stream_key():
    return signing.HmacKey(signing.key_from_hex(STREAM_KEY_HEX))


def test_frame_round_trip_keeps_every_field():
    payload = bytes(range(200))
    wire = frames.pack_frame(stream_key(), frames.CODEC_ADPCM, 7, 42, 1700000000123, 505,
                             payload, flags=frames.FLAG_LAST)
    assert len(wire) == frames.FRAME_OVERHEAD + len(payload)
    frame = frames.unpack_frame(stream_key(), wire)
    assert (frame.codec, frame.stream_no, frame.seq, frame.play_at, frame.samples) == (
        frames.CODEC_ADPCM, 7, 42, 1700000000123, 505)
    assert frame.last
    assert bytes(frame.payload) == payload


def test_frame_with_tampered_audio_or_header_is_refused():
    wire = frames.pack_frame(stream_key(), frames.CODEC_MP3, 1, 1, 0, 1152, b"\x00" * 100)
    for index in (len(wire) - 1, 8, frames.HEADER_LEN):
        forged = bytearray(wire)
        forged[index] ^= 1
        assert reason_of(frames.unpack_frame, stream_key(), forged) == "bad-signature", index


def test_frame_from_another_stream_key_is_refused():
    wire = frames.pack_frame(signing.HmacKey(b"x" * 32), frames.CODEC_MP3, 1, 1, 0, 1152, b"a")
    assert reason_of(frames.unpack_frame, stream_key(), wire) == "bad-signature"


def test_short_or_foreign_frames_are_malformed():
    wire = frames.pack_frame(stream_key(), frames.CODEC_MP3, 1, 1, 0, 1152, b"")
    assert reason_of(frames.unpack_frame, stream_key(), wire[:-1]) == "malformed"
    assert reason_of(frames.unpack_frame, stream_key(), b"") == "malformed"
    foreign = b"XX" + wire[2:]
    assert reason_of(frames.unpack_frame, stream_key(), foreign) == "malformed"


def test_protocol_error_message_names_the_reason():
    try:
        messages.decode(b"[]")
    except ProtocolError as exc:
        assert exc.reason == "malformed"
        assert str(exc).startswith("malformed")
        assert isinstance(exc, ValueError)
        return
    raise AssertionError("decode accepted a list")
