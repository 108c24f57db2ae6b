"""Live frames through a real broker play without gaps, on the stream's timeline.

The operator relays a recording as a live source (audio/live.py: real ffmpeg, paced frames,
one stream per codec) to a village; one frame of each stream never reaches the broker. Every
receiver (CPython, and MicroPython processes computing like an ESP32) must be heard from the
first frame's play time, with no gap between frames except the lost one, which is silence of its
own length (the frames after it are heard at their own times, not early), and end on time.
"""

import asyncio
import os

import pytest

from simulator.fleet import generate_specs
from simulator.scenario import FleetScenario

pytestmark = pytest.mark.integration

PLAY_DELAY_MS = 500     # frames are stamped capture time + this (the head-end's jitter allowance)
LOST_SEQ = 12           # the frame of each stream that never arrives
START_TOLERANCE_MS = 50.0
GAP_TOLERANCE_MS = 15.0


async def test_live_frames_are_heard_back_to_back_and_a_lost_one_is_silence(mosquitto_broker,
                                                                           runtime, fleet_size):
    specs = generate_specs(fleet_size(4), zones=1, offset_ms=2000, drift_ppm=100, seed=21)
    async with FleetScenario((mosquitto_broker.host, mosquitto_broker.port), specs,
                             items=(("nguon", 4.0),), runtime=runtime) as sc:
        source = sc.items["nguon"].renditions["mp3"].path
        streams = {}
        for n, codec in enumerate(("mp3", "adpcm")):
            ids = [s.id for s in specs if s.codec == codec]
            key = os.urandom(32)
            sid = "live-" + codec
            bid = sc.operator.stream(ids, sid, 7 + n, key.hex(), codec, 16000)
            streams[codec] = (ids, sid, 7 + n, key, bid)
        await sc.operator.until(lambda: all(
            sc.operator.events_of(d, "started", bid=bid)
            for ids, _, _, _, bid in streams.values() for d in ids), 10)
        await asyncio.sleep(0.3)  # the subscriptions are on the broker
        reports = await asyncio.gather(*(
            sc.relay_live(source, codec, sid, sno, key, PLAY_DELAY_MS, lose=(LOST_SEQ,))
            for codec, (_, sid, sno, key, _) in streams.items()))
        await sc.operator.until(lambda: all(
            sc.operator.events_of(d, "ended", bid=bid)
            for ids, _, _, _, bid in streams.values() for d in ids), 15)

        problems = []
        for (ids, _, _, _, bid), report in zip(streams.values(), reports, strict=True):
            lost_ms = report["lost_ms"][LOST_SEQ]
            for device in ids:
                played, = sc.fleet[device].sink.playbacks_of(bid=bid)
                start_error = played.started_true * 1000 - report["first"]
                gaps = [g * 1000 for _, g in played.gaps]
                end_error = played.ended_true * 1000 - report["end"]
                if abs(start_error) > START_TOLERANCE_MS:
                    problems.append("%s started %+.1f ms off" % (device, start_error))
                # Exactly one silence, the lost frame's, and the frames after it on time.
                if len(gaps) != 1 or abs(gaps[0] - lost_ms) > GAP_TOLERANCE_MS:
                    problems.append("%s gaps %s ms, lost frame %.1f ms"
                                    % (device, [round(g, 1) for g in gaps], lost_ms))
                if abs(end_error) > START_TOLERANCE_MS:
                    problems.append("%s ended %+.1f ms off" % (device, end_error))
                ended, = sc.operator.events_of(device, "ended", bid=bid)
                assert ended.get("reason") == "finished"
        assert not problems, problems
        assert not sc.fleet.crashed()
