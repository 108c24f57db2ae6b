"""Relay (tiếp sóng) end to end: a radio station on 127.0.0.1 (an Icecast-like MP3 stream sent
at real time, and an HLS playlist of AAC segments, both made by ffmpeg), the head-end as its own
process pulling it with real ffmpeg, real Mosquitto, simulated receivers running the real
firmware in two villages.

A user would notice: the chosen village hears the station (each receiver's decoded output
matches the source by cross-correlation), its poles together, the other village nothing; when
the station stalls, falls silent or goes away, the fallback (the spoken notice) is heard within
the dead-air time and the operator sees why; when it is back, so is the relay; at ``until``
every pole stops. The play log has each fallback with its reason.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from stream_server import StreamServer, make_hls
from test_headend_acceptance import SITE, Station
from test_live_microphone import best_match, on_true_time, speech_with_clicks

from audio.decode import decode_to_pcm
from headend.live.deadair import notice_pcm
from simulator.fleet import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

RATE = 16000
DEAD_AIR_S = 2.0
MATCH = 0.6
IN_STEP_MS = 30.0
UNTIL_MARGIN_S = 0.5  # a pole stops at the relay's end by true time, within


def heard(st, device, bid):
    (played,) = st.played(device, bid)
    pcm = on_true_time(played, decode_to_pcm(played.codec, bytes(played.data), RATE))
    return played, pcm


def window(played, pcm, start_true, seconds):
    """What the pole played from true time ``start_true`` for ``seconds``."""
    at = int(round((start_true - played.started_true) * RATE))
    return pcm[max(0, at):max(0, at) + int(seconds * RATE)]


def station(tmp_path, broker, zones, **settings):
    st = Station(tmp_path, broker, zones)
    st.fleet = Fleet(st.fleet.specs, site=SITE, broker=(broker.host, broker.port),
                     workdir=str(tmp_path / "boards"), keep_bytes=True)
    st.server.env.update({"LOAXA_RELAY_DEAD_AIR_S": str(DEAD_AIR_S),
                          "LOAXA_RELAY_RESUME_S": "0.5"})
    st.server.env.update({"LOAXA_" + k.upper(): str(v) for k, v in settings.items()})
    return st


async def relay(st, url, targets, until_s):
    until = datetime.now(UTC) + timedelta(seconds=until_s)
    live = await st.post("/api/v1/live", {"source": {"url": url}, "targets": targets,
                                          "until": until.isoformat()})
    assert live["websocket"] is None and live["source"]["url"] == url
    return live, until.timestamp()


async def dead_air(st, live_id):
    return (await st.get("/api/v1/live/" + live_id))["dead_air"]


async def test_mp3_stream_relayed_in_step_with_fallbacks_for_stall_silence_and_loss(
        tmp_path, mosquitto_broker):
    source = speech_with_clicks(seconds=6.0)
    radio = StreamServer(tmp_path / "radio", source)
    st = station(tmp_path, mosquitto_broker, {"thon-1": 2, "thon-2": 1})
    notice, _name = notice_pcm()
    notice = np.frombuffer(notice, dtype="<i2")
    with radio:
        async with st:
            village, others = st.zones["thon-1"], st.zones["thon-2"]
            assert {st.fleet[d].spec.codec for d in village} == {"mp3", "adpcm"}
            live, until = await relay(st, radio.url("/live.mp3"), {"zones": ["thon-1"]}, 80)
            await st.until(lambda: all(st.played(d, live["id"]) for d in village), 20,
                           "the village to play the relay")
            on_air_at = time.time()
            await asyncio.sleep(5)
            assert await dead_air(st, live["id"]) is None

            episodes = []  # (what, when the fallback was heard, when the relay was back)
            for what in ("stalled", "silent", "killed"):
                broke = time.time()
                if what == "killed":
                    radio.kill()
                else:
                    radio.mode = what
                reason = "source-silent" if what == "silent" else "source-stalled"
                state = await st.until(lambda r=reason: _dead(st, live["id"], r),
                                       DEAD_AIR_S + 6, "dead air (%s) to be seen" % what)
                since = datetime.fromisoformat(state["since"]).timestamp()
                # Within the dead-air time of the break (silence: of the silence reaching the
                # relay's buffer, a second later), heard by the play delay after that.
                assert since - broke < DEAD_AIR_S + 3, "%s: fallback %.1f s after" % (
                    what, since - broke)
                await asyncio.sleep(4)
                if what == "killed":
                    radio.start()
                else:
                    radio.mode = "sound"
                restored = time.time()
                await st.until(lambda: _on_air(st, live["id"]), 15, "the relay back after "
                               + what)
                episodes.append((what, since, time.time()))
                print("%s: fallback heard %.1f s after the break, relay back %.1f s after the "
                      "station" % (what, since - broke, time.time() - restored))
                await asyncio.sleep(4)

            detail = await st.get("/api/v1/live/" + live["id"])
            assert detail["state"] == "live" and detail["fallbacks"] == 3
            # The relay ends at ``until`` on every pole of the village, by true time.
            await st.until(lambda: all(st.played(d, live["id"])[0].finished for d in village),
                           until - time.time() + 10, "the relay to end at until")
            for device in village:
                played = st.played(device, live["id"])[0]
                assert played.ended_true <= until + UNTIL_MARGIN_S, (device, played.ended_true
                                                                     - until)
            # The head-end's own end (its watch looks every 0.2 s) follows the receivers'.
            detail = await st.until(lambda: _ended(st, live["id"]), 5, "the session's end")
            assert detail["reason"] == "until"

            looped = np.tile(source, 4)
            first = {}
            for device in village:
                played, pcm = heard(st, device, live["id"])
                # On air: the station, as it was sent.
                score, _lag = best_match(window(played, pcm, on_air_at + 1, 3.0), looped)
                assert score > MATCH, "%s does not play the station: %.2f" % (device, score)
                for what, since, back in episodes:
                    # Dead air: the notice, from when it was heard.
                    part = window(played, pcm, since + 0.3, 2.0)
                    score, _lag = best_match(part, np.tile(notice, 2))
                    assert score > MATCH, "%s: no fallback after %s: %.2f" % (device, what,
                                                                               score)
                    # Back: the station again (heard by the play delay after it was seen).
                    part = window(played, pcm, back + 1.5, 2.0)
                    score, _lag = best_match(part, looped)
                    assert score > MATCH, "%s: no relay after %s: %.2f" % (device, what, score)
                first[device] = (played, pcm)
            # In step: the same moment of the station on both poles (MP3 and ADPCM).
            (pa, a), (pb, b) = first.values()
            template = window(pa, a, on_air_at + 1, 2.0)
            _score, lag = best_match(template, window(pb, b, on_air_at, 4.0))
            skew_ms = 1000 * abs(lag / RATE - 1.0)
            assert skew_ms < IN_STEP_MS, "poles %.1f ms apart" % skew_ms
            print("relay skew %.1f ms" % skew_ms)
            assert not any(st.fleet[d].sink.playbacks for d in others)

            log = await st.get("/api/v1/playlog", broadcast_id=live["id"])
            fallbacks = [e for e in log if e["outcome"] == "fallback"]
            assert sorted((e["device_id"], e["reason"]) for e in fallbacks) == sorted(
                (d, r) for d in village for r in ("source-stalled", "source-silent",
                                                  "source-stalled"))
            assert all(e["ended_at"] and e["item"] in ("notice", "chime") for e in fallbacks)
            assert not st.fleet.crashed()


async def _dead(st, live_id, reason):
    state = await dead_air(st, live_id)
    return state if state is not None and state["reason"] == reason else None


async def _ended(st, live_id):
    detail = await st.get("/api/v1/live/" + live_id)
    return detail if detail["state"] == "ended" else None


async def _on_air(st, live_id):
    return await dead_air(st, live_id) is None


async def test_hls_playlist_relayed_until_its_end(tmp_path, mosquitto_broker):
    source = speech_with_clicks(seconds=20.0, seed=3)
    radio = StreamServer(tmp_path / "radio", source[:RATE])
    make_hls(source, tmp_path / "radio" / "hls")
    st = station(tmp_path, mosquitto_broker, {"thon-1": 2})
    with radio:
        async with st:
            village = st.zones["thon-1"]
            live, until = await relay(st, radio.url("/hls/radio.m3u8"), {"zones": ["thon-1"]},
                                      14)
            await st.until(lambda: all(st.played(d, live["id"]) and
                                       st.played(d, live["id"])[0].finished for d in village),
                           30, "the HLS relay to play and end")
            detail = await st.until(lambda: _ended(st, live["id"]), 5, "the session's end")
            assert (detail["reason"], detail["fallbacks"]) == ("until", 0)
            for device in village:
                played, pcm = heard(st, device, live["id"])
                assert played.ended_true <= until + UNTIL_MARGIN_S
                score, lag = best_match(pcm[RATE:5 * RATE], source)
                assert score > MATCH, "%s does not play the HLS station: %.2f" % (device, score)
            assert any(p.endswith(".ts") for p in radio.requests)
            assert not st.fleet.crashed()
