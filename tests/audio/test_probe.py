"""Ingest: every kind of upload an operator makes is probed right or refused with the reason."""

import pytest
from audio_samples import make_samples, make_three_hours

from audio.probe import AudioRejected, probe
from audio.settings import AudioSettings

# name: (codec, channels, sample rate, approximate duration in seconds)
GOOD = {
    "speech": ("pcm_s16le", 1, 22050, None),
    "speech_m4a": ("aac", 2, 44100, None),
    "speech_mp3": ("mp3", 1, 22050, None),
    "tone": ("mp3", 1, 44100, 6.0),
    "noise": ("opus", 1, 48000, 6.0),
    "silence": ("pcm_s16le", 1, 16000, 5.0),
    "stereo": ("flac", 2, 22050, 8.0),
    "webm": ("opus", 1, 48000, None),
    "amr": ("amr_nb", 1, 8000, None),
}
BROKEN = {"png_as_mp3": "not-audio", "empty": "empty", "truncated": "truncated",
          "unknown_codec": "unsupported"}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return make_samples(str(tmp_path_factory.mktemp("probe")))


@pytest.fixture(scope="module")
def speech_seconds(samples):
    return probe(samples["speech"]).duration_s


@pytest.fixture(scope="module")
def three_hours(tmp_path_factory):
    return make_three_hours(str(tmp_path_factory.mktemp("long")))


@pytest.fixture(params=["ffprobe", "ffmpeg-only"])
def prober(request, monkeypatch):
    """Both ways of reading a container: with ffprobe, and as with the imageio-ffmpeg wheel
    (no ffprobe; the banner of `ffmpeg -i` is parsed instead)."""
    if request.param == "ffmpeg-only":
        monkeypatch.setenv("LOAXA_FFPROBE", "none")
    return request.param


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_files_are_probed(samples, speech_seconds, prober, name):
    codec, channels, rate, seconds = GOOD[name]
    info = probe(samples[name])
    assert (info.codec, info.channels, info.sample_rate) == (codec, channels, rate)
    assert info.duration_s == pytest.approx(seconds or speech_seconds, abs=0.6)
    assert info.size_bytes > 0


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_are_refused_with_the_reason(samples, prober, name):
    with pytest.raises(AudioRejected) as caught:
        probe(samples[name])
    error = caught.value
    assert error.reason == BROKEN[name]
    file_name = samples[name].rsplit("/", 1)[1]
    assert file_name in str(error) and file_name in error.message_vi


def test_messages_are_plain_english_and_vietnamese(samples):
    with pytest.raises(AudioRejected) as caught:
        probe(samples["png_as_mp3"])
    assert "not an audio recording" in str(caught.value)
    assert "không phải là bản ghi âm thanh" in caught.value.message_vi
    with pytest.raises(AudioRejected) as caught:
        probe(samples["truncated"])
    assert "cut short" in str(caught.value)
    assert "bị thiếu phần cuối" in caught.value.message_vi


def test_size_limit_is_checked_before_anything_is_decoded(samples):
    limits = AudioSettings(max_upload_bytes=100_000)
    with pytest.raises(AudioRejected) as caught:
        probe(samples["speech"], limits)
    assert caught.value.reason == "too-large"
    assert "0.1 MB" in str(caught.value) and "vượt quá giới hạn" in caught.value.message_vi


def test_three_hour_recording_is_accepted_under_the_default_limit(three_hours, prober):
    info = probe(three_hours)
    assert info.duration_s == pytest.approx(3 * 3600, abs=10)


def test_duration_limit_is_configurable(three_hours):
    with pytest.raises(AudioRejected) as caught:
        probe(three_hours, AudioSettings(max_duration_s=2 * 3600))
    assert caught.value.reason == "too-long"
    assert "3:00:0" in str(caught.value) and "2:00:00" in str(caught.value)


def test_missing_file_is_a_caller_error_not_a_rejection(tmp_path):
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.mp3")
