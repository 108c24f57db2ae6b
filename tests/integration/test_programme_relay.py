"""Issue 10's relay segment end to end: an approved programme of a chime and a relay (tiếp
sóng) of a local radio station (an Icecast-like MP3 stream made by ffmpeg,
tests/stream_server.py) for 10 s plays on its village's simulated receivers (real firmware,
real Mosquitto, the head-end as its own process: its scheduler starts the relay on the app's
loop). A user would notice: the chime, then the station, on every pole of the village and on
no other; the relay stops at its window's end; the programme's page shows both played."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from stream_server import StreamServer
from test_live_microphone import best_match, speech_with_clicks
from test_live_relay_fleet import MATCH, UNTIL_MARGIN_S, heard, station
from test_programmes_acceptance import _login, approved, programme_station

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

RELAY_S = 10
# The relay is heard this long after its window opens at most: ffmpeg connects, 1 s of
# prebuffer, the stream command and the play delay.
START_SLACK_S = 4.0


async def test_a_programme_plays_its_chime_then_relays_the_station_until_its_end(
        tmp_path, mosquitto_broker):
    source = speech_with_clicks(seconds=6.0, seed=5)
    radio = StreamServer(tmp_path / "radio", source)
    st = station(tmp_path, mosquitto_broker, {"thon-1": 2, "thon-2": 1}, default_dead_air=True,
                 programme_check_s=1, quiet_hours_end="22:00")
    programme_station(tmp_path, mosquitto_broker, st)
    with radio:
        async with st:
            village, other = st.zones["thon-1"], st.zones["thon-2"]
            editor = await _login(st, "bientap")
            leader = await _login(st, "lanhdao")
            start = (datetime.now(UTC) + timedelta(seconds=25)).replace(microsecond=0)
            pid = await approved(st, editor, leader, {
                "title": "Tiếp sóng Đài tỉnh", "targets": {"zones": ["thon-1"]},
                "segments": [{"chime": "start"},
                             {"relay": {"url": radio.url("/live.mp3"), "seconds": RELAY_S}}],
                "start": start.isoformat()})
            window = {"from": (start - timedelta(minutes=1)).isoformat(),
                      "to": (start + timedelta(minutes=1)).isoformat()}

            async def relayed():
                [occurrence] = await st.get("/api/v1/programmes/%s/occurrences" % pid,
                                            **window)
                relay = occurrence["relay"]
                return occurrence if relay is not None and relay["state"] == "ended" and all(
                    d["state"] == "played" for d in relay["devices"]) else None

            wait_s = (start - datetime.now(UTC)).total_seconds() + RELAY_S + 30
            occurrence = await st.until(relayed, wait_s, "the relay played and ended")
            bid, live_id = occurrence["broadcast_id"], occurrence["live_id"]
            assert occurrence["relay"]["reason"] == "until"
            assert sorted(d["id"] for d in occurrence["relay"]["devices"]) == sorted(village)
            await st.until(lambda: _played(st, pid, window), 20, "the chime shown played")
            live = await st.get("/api/v1/live/" + live_id)
            assert live["created_by"] == "programme:" + pid
            until = datetime.fromisoformat(live["until"]).timestamp()
            for device in village:
                (chime,) = st.played(device, bid)
                relay, pcm = heard(st, device, live_id)
                # The chime at the programme's time, the relay after it, to its window's end.
                assert abs(chime.started_true - start.timestamp()) < 1.0
                assert chime.ended_true <= relay.started_true, device
                assert relay.started_true - chime.ended_true < START_SLACK_S, device
                assert relay.ended_true <= until + UNTIL_MARGIN_S, (device, relay.ended_true
                                                                    - until)
                assert relay.ended_true - relay.started_true > RELAY_S - START_SLACK_S
                score, _lag = best_match(pcm[16000:4 * 16000], np.tile(source, 3))
                assert score > MATCH, "%s does not play the station: %.2f" % (device, score)
                print("%s: relay heard %.2f s after the chime, for %.2f s, ended %.2f s "
                      "before its window's end" % (
                          device, relay.started_true - chime.ended_true,
                          relay.ended_true - relay.started_true, until - relay.ended_true))
            assert not any(st.fleet[d].sink.playbacks for d in other)
            assert not st.fleet.crashed()


async def _played(st, pid, window):
    [occurrence] = await st.get("/api/v1/programmes/%s/occurrences" % pid, **window)
    return all(d["state"] == "played" for d in occurrence["devices"]) or None


async def test_a_relay_on_the_air_ends_when_its_programme_is_deleted(tmp_path, mosquitto_broker):
    source = speech_with_clicks(seconds=6.0, seed=6)
    radio = StreamServer(tmp_path / "radio", source)
    st = station(tmp_path, mosquitto_broker, {"thon-1": 2}, default_dead_air=True,
                 programme_check_s=1, quiet_hours_end="22:00")
    programme_station(tmp_path, mosquitto_broker, st)
    with radio:
        async with st:
            village = st.zones["thon-1"]
            editor = await _login(st, "bientap")
            leader = await _login(st, "lanhdao")
            start = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
            pid = await approved(st, editor, leader, {
                "title": "Tiếp sóng VOV", "targets": {"zones": ["thon-1"]},
                "segments": [{"relay": {"url": radio.url("/live.mp3"), "minutes": 5}}],
                "start": start.isoformat()})
            window = {"from": (start - timedelta(minutes=1)).isoformat(),
                      "to": (start + timedelta(minutes=1)).isoformat()}

            async def on_air():
                [occurrence] = await st.get("/api/v1/programmes/%s/occurrences" % pid,
                                            **window)
                live_id = occurrence["live_id"]
                return live_id if live_id and all(
                    st.fleet[d].sink.current is not None for d in village) else None

            live_id = await st.until(on_air, 60, "the relay on the air")
            r = await st.http.delete("/api/v1/programmes/" + pid, headers=editor)
            assert r.status_code == 204, r.text
            deleted = datetime.now(UTC).timestamp()

            async def ended():
                live = await st.get("/api/v1/live/" + live_id)
                return live if live["state"] == "ended" else None

            live = await st.until(ended, 15, "the relay ended")
            assert live["reason"] == "programme-changed"
            for device in village:
                await st.until(lambda d=device: st.fleet[d].sink.current is None, 10,
                               "the relay stopped on " + device)
                relay, _pcm = heard(st, device, live_id)
                print("%s: relay stopped %.2f s after the programme was deleted"
                      % (device, relay.ended_true - deleted))
                assert relay.ended_true - deleted < 10, device
            assert not st.fleet.crashed()
