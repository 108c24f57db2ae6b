"""Every rendition of an item starts with the same source sample: decoded the way each
receiver decodes it, the MP3 and the ADPCM rendition of one source line up to the sample.

The source is a chirp (no period, so a cross-correlation has one peak) that starts at full
level on its first sample. Decoding: ffmpeg's MP3 decoder, which like the VS1053 plays every
sample a frame holds (no gapless trimming: the renditions carry no LAME tag), and the
firmware's own ADPCM decoder. The normalised audio (the chain's output before any encoder) is
the reference a lead-in is measured against.
"""

import pytest
from audio_samples import chirp_wav

from audio import mp3
from audio.decode import decode_to_pcm, lag_samples
from audio.renditions import lead_in, make_renditions
from audio.settings import AudioSettings
from audio.tones import read_wav_mono


def decoded(rendition, rate):
    """What a receiver of this rendition plays, as samples at ``rate``."""
    with open(rendition.path, "rb") as f:
        return decode_to_pcm(rendition.codec, f.read(), rate)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return chirp_wav(tmp_path_factory.mktemp("src") / "chirp.wav")


@pytest.mark.parametrize("mp3_rate,adpcm_rate", [(16000, 16000), (8000, 8000), (44100, 44100),
                                                 (22050, 16000)])
def test_mp3_and_adpcm_renditions_start_with_the_same_sample(source, tmp_path, mp3_rate,
                                                               adpcm_rate):
    settings = AudioSettings(mp3_rate=mp3_rate, adpcm_rate=adpcm_rate)
    made = make_renditions(source, str(tmp_path), settings=settings, keep_normalised=True)
    mp3_r, adpcm_r = made.renditions["mp3"], made.renditions["adpcm"]
    reference, ref_rate = read_wav_mono(made.normalised_path)
    assert ref_rate == adpcm_rate
    # Side by side at the ADPCM rate (the MP3 decoder resamples when the rates differ).
    heard_mp3, heard_adpcm = decoded(mp3_r, adpcm_rate), decoded(adpcm_r, adpcm_rate)

    assert abs(lag_samples(heard_mp3, heard_adpcm)) <= 1
    # Both start that lead-in before the first source sample, and say so truthfully.
    assert lag_samples(heard_adpcm, reference) == adpcm_r.lead_samples
    assert abs(lag_samples(heard_mp3, reference) - adpcm_r.lead_samples) <= 1
    assert mp3_r.lead_samples / mp3_rate == adpcm_r.lead_samples / adpcm_rate
    if mp3_rate == adpcm_rate:
        # Nothing shorter would do: the MP3 chain's own delay, and not one sample added to it.
        assert mp3_r.lead_samples == mp3.LAME_DECODED_DELAY
        assert lag_samples(decoded(mp3_r, mp3_rate), reference) == mp3.LAME_DECODED_DELAY


def test_a_set_of_one_codec_starts_as_late_as_a_set_of_both(source, tmp_path):
    both = make_renditions(source, str(tmp_path))
    alone = make_renditions(source, str(tmp_path), codecs=("adpcm",))
    assert set(alone.renditions) == {"adpcm"}
    assert alone.renditions["adpcm"].lead_samples == both.renditions["adpcm"].lead_samples
    assert lag_samples(decoded(alone.renditions["adpcm"], 16000),
                       decoded(both.renditions["mp3"], 16000)) == 0


def test_durations_say_how_long_each_rendition_plays(source, tmp_path):
    made = make_renditions(source, str(tmp_path))
    for rendition in made.renditions.values():
        played_ms = len(decoded(rendition, rendition.rate)) * 1000 // rendition.rate
        assert rendition.duration_ms == pytest.approx(played_ms, abs=1)
        lead_ms = rendition.lead_samples * 1000 / rendition.rate
        # The source, after the lead-in, rounded up to a whole frame (36 ms) or block (31.6 ms).
        assert made.duration_ms + lead_ms <= rendition.duration_ms + 1
        assert rendition.duration_ms <= made.duration_ms + lead_ms + 37


@pytest.mark.parametrize("mp3_rate,adpcm_rate,expected", [
    (16000, 16000, {"mp3": 1105, "adpcm": 1105}),
    (8000, 8000, {"mp3": 1105, "adpcm": 1105}),
    (22050, 16000, {"mp3": 1323, "adpcm": 960}),     # 60 ms: 1/50 s is whole at both rates
    (16000, 22050, {"mp3": 1280, "adpcm": 1764}),    # 80 ms
    (44100, 48000, {"mp3": 1176, "adpcm": 1280}),    # 26.67 ms: 1/300 s
])
def test_lead_in_is_the_same_time_at_any_rates_and_no_shorter_than_mp3s_delay(
        mp3_rate, adpcm_rate, expected):
    settings = AudioSettings(mp3_rate=mp3_rate, adpcm_rate=adpcm_rate)
    leads = lead_in(settings)
    assert leads == expected
    assert leads["mp3"] * adpcm_rate == leads["adpcm"] * mp3_rate
    assert leads["mp3"] >= mp3.LAME_DECODED_DELAY
    # A set of ADPCM alone needs no lead-in; one of MP3 alone has its own delay and no more.
    assert lead_in(settings, ("adpcm",)) == {"adpcm": 0}
    assert lead_in(settings, ("mp3",)) == {"mp3": mp3.LAME_DECODED_DELAY}
