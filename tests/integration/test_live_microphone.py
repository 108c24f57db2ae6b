"""Live from a microphone, end to end: the head-end as its own process, real Mosquitto,
simulated receivers running the real firmware (clocks off by up to ±1.5 s, drifting) in two
villages, and a WebSocket client that speaks a recording with clicks in 20 ms PCM chunks, at
real time, as the /live page does.

A user would notice: the chosen village hears the recording (each receiver's decoded output
matches the source by cross-correlation), MP3 and ADPCM poles together; the other village
hears nothing; "Dừng" silences every pole within 1 s; closing the tab does within 5 s.
"""

import asyncio
import time

import numpy as np
import pytest
import websockets
from test_headend_acceptance import SITE, Station

from audio.decode import decode_to_pcm
from simulator.fleet import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

RATE = 16000
CHUNK = 320  # samples: 20 ms
SPEECH_S = 4.0
MATCH = 0.6           # normalised cross-correlation peak of a receiver that played the source
IN_STEP_MS = 30.0     # the MP3 and the ADPCM pole of the village hear the same sample within
MOUTH_TO_EAR_S = 1.5  # the play delay (570 ms here) and a slow encoder start on a busy machine
STOP_WITHIN_S = 1.0
CLOSED_WITHIN_S = 5.0


def speech_with_clicks(seconds=SPEECH_S, seed=7):
    """A quiet tone with clicks at irregular times: one clear cross-correlation peak."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pcm = 1500 * np.sin(2 * np.pi * 300 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    at = 0.2
    while at < seconds - 0.2:
        start = int(at * RATE)
        pcm[start:start + 40] += 20000 * np.hanning(40)
        at += rng.uniform(0.15, 0.45)
    return np.clip(pcm, -32000, 32000).astype("<i2")


def best_match(source, heard):
    """(normalised peak, lag in samples of the source within ``heard``; negative when the
    recording starts after the source's first sample)."""
    a = source.astype(np.float64)
    b = heard.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    index = int(np.argmax(np.abs(corr)))
    lag = index if index < len(b) else index - n
    overlap_a = a[max(0, -lag):]
    overlap_b = b[max(0, lag):]
    size = min(len(overlap_a), len(overlap_b))
    overlap_a, overlap_b = overlap_a[:size], overlap_b[:size]
    denom = np.sqrt(np.sum(overlap_a ** 2) * np.sum(overlap_b ** 2)) or 1.0
    return float(np.sum(overlap_a * overlap_b) / denom), lag


def on_true_time(played, pcm):
    """What a listener heard from the first sample on, by true time: the sink's underruns
    (a frame that never came, or came too late) put back as silence where they were heard.
    The samples the sink was told to skip (a late start entered where it was due) are not."""
    pcm = pcm[played.skip_samples:]
    out = []
    taken = 0
    for at, gap in played.gaps:
        upto = int(round((at - played.started_true) * RATE)) - sum(len(p) for p in out)
        out.append(pcm[taken:taken + max(0, upto)])
        taken += max(0, upto)
        out.append(np.zeros(int(round(gap * RATE)), dtype=pcm.dtype))
    out.append(pcm[taken:])
    return np.concatenate(out)


class Microphone:
    """The page's side of the WebSocket: PCM chunks at real time."""

    def __init__(self, url):
        self.url = url
        self.ws = None
        self.first_sent = None

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, open_timeout=5, close_timeout=2)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    async def speak(self, pcm):
        data = pcm.tobytes()
        start = time.monotonic()
        for k, i in enumerate(range(0, len(data), 2 * CHUNK)):
            await asyncio.sleep(max(0.0, start + (k + 1) * CHUNK / RATE - time.monotonic()))
            if self.first_sent is None:
                self.first_sent = time.time() - CHUNK / RATE  # sample 0 was captured then
            await self.ws.send(data[i:i + 2 * CHUNK])


async def open_live(st, targets):
    live = await st.post("/api/v1/live", {"source": {"microphone": True}, "targets": targets,
                                          "until": None})
    token = st.headers["Authorization"].split()[1]
    url = st.server.url.replace("http://", "ws://") + live["websocket"] + "?token=" + token
    return live, url


