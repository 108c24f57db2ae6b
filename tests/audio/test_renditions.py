"""Renditions: every good upload comes out at the target loudness in both codecs, cached."""

import hashlib
import os
import tempfile

import numpy as np
import pytest
from audio_samples import make_samples

from audio import ffmpeg
from audio.decode import decode_to_pcm
from audio.loudness import measure
from audio.probe import AudioRejected
from audio.renditions import make_renditions
from audio.settings import DEFAULT_SETTINGS
from audio.tones import read_wav_mono, write_wav

TARGET = DEFAULT_SETTINGS.target_lufs
AUDIBLE = ["speech", "speech_m4a", "tone", "noise", "clipped", "stereo", "webm", "amr"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return make_samples(str(tmp_path_factory.mktemp("src")))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def built(samples, cache):
    return {name: make_renditions(samples[name], cache) for name in AUDIBLE + ["silence"]}


def rendition_loudness(rendition, scratch):
    """What a listener gets: the MP3 file as is; the ADPCM through the firmware's decoder."""
    if rendition.codec == "mp3":
        return measure(rendition.path)
    with open(rendition.path, "rb") as f:
        pcm = decode_to_pcm("adpcm", f.read(), rendition.rate)
    return measure(write_wav(os.path.join(scratch, "decoded.wav"), pcm, rendition.rate))


@pytest.mark.parametrize("name", AUDIBLE)
def test_every_rendition_is_within_1_lu_of_the_target(built, name, tmp_path):
    result = built[name]
    assert set(result.renditions) == {"mp3", "adpcm"}
    assert result.loudness_after == pytest.approx(TARGET, abs=0.5)
    for rendition in result.renditions.values():
        heard = rendition_loudness(rendition, str(tmp_path))
        assert abs(heard.integrated_lufs - TARGET) <= 1.0, (rendition.codec, heard)
        # The ceiling holds, give or take the codec's own overshoot.
        assert heard.true_peak_db <= DEFAULT_SETTINGS.true_peak_db + 0.5, (rendition.codec, heard)


def test_quiet_and_loud_sources_end_up_equally_loud(built):
    # The tone went in at about -41 LUFS, the clipped speech at about -8 LUFS.
    assert built["tone"].loudness_before < -35 and built["clipped"].loudness_before > -10
    assert abs(built["tone"].loudness_after - built["clipped"].loudness_after) < 0.5


def test_renditions_are_what_the_receivers_are_told(built):
    result = built["speech"]
    source_ms = result.duration_ms
    mp3, adpcm = result.renditions["mp3"], result.renditions["adpcm"]
    for rendition in (mp3, adpcm):
        with open(rendition.path, "rb") as f:
            data = f.read()
        assert rendition.size == len(data)
        assert rendition.sha256 == hashlib.sha256(data).hexdigest()
        assert rendition.rate == 16000
        # The lead-in (69 ms) comes first; whole MPEG frames (36 ms) and whole ADPCM blocks
        # (31.6 ms) round the length up.
        lead_ms = rendition.lead_samples * 1000 / rendition.rate
        assert source_ms + lead_ms - 1 <= rendition.duration_ms <= source_ms + lead_ms + 37
    assert mp3.bitrate == 32 and adpcm.block_bytes == 256
    assert mp3.size == pytest.approx(32000 / 8 * source_ms / 1000, rel=0.03)
    assert adpcm.size % 256 == 0


def test_duration_is_what_decodes_not_what_the_header_guesses(built, samples):
    # AMR has no duration in its header (ffmpeg estimates 15.96 s from the bitrate); the item
    # is as long as the speech it holds.
    speech_ms = read_duration_ms(samples["speech"])
    assert built["amr"].duration_ms == pytest.approx(speech_ms, abs=60)
    assert built["speech"].duration_ms == pytest.approx(speech_ms, abs=2)


def test_stereo_is_downmixed_to_mono(built):
    pcm = decode_to_pcm("mp3", open(built["stereo"].renditions["mp3"].path, "rb").read(), 16000)
    # One channel of 8 s: a stereo decode would give twice the samples.
    assert len(pcm) == pytest.approx(8 * 16000, rel=0.02)


def test_clean_sources_carry_no_warning(built):
    for name in ("speech", "tone", "noise", "stereo"):
        assert built[name].warnings == [], name


def test_clipped_source_is_flagged(built):
    assert any(w.startswith("clipped:") for w in built["clipped"].warnings)


def test_silence_is_flagged_and_not_amplified(built, tmp_path):
    result = built["silence"]
    assert any(w.startswith("near-silent:") for w in result.warnings)
    assert result.gain_db == 0
    pcm = decode_to_pcm("adpcm", open(result.renditions["adpcm"].path, "rb").read(), 16000)
    assert np.abs(pcm.astype(np.int32)).max() <= 8


def test_second_call_is_served_from_the_cache_without_ffmpeg(built, samples, cache, monkeypatch):
    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("ffmpeg ran for a cached item")

    monkeypatch.setattr(ffmpeg, "run", no_ffmpeg)
    monkeypatch.setattr(ffmpeg, "run_with_progress", no_ffmpeg)
    again = make_renditions(samples["speech"], cache)
    first = built["speech"]
    assert again.cached and not first.cached
    assert again.source_sha256 == first.source_sha256
    assert {c: r.sha256 for c, r in again.renditions.items()} == \
        {c: r.sha256 for c, r in first.renditions.items()}


def test_same_bytes_under_another_name_hit_the_cache(built, samples, cache, tmp_path, monkeypatch):
    copy = tmp_path / "ban-tin-copy.wav"
    copy.write_bytes(open(samples["tone"], "rb").read())
    monkeypatch.setattr(ffmpeg, "run_with_progress", None)  # would fail if called
    assert make_renditions(copy, cache).renditions["mp3"].path == \
        built["tone"].renditions["mp3"].path


def test_other_settings_make_another_set(samples, cache, built):
    from dataclasses import replace

    louder = make_renditions(samples["tone"], cache, ("mp3",),
                             replace(DEFAULT_SETTINGS, target_lufs=-14.0))
    assert set(louder.renditions) == {"mp3"}
    assert louder.loudness_after == pytest.approx(-14.0, abs=0.5)
    assert louder.renditions["mp3"].path != built["tone"].renditions["mp3"].path


def test_no_temporary_files_are_left_behind(samples, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cache = tmp_path / "cache"
    make_renditions(samples["noise"], cache, ("adpcm",))
    with pytest.raises(AudioRejected):
        make_renditions(samples["truncated"], cache)
    with pytest.raises(AudioRejected):
        make_renditions(samples["png_as_mp3"], cache)
    assert os.listdir(scratch) == []
    leftovers = [name for name in os.listdir(cache) if name.startswith(".")]
    assert leftovers == [] and len(os.listdir(cache)) == 1


def test_a_failed_conversion_leaves_nothing(samples, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    real = ffmpeg.run_with_progress
    calls = []

    def fail_on_encode(args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise ffmpeg.FfmpegError(args, 1, "simulated encoder crash")
        return real(args, **kwargs)

    monkeypatch.setattr(ffmpeg, "run_with_progress", fail_on_encode)
    with pytest.raises(ffmpeg.FfmpegError):
        make_renditions(samples["tone"], tmp_path / "cache")
    assert os.listdir(scratch) == [] and os.listdir(tmp_path / "cache") == []


def test_progress_is_reported_up_to_done(samples, tmp_path):
    seen = []
    make_renditions(samples["speech"], tmp_path, progress=lambda f, stage: seen.append((f, stage)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [s for _, s in seen][-1] == "done"
    assert {"analyse", "measure", "encode"} <= {s for _, s in seen}


def test_refused_file_raises_before_any_conversion(samples, tmp_path):
    with pytest.raises(AudioRejected) as caught:
        make_renditions(samples["empty"], tmp_path)
    assert caught.value.reason == "empty"


def test_works_with_the_bundled_ffmpeg_and_no_ffprobe(samples, tmp_path, monkeypatch):
    """What `make demo` gets on a machine without Debian's ffmpeg."""
    import imageio_ffmpeg

    monkeypatch.setenv("LOAXA_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("LOAXA_FFPROBE", "none")
    result = make_renditions(samples["speech_m4a"], tmp_path)
    assert result.loudness_after == pytest.approx(TARGET, abs=0.5)
    assert result.duration_ms == pytest.approx(read_duration_ms(samples["speech"]), abs=100)
    assert measure(result.renditions["mp3"].path).integrated_lufs == pytest.approx(TARGET, abs=1.0)


def read_duration_ms(wav_path):
    samples, rate = read_wav_mono(wav_path)
    return len(samples) * 1000 / rate


def test_very_quiet_source_is_raised_only_up_to_the_gain_cap(tmp_path):
    from audio_samples import ffmpeg as run_ffmpeg

    quiet = str(tmp_path / "far-from-the-microphone.wav")
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=800:sample_rate=16000:duration=4",
               "-af", "volume=-30dB", quiet)
    result = make_renditions(quiet, tmp_path / "cache", ("adpcm",))
    assert result.loudness_before < DEFAULT_SETTINGS.near_silent_lufs
    assert result.gain_db == pytest.approx(DEFAULT_SETTINGS.max_gain_db, abs=0.05)
    # Raised by the cap (30 dB, less what the compressor's knee takes), not to the target.
    assert result.loudness_after == pytest.approx(result.loudness_before + 30, abs=1.0)
    assert result.loudness_after < DEFAULT_SETTINGS.target_lufs - 3
    assert [w.split(":")[0] for w in result.warnings] == ["near-silent", "loudness"]
