"""Announcement dressing: the chime and alert tone are where a listener expects them."""

import numpy as np
import pytest

from audio.tones import (
    ALERT_SECONDS,
    ALERT_SWITCH_S,
    ALERT_TONES_HZ,
    CHIME_NOTE_S,
    CHIME_NOTES_HZ,
    PAUSE_S,
    alert_tone,
    chime,
    dress,
    read_wav_mono,
    write_wav,
)
from audio.tts import synthesize_to_file

RATE = 22050


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    return synthesize_to_file("Bà con chú ý. Đây là bản tin của đài truyền thanh xã.",
                              tmp_path_factory.mktemp("tones") / "speech.wav")


def dominant_hz(segment, rate):
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    return np.fft.rfftfreq(len(segment), 1 / rate)[np.argmax(spectrum)]


def test_bulletin_is_chime_speech_chime_and_durations_add_up(speech_wav, tmp_path):
    speech, rate = read_wav_mono(speech_wav)
    out, out_rate = read_wav_mono(dress(speech_wav, tmp_path / "bulletin.wav", kind="bulletin"))
    chime_len = len(chime(rate))
    pause = int(PAUSE_S * rate)
    assert out_rate == rate
    assert len(out) == 2 * chime_len + 2 * pause + len(speech)
    # ding (E5) then dong (C5) at the start and again at the end
    ding = int(CHIME_NOTE_S[0] * rate)
    for start in (0, len(out) - chime_len):
        first = out[start + 200:start + ding - 200].astype(float)
        second = out[start + ding + 200:start + ding + 4000].astype(float)
        assert abs(dominant_hz(first, rate) - CHIME_NOTES_HZ[0]) < 5
        assert abs(dominant_hz(second, rate) - CHIME_NOTES_HZ[1]) < 5
    # the speech in the middle, sample for sample, with silence either side
    middle = chime_len + pause
    assert np.array_equal(out[middle:middle + len(speech)], speech)
    assert not out[chime_len:middle].any()
    assert not out[middle + len(speech):middle + len(speech) + pause].any()


def test_emergency_starts_with_a_warbling_alert_then_speech(speech_wav, tmp_path):
    speech, rate = read_wav_mono(speech_wav)
    out, _ = read_wav_mono(dress(speech_wav, tmp_path / "alert.wav", kind="emergency"))
    alert_len = int(ALERT_SECONDS * rate)
    assert 3.0 <= ALERT_SECONDS <= 5.0
    assert len(out) == alert_len + int(PAUSE_S * rate) + len(speech)
    switch = int(ALERT_SWITCH_S * rate)
    heard = [dominant_hz(out[i * switch + 100:(i + 1) * switch - 100].astype(float), rate)
             for i in range(alert_len // switch)]
    expected = [ALERT_TONES_HZ[i % 2] for i in range(len(heard))]
    assert np.allclose(heard, expected, atol=10)
    assert np.array_equal(out[-len(speech):], speech)


def test_tones_are_as_loud_as_the_speech_they_frame(speech_wav, tmp_path):
    speech, rate = read_wav_mono(speech_wav)
    out, _ = read_wav_mono(dress(speech_wav, tmp_path / "b.wav"))
    tone = out[:len(chime(rate))].astype(float)
    active = speech.astype(float)
    windows = active[: len(active) // 1102 * 1102].reshape(-1, 1102)
    rms = np.sqrt((windows ** 2).mean(axis=1))
    speech_rms = np.sqrt((rms[rms > 327] ** 2).mean())
    tone_rms = np.sqrt((tone ** 2).mean())
    assert abs(20 * np.log10(tone_rms / speech_rms)) < 1.0
    assert np.abs(out).max() < 32767


def test_stereo_input_is_downmixed_and_other_rates_kept(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    left = (0.4 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16)
    stereo = np.stack([left, left], axis=1).reshape(-1)
    import wave

    with wave.open(str(tmp_path / "stereo.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(stereo.tobytes())
    out, out_rate = read_wav_mono(dress(tmp_path / "stereo.wav", tmp_path / "out.wav"))
    assert out_rate == rate
    assert len(out) == 2 * len(chime(rate)) + 2 * int(PAUSE_S * rate) + rate


def test_compressed_input_goes_through_ffmpeg(speech_wav, tmp_path):
    import subprocess

    from audio.ffmpeg import ffmpeg_exe

    mp3 = tmp_path / "speech.mp3"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(speech_wav), str(mp3)], check=True)
    out, rate = read_wav_mono(dress(mp3, tmp_path / "out.wav", kind="emergency"))
    assert rate == RATE and len(out) > int(ALERT_SECONDS * rate)


def test_unknown_kind_and_unreadable_input_are_refused(speech_wav, tmp_path):
    with pytest.raises(ValueError, match="bulletin, emergency"):
        dress(speech_wav, tmp_path / "x.wav", kind="wedding")
    (tmp_path / "not-audio.wav").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match="cannot read audio"):
        dress(tmp_path / "not-audio.wav", tmp_path / "x.wav")


def test_generated_tones_are_standalone_wavs(tmp_path):
    path = write_wav(tmp_path / "alert.wav", alert_tone(RATE), RATE)
    samples, rate = read_wav_mono(path)
    assert rate == RATE and len(samples) == int(ALERT_SECONDS * RATE)
    assert 0.45 < np.abs(samples).max() / 32767 <= 0.5  # -6 dBFS peak, no clipping
    assert abs(int(samples[0])) < 100 and abs(int(samples[-1])) < 100  # faded edges, no click
