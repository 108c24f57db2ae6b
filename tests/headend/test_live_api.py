"""Live sessions through the API and the audio WebSocket, on a real SQLite (and PostgreSQL)
database, real ffmpeg encoders and the head-end's own signing; commands and frames are kept by
the recording publisher, and the receivers' reports go through the real ingest.

What an operator relies on: only the chosen receivers are sent the stream, in the class that
preempts programmes, in a codec each decodes; the frames are signed with the stream's key and
carry one timeline; and whatever ends a session (stop, the socket closing, silence, audio that
never came, ``until``), every receiver that was sent the stream is sent ``stop`` for it.
"""

import math
import re
import struct
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PASSWORD, login
from polling import wait_for
from starlette.websockets import WebSocketDisconnect

from headend.live.session import LiveSession, LiveTarget
from headend.live.timeline import PcmTimeline
from headend.services.users import create_user
from headend.web.csrf import COOKIE as CSRF_COOKIE
from protocol import messages
from protocol.errors import ProtocolError
from protocol.frames import CODEC_ADPCM, CODEC_MP3, unpack_frame
from protocol.signing import HmacKey, key_from_hex

RATE = 16000
CHUNK_SAMPLES = 320  # 20 ms


def tone_chunks(seconds, freq=440.0):
    samples = [int(8000 * math.sin(2 * math.pi * freq * i / RATE))
               for i in range(int(seconds * RATE))]
    pcm = struct.pack("<%dh" % len(samples), *samples)
    step = CHUNK_SAMPLES * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


@pytest.fixture
def online(commune):
    """a1, a2 (MP3) and a3 (ADPCM) of thon-1 and b1 of thon-2 online; b2 never came."""
    commune.report(commune.birth("a1"), commune.birth("a2"),
                   commune.birth("a3", codecs=("adpcm",)), commune.birth("b1"))
    return commune


def streams_sent(commune, device):
    return [c for c in commune.commands_to(device) if c["k"] == messages.STREAM]


def stops_sent(commune, device, bid):
    return [c for c in commune.commands_to(device)
            if c["k"] == messages.STOP and c["a"].get("bid") == bid]


def frames_on(commune, sid):
    return [o.payload for o in commune.publisher.sent
            if o.topic.endswith("/stream/" + sid) and o.qos == 0]


