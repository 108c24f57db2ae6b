"""Relays through the API: a radio station on 127.0.0.1 (tests/stream_server.py, an MP3 stream
made by ffmpeg and sent at real time), the head-end pulling it with real ffmpeg, on a real
database; commands and frames are kept by the recording publisher.

What an operator relies on: only http(s) URLs are taken; a URL is pulled once however many
sessions relay it, and no longer once the last one ends; a stall or silence plays the fallback,
tells whoever listens for alerts, shows in the session and in the play log with its reason,
and the relay resumes when the station is back; a relay ends at ``until``.
"""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from polling import wait_for
from stream_server import StreamServer
from test_live_api import frames_on, online, stops_sent, streams_sent, wait_ended  # noqa: F401

from headend.live.deadair import SILENT, STALLED, add_dead_air_hook
from protocol.frames import unpack_frame
from protocol.signing import HmacKey, key_from_hex

RATE = 16000


def station_pcm(seconds=4.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return (6000 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)


@pytest.fixture
def radio(tmp_path):
    with StreamServer(tmp_path / "radio", station_pcm()) as server:
        yield server


@pytest.fixture
def quick(app):
    """Dead air after 1 s, back after 0.3 s of sound: the same code, shorter waits."""
    settings = app.state.settings
    settings.relay_dead_air_s = 1.0
    settings.relay_resume_s = 0.3
    settings.relay_prebuffer_ms = 300
    return settings


@pytest.fixture
def alerts():
    events = []
    remove = add_dead_air_hook(events.append)
    yield events
    remove()


def relay(client, headers, url, targets=None, until=None):
    r = client.post("/api/v1/live", json={"source": {"url": url},
                                          "targets": targets or {"zones": ["thon-1"]},
                                          "until": until}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def detail(client, headers, live_id):
    r = client.get("/api/v1/live/" + live_id, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def fallback_rows(client, headers, live_id):
    r = client.get("/api/v1/playlog", params={"broadcast_id": live_id}, headers=headers)
    assert r.status_code == 200, r.text
    return [e for e in r.json() if e["outcome"] == "fallback"]


@pytest.mark.parametrize("url, code", [
    ("ftp://radio.example/vov1.mp3", "bad-url-scheme"),
    ("file:///etc/passwd", "bad-url-scheme"),
    ("rtmp://radio.example/live", "bad-url-scheme"),
    ("vov1.mp3", "bad-url-scheme"),
    ("http://", "bad-url"),
    ("http://radio.example:99999/x", "bad-url"),
    ("http://radio example/x", "bad-url"),
    ("", "bad-url"),
    (42, "bad-url"),
])
def test_relay_urls_are_checked(client, online, url, code):  # noqa: F811
    r = client.post("/api/v1/live", json={"source": {"url": url}, "targets": {"all": True}},
                    headers=online.headers)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code and r.json()["message_vi"]
    r = client.post("/api/v1/live", json={"source": {"url": "http://a.example/x", "mic": 1},
                                          "targets": {"all": True}}, headers=online.headers)
    assert r.status_code == 422 and r.json()["code"] == "bad-source"


def test_one_pull_for_two_relays_of_a_url_closed_with_the_last(client, online,  # noqa: F811
                                                                radio):
    headers = online.headers
    url = radio.url("/live.mp3")
    first = relay(client, headers, url, {"devices": ["a1", "a3"]})
    second = relay(client, headers, url, {"devices": ["b1"]})
    assert first["state"] == "starting" and first["websocket"] is None
    wait_for(lambda: all(streams_sent(online, d) for d in ("a1", "a3", "b1")), 15,
             "both relays' stream commands")
    assert [p for p in radio.requests if p.startswith("/live.mp3")] == ["/live.mp3"]
    shown = detail(client, headers, first["id"])
    assert shown["state"] == "live" and shown["dead_air"] is None
    assert shown["source"] == {"url": url, "state": "playing", "error": None, "listeners": 2}
    sent = {d: streams_sent(online, d)[0]["a"] for d in ("a1", "a3", "b1")}
    assert {a["codec"] for a in sent.values()} == {"mp3", "adpcm"}
    assert len({a["bid"] for a in sent.values()}) == 2
    wait_for(lambda: len(frames_on(online, sent["b1"]["sid"])) >= 5, 10, "frames of the second")

    r = client.delete("/api/v1/live/" + first["id"], headers=headers)
    assert r.status_code == 200 and r.json()["reason"] == "stopped"
    assert stops_sent(online, "a1", first["id"]) and not stops_sent(online, "b1", first["id"])
    hub = client.app.state.live.hub
    wait_for(lambda: hub.pulls[url].summary()["listeners"] == 1, 5, "the first to leave")
    count = len(frames_on(online, sent["b1"]["sid"]))
    wait_for(lambda: len(frames_on(online, sent["b1"]["sid"])) > count + 3, 10,
             "the second relay going on")
    r = client.delete("/api/v1/live/" + second["id"], headers=headers)
    assert r.status_code == 200
    wait_for(lambda: url not in hub.pulls, 10, "the pull to close")
    assert detail(client, headers, second["id"])["source"]["state"] == "closed"


def test_an_icecast_aac_stream_is_relayed(client, online, tmp_path):  # noqa: F811
    with StreamServer(tmp_path / "aac", station_pcm(), codec="aac") as aac:
        live = relay(client, online.headers, aac.url("/live.aac"), {"devices": ["a1"]})
        wait_for(lambda: streams_sent(online, "a1"), 15, "the stream command")
        sid = streams_sent(online, "a1")[0]["a"]["sid"]
        wait_for(lambda: len(frames_on(online, sid)) >= 10, 10, "frames of the AAC relay")
        shown = detail(client, online.headers, live["id"])
        assert shown["source"]["state"] == "playing" and shown["dead_air"] is None
        assert shown["fallbacks"] == 0  # on air with the station's audio, not the fallback
        client.delete("/api/v1/live/" + live["id"], headers=online.headers)


def test_stall_and_silence_play_the_fallback_alert_log_and_resume(client, online,  # noqa: F811
                                                                   radio, quick, alerts):
    headers = online.headers
    filler = online.upload(seconds=2.0, name="nhac-cho.wav")["id"]
    quick.relay_fallback_media = filler
    live = relay(client, headers, radio.url("/live.mp3"))
    wait_for(lambda: all(streams_sent(online, d) for d in ("a1", "a2", "a3")), 15,
             "the relay's stream commands")
    village = {"a1", "a2", "a3"}

    for n, (mode, reason) in enumerate((("stalled", STALLED), ("silent", SILENT)), 1):
        radio.mode = mode
        event = wait_for(lambda n=n: len(alerts) >= 2 * n - 1 and alerts[2 * n - 2], 15,
                         "dead air (%s)" % mode)
        assert event.dead and event.reason == reason and event.live_id == live["id"]
        assert event.fallback == filler and set(event.devices) == village
        shown = detail(client, headers, live["id"])
        assert shown["dead_air"]["reason"] == reason and shown["dead_air"]["fallback"] == filler
        assert shown["fallbacks"] == n
        # The receivers still play the one stream: the fallback goes out in it.
        assert {d["state"] for d in shown["devices"]} == {"sent"}
        rows = wait_for(lambda r=reason: [e for e in fallback_rows(client, headers, live["id"])
                                          if e["reason"] == r], 5, "the play log's rows")
        assert {e["device_id"] for e in rows} == village
        assert all(e["item"] == filler and e["ended_at"] is None for e in rows)

        radio.mode = "sound"
        back = wait_for(lambda n=n: len(alerts) >= 2 * n and alerts[2 * n - 1], 15,
                        "the relay back")
        assert not back.dead and back.reason == reason
        assert detail(client, headers, live["id"])["dead_air"] is None
        rows = wait_for(lambda r=reason: [e for e in fallback_rows(client, headers, live["id"])
                                          if e["reason"] == r and e["ended_at"]], 5,
                        "the rows closed")
        assert len(rows) == 3 and all(e["played_ms"] > 0 for e in rows)
    client.delete("/api/v1/live/" + live["id"], headers=headers)


def test_a_source_that_never_answers_plays_the_notice_and_says_why(client, online,  # noqa: F811
                                                                     quick, alerts):
    live = relay(client, online.headers, "http://127.0.0.1:9/nothing.mp3", {"devices": ["a1"]})
    event = wait_for(lambda: alerts and alerts[0], 20, "dead air from the start")
    assert event.reason == STALLED and event.fallback in ("notice", "chime")
    assert event.detail  # what was known then ("no audio for 1 s", or ffmpeg's words)
    # It goes on air with the fallback: the receivers hear the notice, not silence.
    wait_for(lambda: streams_sent(online, "a1"), 10, "the stream command")
    shown = wait_for(lambda: (lambda d: d if d["source"]["error"] else None)(
        detail(client, online.headers, live["id"])), 15, "the source's error")
    assert shown["state"] == "live" and shown["dead_air"]["reason"] == STALLED
    assert shown["source"]["state"] == "reconnecting"
    assert "refused" in shown["source"]["error"].lower()
    client.delete("/api/v1/live/" + live["id"], headers=online.headers)


def test_a_relay_ends_at_until(client, online, radio, quick):  # noqa: F811
    until = datetime.now(UTC) + timedelta(seconds=4)
    live = relay(client, online.headers, radio.url("/live.mp3"), {"devices": ["a1"]},
                 until=until.isoformat())
    wait_for(lambda: streams_sent(online, "a1"), 15, "the stream command")
    args = streams_sent(online, "a1")[0]["a"]
    assert args["until"] == int(until.timestamp() * 1000)  # the receiver stops on its own too
    ended = wait_ended(client, online.headers, live["id"], timeout=15)
    assert ended["reason"] == "until"
    assert datetime.fromisoformat(ended["ended_at"]) - until < timedelta(seconds=1)
    assert stops_sent(online, "a1", live["id"])
    wait_for(lambda: radio.url("/live.mp3") not in client.app.state.live.hub.pulls, 10,
             "the pull closed")
    # Nothing goes out that would play after the window's end.
    hkey = HmacKey(key_from_hex(args["key"]))
    frames = [unpack_frame(hkey, f) for f in frames_on(online, args["sid"])]
    assert len(frames) > 10
    assert max(f.play_at for f in frames) < args["until"]