async def test_microphone_to_one_village_in_step_stop_and_closed_tab(tmp_path, mosquitto_broker):
    st = Station(tmp_path, mosquitto_broker, {"thon-1": 2, "thon-2": 2})
    # The same boards, keeping what they played, so it can be decoded and compared.
    st.fleet = Fleet(st.fleet.specs, site=SITE, broker=(mosquitto_broker.host,
                                                        mosquitto_broker.port),
                     workdir=str(tmp_path / "boards"), keep_bytes=True)
    async with st:
        village, others = st.zones["thon-1"], st.zones["thon-2"]
        assert {st.fleet[d].spec.codec for d in village} == {"mp3", "adpcm"}
        source = speech_with_clicks()

        live, url = await open_live(st, {"zones": ["thon-1"]})
        async with Microphone(url) as mic:
            await mic.speak(source)
            # Keep talking (silence) until the recording has been heard, then "Dừng".
            await asyncio.wait_for(asyncio.gather(
                mic.speak(np.zeros(int(1.2 * RATE), dtype="<i2"))), 5)
            stopped_at = time.time()
            r = await st.http.delete("/api/v1/live/" + live["id"], headers=st.headers)
            assert r.status_code == 200, r.text
            await st.until(lambda: all(st.played(d, live["id"]) and
                                       st.played(d, live["id"])[0].finished for d in village),
                           5, "every pole of the village to stop")

        heard_at = {}
        for device in village:
            (played,) = st.played(device, live["id"])
            assert played.ended_true - stopped_at < STOP_WITHIN_S, device
            pcm = on_true_time(played, decode_to_pcm(played.codec, bytes(played.data), RATE))
            score, lag = best_match(source, pcm)
            assert score > MATCH, "%s (%s) does not match the source: %.2f" % (
                device, played.codec, score)
            # When this pole played source sample 0, by true time.
            heard_at[device] = played.started_true + lag / RATE
        mouth_to_ear = {d: t - mic.first_sent for d, t in heard_at.items()}
        assert all(0 < m < MOUTH_TO_EAR_S for m in mouth_to_ear.values()), mouth_to_ear
        skew_ms = 1000 * (max(heard_at.values()) - min(heard_at.values()))
        assert skew_ms < IN_STEP_MS, "poles of one village %.1f ms apart" % skew_ms
        print("mouth-to-ear %s ms, skew %.1f ms" % (
            {d: round(1000 * m) for d, m in mouth_to_ear.items()}, skew_ms))
        assert not any(st.played(d, live["id"]) for d in others)
        assert not any(st.fleet[d].sink.playbacks for d in others)
        detail = await st.get("/api/v1/live/" + live["id"])
        assert (detail["state"], detail["reason"]) == ("ended", "stopped")
        await st.until(lambda: _states(st, live["id"], village, "cancelled"), 10,
                       "the head-end to show each pole's stream cancelled")

        # Closing the tab: the socket goes away without a word; every pole stops within 5 s.
        live, url = await open_live(st, {"zones": ["thon-1"]})
        mic = Microphone(url)
        await mic.__aenter__()
        await mic.speak(source[:RATE])
        await st.until(lambda: all(st.played(d, live["id"]) for d in village), 5,
                       "the second session to play")
        closed_at = time.time()
        mic.ws.transport.abort()  # no close frame: like a tab killed or a network gone
        await st.until(lambda: all(st.played(d, live["id"])[0].finished for d in village),
                       CLOSED_WITHIN_S + 1, "every pole to stop after the socket closed")
        for device in village:
            assert st.played(device, live["id"])[0].ended_true - closed_at < CLOSED_WITHIN_S
        detail = await st.get("/api/v1/live/" + live["id"])
        assert (detail["state"], detail["reason"]) == ("ended", "socket-closed")
        assert not any(st.fleet[d].sink.playbacks for d in others)
        assert not st.fleet.crashed()


async def _states(st, live_id, devices, state):
    detail = await st.get("/api/v1/live/" + live_id)
    return all(d["state"] == state for d in detail["devices"] if d["id"] in devices)


async def test_live_preempts_the_villages_programme_and_an_emergency_preempts_live(
        tmp_path, mosquitto_broker):
    """Live interrupts a normal programme on its targets only (reported preempted there); an
    emergency to one pole interrupts live on that pole only, where live ends (the policy:
    it does not resume) while the village's other pole stays live."""
    async with Station(tmp_path, mosquitto_broker, {"thon-1": 2, "thon-2": 2}) as st:
        village, others = st.zones["thon-1"], st.zones["thon-2"]
        programme = await st.upload("chuong-trinh.wav", 30.0, 330)
        alarm = await st.upload("bao-dong.wav", 2.0, 880)
        bid = (await st.post("/api/v1/broadcasts", {
            "media_id": programme, "targets": {"all": True}, "start_at": None}))["id"]
        await st.until(lambda: all(st.fleet[d].sink.current is not None
                                   for d in village + others), 15, "the programme everywhere")

        live, url = await open_live(st, {"zones": ["thon-1"]})
        async with Microphone(url) as mic:
            talking = asyncio.create_task(mic.speak(np.tile(speech_with_clicks(), 3)))
            try:
                await st.until(lambda: all(st.played(d, live["id"]) for d in village), 10,
                               "the village to go live")
                for device in village:
                    (cut,) = st.played(device, bid)
                    assert cut.how == "stopped", device
                for device in others:  # the other village keeps its programme
                    assert st.fleet[device].sink.current.bid == bid, device
                await st.until(lambda: _broadcast_states(st, bid, village, "preempted"), 10,
                               "the programme shown preempted in the village")

                hit, spared = village
                alert = (await st.post("/api/v1/emergency", {
                    "media_id": alarm, "targets": {"devices": [hit]}}))["id"]
                await st.until(lambda: st.played(hit, alert), 10, "the emergency on its pole")
                assert st.played(hit, live["id"])[0].finished
                assert st.fleet[spared].sink.current.bid == live["id"]
                await st.until(lambda: _devices(st, live["id"], {hit: "preempted",
                                                                 spared: "playing"}), 10,
                               "the live session to show the preempted pole")
                # When the alarm is over the pole does not go back to live (it ended there).
                await st.until(lambda: st.played(hit, alert)[0].finished, 10, "the alarm's end")
                await asyncio.sleep(0.5)
                assert st.fleet[spared].sink.current.bid == live["id"]
                assert len(st.played(hit, live["id"])) == 1
            finally:
                talking.cancel()
            r = await st.http.delete("/api/v1/live/" + live["id"], headers=st.headers)
            assert r.status_code == 200, r.text
        assert not st.fleet.crashed()


async def _broadcast_states(st, bid, devices, state):
    states = await st.states(bid)
    return all(states.get(d) == state for d in devices)


async def _devices(st, live_id, expected):
    detail = await st.get("/api/v1/live/" + live_id)
    states = {d["id"]: d["state"] for d in detail["devices"]}
    return all(states.get(d) == s for d, s in expected.items())