def go_live(client, headers, targets=None, until=None):
    r = client.post("/api/v1/live", json={"source": {"microphone": True},
                                          "targets": targets or {"zones": ["thon-1"]},
                                          "until": until}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def token_of(headers):
    return headers["Authorization"].split(" ", 1)[1]


def audio_url(live, headers):
    return "%s?token=%s" % (live["websocket"], token_of(headers))


def wait_ended(client, headers, live_id, timeout=10):
    return wait_for(lambda: (lambda d: d if d["state"] == "ended" else None)(
        client.get("/api/v1/live/" + live_id, headers=headers).json()), timeout,
        "the session to end")


def test_stream_to_the_chosen_village_then_stop_sends_stop_to_each(client, online):
    headers = online.headers
    live = go_live(client, headers)
    assert live["state"] == "starting"
    assert live["websocket"] == "/api/v1/live/%s/audio" % live["id"]
    assert live["codecs"] == ["adpcm", "mp3"] and live["receivers"] == 3
    # Nothing is sent before the audio starts.
    assert not any(streams_sent(online, d) for d in ("a1", "a2", "a3", "b1"))

    with client.websocket_connect(audio_url(live, headers)) as ws:
        # At real time, as a microphone: MP3 frames are 180 ms, and none is sent that would
        # play before the receivers' amplifiers settled.
        for chunk in tone_chunks(2.0):
            ws.send_bytes(chunk)
            time.sleep(CHUNK_SAMPLES / RATE)
        wait_for(lambda: all(streams_sent(online, d) for d in ("a1", "a2", "a3")), 10,
                 "stream commands to thon-1")
        sent = {d: streams_sent(online, d)[0]["a"] for d in ("a1", "a2", "a3")}
        assert not streams_sent(online, "b1") and not streams_sent(online, "b2")
        assert {d: a["codec"] for d, a in sent.items()} == {"a1": "mp3", "a2": "mp3",
                                                           "a3": "adpcm"}
        assert all(a["prio"] == messages.PRIO_LIVE and a["bid"] == live["id"]
                   for a in sent.values())
        assert sent["a1"]["sid"] == sent["a2"]["sid"] != sent["a3"]["sid"]
        mp3 = wait_for(lambda: len(frames_on(online, sent["a1"]["sid"])) >= 4 and
                       frames_on(online, sent["a1"]["sid"]), 10, "MP3 frames")
        adpcm = wait_for(lambda: len(frames_on(online, sent["a3"]["sid"])) >= 4 and
                         frames_on(online, sent["a3"]["sid"]), 10, "ADPCM frames")
        detail = client.get("/api/v1/live/" + live["id"], headers=headers).json()
        assert detail["state"] == "live"
        assert {d["id"]: d["state"] for d in detail["devices"]} == {
            "a1": "sent", "a2": "sent", "a3": "sent"}

        r = client.delete("/api/v1/live/" + live["id"], headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "ended" and r.json()["reason"] == "stopped"
        # The stops are out when DELETE answers.
        for device in ("a1", "a2", "a3"):
            assert len(stops_sent(online, device, live["id"])) == 1
        assert not stops_sent(online, "b1", live["id"])
        assert ws.receive_json() == {"state": "ended", "reason": "stopped"}

    # Frames: signed with the stream's key, its number, in sequence, on one timeline.
    for frames, args, codec in ((mp3, sent["a1"], CODEC_MP3), (adpcm, sent["a3"], CODEC_ADPCM)):
        hkey = HmacKey(key_from_hex(args["key"]))
        opened = [unpack_frame(hkey, f) for f in frames]
        assert all(f.codec == codec and f.stream_no == args["sno"] for f in opened)
        # In sequence from the first sent (a first frame due before the receivers could play
        # it is not sent).
        assert [f.seq for f in opened] == list(range(opened[0].seq, opened[0].seq + len(opened)))
        assert opened[0].seq <= 1
        for a, b in zip(opened, opened[1:], strict=False):
            assert b.play_at - a.play_at == pytest.approx(a.samples * 1000 / RATE, abs=1)
        with pytest.raises(ProtocolError, match="frame tag"):
            unpack_frame(HmacKey(b"\0" * 32), frames[0])
    r = client.delete("/api/v1/live/" + live["id"], headers=headers)
    assert r.status_code == 409


def test_closing_the_socket_ends_the_session_and_stops_every_receiver(client, online):
    live = go_live(client, online.headers, targets={"devices": ["a1", "b1"]})
    with client.websocket_connect(audio_url(live, online.headers)) as ws:
        for chunk in tone_chunks(0.5):
            ws.send_bytes(chunk)
        wait_for(lambda: streams_sent(online, "b1"), 10, "the stream command")
    detail = wait_ended(client, online.headers, live["id"])
    assert detail["reason"] == "socket-closed"
    for device in ("a1", "b1"):
        wait_for(lambda d=device: stops_sent(online, d, live["id"]), 10, "stop to " + device)


def test_a_silent_source_ends_the_session(client, app, online):
    app.state.settings.live_silence_s = 0.5
    live = go_live(client, online.headers, targets={"devices": ["a1"]})
    with client.websocket_connect(audio_url(live, online.headers)) as ws:
        for chunk in tone_chunks(0.2):
            ws.send_bytes(chunk)
        assert ws.receive_json() == {"state": "ended", "reason": "silent"}
    assert stops_sent(online, "a1", live["id"])


def test_audio_that_never_comes_ends_the_session_without_commands(client, app, online):
    app.state.settings.live_connect_s = 0.3
    live = go_live(client, online.headers)
    detail = wait_ended(client, online.headers, live["id"])
    assert detail["reason"] == "no-audio"
    assert not any(online.commands_to(d) for d in ("a1", "a2", "a3"))
    with pytest.raises(WebSocketDisconnect) as closed, \
            client.websocket_connect(audio_url(live, online.headers)) as ws:
        ws.receive_bytes()
    assert closed.value.code == 4409


def test_until_ends_the_session_and_is_in_every_stream_command(client, online):
    until = datetime.now(UTC) + timedelta(seconds=1.5)
    live = go_live(client, online.headers, targets={"devices": ["a1"]}, until=until.isoformat())
    with client.websocket_connect(audio_url(live, online.headers)) as ws:
        ws.send_bytes(tone_chunks(0.1)[0])
        wait_for(lambda: streams_sent(online, "a1"), 10, "the stream command")
        assert streams_sent(online, "a1")[0]["a"]["until"] == int(until.timestamp() * 1000)
        for chunk in tone_chunks(5.0):  # talking at real time past ``until``
            ws.send_bytes(chunk)
            if client.get("/api/v1/live/" + live["id"],
                          headers=online.headers).json()["state"] == "ended":
                break
            time.sleep(CHUNK_SAMPLES / RATE)
    detail = wait_ended(client, online.headers, live["id"])
    assert detail["reason"] == "until"
    shown = datetime.fromisoformat(detail["until"].replace("Z", "+00:00"))
    assert abs(shown - until) < timedelta(milliseconds=1)
    wait_for(lambda: stops_sent(online, "a1", live["id"]), 10, "the stop")


def test_device_states_follow_the_receivers_reports(client, online):
    live = go_live(client, online.headers, targets={"all": True})
    with client.websocket_connect(audio_url(live, online.headers)) as ws:
        ws.send_bytes(tone_chunks(0.1)[0])
        wait_for(lambda: streams_sent(online, "b1"), 10, "the stream commands")
        bid = live["id"]
        online.report(online.event("a1", "started", bid=bid, sid=bid + "-mp3"),
                      online.event("a2", "started", bid=bid, sid=bid + "-mp3"),
                      online.event("a2", "ended", bid=bid, sid=bid + "-mp3",
                                   reason="preempted", played=900))
        cmd = streams_sent(online, "a3")[0]["id"]
        online.report(online.event("a3", "ack", cmd=cmd, ok=False, reason="unsupported-codec"))
        devices = {d["id"]: d for d in client.get("/api/v1/live/" + bid,
                                                  headers=online.headers).json()["devices"]}
        assert devices["a1"]["state"] == "playing"
        assert (devices["a2"]["state"], devices["a2"]["reason"]) == ("preempted", "preempted")
        assert (devices["a3"]["state"], devices["a3"]["reason"]) == ("refused",
                                                                      "unsupported-codec")
        assert devices["b1"]["state"] == "sent"
        assert devices["b2"]["state"] == "offline"
        ws.close()
    wait_ended(client, online.headers, live["id"])
    assert not stops_sent(online, "b2", live["id"])  # never sent the stream


def test_a_receiver_that_comes_online_during_the_session_joins_it(client, online):
    live = go_live(client, online.headers, targets={"zones": ["thon-2"]})
    with client.websocket_connect(audio_url(live, online.headers)) as ws:
        ws.send_bytes(tone_chunks(0.1)[0])
        wait_for(lambda: streams_sent(online, "b1"), 10, "the stream command to b1")
        assert not streams_sent(online, "b2")
        online.report(online.birth("b2", codecs=("adpcm", "mp3")))
        for chunk in tone_chunks(10.0):  # keep talking, at real time, until it joins
            ws.send_bytes(chunk)
            if streams_sent(online, "b2"):
                break
            time.sleep(CHUNK_SAMPLES / RATE)
        (joined,) = streams_sent(online, "b2")
        # The streams are made at creation (thon-2: MP3); b2 gets the one it decodes.
        assert live["codecs"] == ["mp3"]
        assert joined["a"]["codec"] == "mp3" and joined["a"]["bid"] == live["id"]
        ws.close()
    wait_ended(client, online.headers, live["id"])
    wait_for(lambda: stops_sent(online, "b1", live["id"]) and stops_sent(online, "b2", live["id"]),
             10, "stops to both")


def test_who_may_go_live_and_open_its_audio(client, online):
    for role in ("viewer", "technician"):
        r = client.post("/api/v1/live", json={"source": {"microphone": True},
                                              "targets": {"all": True}},
                        headers=login(client, role))
        assert r.status_code == 403, (role, r.text)
    operator = login(client, "operator")
    live = go_live(client, operator)
    assert client.get("/api/v1/live", headers=login(client, "viewer")).json()[0]["id"] == \
        live["id"]

    def close_code(url, **kwargs):
        with pytest.raises(WebSocketDisconnect) as closed, \
                client.websocket_connect(url, **kwargs) as ws:
            ws.receive_bytes()
        return closed.value.code

    assert close_code(live["websocket"]) == 4401
    assert close_code(live["websocket"] + "?token=forged") == 4401
    assert close_code(audio_url(live, login(client, "viewer"))) == 4403
    # Another operator may not speak into this operator's session.
    with client.app.state.session_factory() as db:
        create_user(db, username="operator2", password=PASSWORD, role="operator")
    assert close_code(audio_url(live, login(client, "operator2"))) == 4403
    assert close_code("/api/v1/live/live-nothere/audio?token=" + token_of(operator)) == 4404
    assert close_code(audio_url(live, operator) + "&rate=44100") == 4422
    # The pages' cookie alone is not enough: a page of another site could send it.
    client.cookies.set("loaxa_token", token_of(operator))
    try:
        assert close_code(live["websocket"]) == 4401
        assert close_code(live["websocket"] + "?csrf=guess") == 4401
    finally:
        client.cookies.delete("loaxa_token")
    # One audio source per session.
    with client.websocket_connect(audio_url(live, operator)) as ws:
        ws.send_bytes(tone_chunks(0.1)[0])
        # The first socket holds the audio once its login is checked (a database read).
        wait_for(lambda: client.get("/api/v1/live/" + live["id"], headers=operator)
                 .json()["state"] == "live", 10, "the first socket attached")
        assert close_code(audio_url(live, operator)) == 4409
        ws.close()
    assert wait_ended(client, operator, live["id"])["reason"] == "socket-closed"


def test_the_pages_cookie_with_its_csrf_token_opens_the_socket(client, online):
    live = go_live(client, online.headers, targets={"devices": ["a1"]})
    page = client.get("/login")  # any page sets the CSRF nonce cookie
    assert CSRF_COOKIE in client.cookies
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    client.cookies.set("loaxa_token", token_of(online.headers))
    try:
        with client.websocket_connect(live["websocket"] + "?csrf=" + csrf) as ws:
            ws.send_bytes(tone_chunks(0.1)[0])
            wait_for(lambda: streams_sent(online, "a1"), 10, "the stream command")
            ws.close()
    finally:
        client.cookies.delete("loaxa_token")


@pytest.mark.parametrize("body, code", [
    ({"source": {"url": "ftp://radio.example/vov1"}, "targets": {"all": True}},
     "bad-url-scheme"),
    ({"source": {"microphone": False}, "targets": {"all": True}}, "bad-source"),
    ({"source": {"microphone": True}, "targets": {"zones": ["nowhere"]}}, "unknown-zone"),
    ({"source": {"microphone": True}, "targets": {"devices": ["b2"]}}, "none-online"),
    ({"source": {"microphone": True}, "targets": {"all": True},
      "until": "2020-01-01T00:00:00Z"}, "until-in-past"),
    ({"source": {"microphone": True}, "targets": {"all": True},
      "until": "2099-01-01T00:00:00"}, "naive-time"),
])
def test_bad_requests_are_refused_with_a_reason(client, online, body, code):
    r = client.post("/api/v1/live", json=body, headers=online.headers)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code and r.json()["message_vi"]


# -- the timeline, sans-IO ---------------------------------------------------------------

def test_the_timeline_settles_on_the_fastest_chunk_then_keeps_its_anchor():
    timeline = PcmTimeline(RATE)
    timeline.admit(320, now_ms=10_100)  # the first chunk waited 80 ms (authentication)
    timeline.admit(320, now_ms=10_101)
    timeline.admit(320, now_ms=10_102)  # ... its followers queued behind it
    timeline.admit(320, now_ms=10_080)  # then one came straight through: 20 ms per chunk
    assert timeline.anchor_ms == 10_080 - 80
    first = timeline.play_at_ms(0, 0, 500)
    timeline.admit(320, now_ms=10_090)  # faster still, but a frame is already stamped
    assert timeline.play_at_ms(0, 0, 500) == first == 10_500


def test_a_slow_first_frame_moves_the_timeline_later_rather_than_arrive_late():
    timeline = PcmTimeline(RATE)
    timeline.admit(320, now_ms=10_020)
    # The encoder's first frame comes out 900 ms after sample 0 (a slow start): planned to
    # play at 10 500, it would be late; it plays 250 ms (the network allowance) from now.
    assert timeline.play_at_ms(0, 0, 500, now_ms=10_900, min_lead_ms=250) == 11_150
    assert timeline.late_start_ms == 650
    # Settled: the frames after it keep to the moved timeline, on time or not.
    assert timeline.play_at_ms(1600, 0, 500, now_ms=11_100, min_lead_ms=250) == 11_250


def test_the_timeline_fills_a_stall_with_silence_and_drops_a_burst_far_ahead():
    timeline = PcmTimeline(RATE, max_late_ms=300, max_early_ms=600)
    assert timeline.admit(320, now_ms=10_020) == (0, True)  # sample 0 captured at 10 000
    assert timeline.position_ms(320) == 10_020
    timeline.play_at_ms(0, 0, 0)  # settled
    assert timeline.admit(320, now_ms=10_040) == (0, True)
    # 500 ms of nothing, then the next chunk: the gap is filled so the timeline keeps time.
    silence, keep = timeline.admit(320, now_ms=10_560)
    assert keep and silence == 500 * RATE // 1000
    assert timeline.position_ms(timeline.samples) == pytest.approx(10_560)
    # A burst: chunks arriving all at once run ahead; beyond 600 ms they are dropped.
    kept = [timeline.admit(320, now_ms=10_580)[1] for _ in range(40)]
    assert kept.count(True) == 31 and not any(kept[31:])
    # MP3's priming samples are taken off, so both codecs play sample n at one moment.
    assert timeline.play_at_ms(1105 + 1600, 1105, 500) == timeline.play_at_ms(1600, 0, 500)


def test_the_slowest_link_sets_the_jitter_allowance(settings):
    from headend.live.planning import jitter_allowance_ms

    assert jitter_allowance_ms(settings, ["eth", "wifi"]) == settings.live_jitter_ms["wifi"]
    assert jitter_allowance_ms(settings, ["eth", "ppp"]) == settings.live_jitter_ms["ppp"]
    assert jitter_allowance_ms(settings, ["eth", None]) == settings.live_jitter_default_ms


def test_a_session_state_moves_only_by_its_table():
    from headend.live.session import IllegalTransition

    live = LiveSession(id="live-x", targets={}, receivers=[LiveTarget("a", "mp3", True, None)],
                       created_at=datetime.now(UTC), created_by=None, until_ms=None,
                       jitter_ms=0)
    live.move("end")
    with pytest.raises(IllegalTransition):
        live.move("go_live")
