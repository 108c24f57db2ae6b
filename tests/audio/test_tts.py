"""Vietnamese text-to-speech: real espeak-ng speech, the engine interface and its errors."""

import wave

import numpy as np
import pytest

from audio import tts
from audio.tones import write_wav
from audio.tts import (
    EmptyText,
    TtsEngine,
    TtsError,
    TtsUnavailable,
    available_voices,
    get_engine,
    register_engine,
    synthesize_to_file,
)
from audio.tts.base import split_text
from audio.tts.sample import SAMPLE_BULLETIN

BULLETIN = SAMPLE_BULLETIN  # ~500 characters with dates, times, numbers, units, a phone


def read_wav(path):
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return samples, wav.getframerate()


def test_bulletin_of_500_characters_becomes_audible_unclipped_speech(tmp_path):
    assert 480 <= len(BULLETIN) <= 520
    out = synthesize_to_file(BULLETIN, tmp_path / "bulletin.wav")
    samples, rate = read_wav(out)
    duration = len(samples) / rate
    # Read out ("mười bảy giờ ba mươi phút ...") the text is ~900 characters: at 12-25
    # characters a second that is roughly 35-75 s of speech.
    assert 30 < duration < 90, duration
    x = samples.astype(np.float64) / 32768
    rms_db = 20 * np.log10(np.sqrt(np.mean(x ** 2)))
    assert rms_db > -30, rms_db  # speech, not near-silence
    assert np.mean(np.abs(samples) >= 32767) < 0.001  # not clipped
    # Most of the energy is in the speech band.
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    assert spectrum[(freqs > 100) & (freqs < 4000)].sum() > 0.8 * spectrum.sum()
    # Sounding out of the whole text (not just the first chunk): speech in every tenth.
    tenths = np.array_split(x, 10)
    assert all(np.sqrt(np.mean(t ** 2)) > 0.01 for t in tenths)


@pytest.mark.parametrize("voice", ["north", "central", "south"])
def test_each_vietnamese_voice_speaks(tmp_path, voice):
    samples, rate = read_wav(synthesize_to_file("Bà con chú ý, lúc 5h sáng mai có mưa.",
                                                tmp_path / "v.wav", voice=voice))
    assert 1.0 < len(samples) / rate < 8.0
    assert np.abs(samples).max() > 3000


def test_faster_speed_gives_shorter_speech(tmp_path):
    text = "Ủy ban nhân dân xã thông báo lịch tiêm phòng cho đàn gia súc."
    slow, rate = read_wav(synthesize_to_file(text, tmp_path / "slow.wav", speed=0.7))
    fast, _ = read_wav(synthesize_to_file(text, tmp_path / "fast.wav", speed=1.5))
    assert len(fast) < 0.7 * len(slow)


def test_voices_offered():
    assert available_voices() == ["north", "central", "south"]
    assert get_engine().voices == {"north": "vi", "central": "vi-vn-x-central",
                                   "south": "vi-vn-x-south"}


@pytest.mark.parametrize("text", ["", "   \n  "])
def test_empty_text_is_refused(tmp_path, text):
    with pytest.raises(EmptyText):
        synthesize_to_file(text, tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


def test_unknown_voice_and_bad_speed_are_explained(tmp_path):
    with pytest.raises(TtsError, match="north, central, south"):
        synthesize_to_file("xin chào", tmp_path / "x.wav", voice="hue")
    with pytest.raises(TtsError, match="outside"):
        synthesize_to_file("xin chào", tmp_path / "x.wav", speed=5)


def test_missing_espeak_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LOAXA_ESPEAK", str(tmp_path / "no-espeak-here"))
    with pytest.raises(TtsUnavailable, match="apt-get install espeak-ng"):
        synthesize_to_file("xin chào", tmp_path / "x.wav", engine=tts.EspeakEngine())


def test_text_that_starts_with_a_dash_is_spoken_not_taken_for_an_option(tmp_path):
    samples, _ = read_wav(synthesize_to_file("-v en hello", tmp_path / "x.wav"))
    assert len(samples) > 0


class RecordingEngine(TtsEngine):
    """A stand-in engine (the unit boundary): records what it is asked and writes a tone."""

    name = "recording"
    voices = {"north": "n", "south": "s"}
    max_chunk_chars = 80

    def __init__(self):
        self.calls = []

    def synthesize(self, text, out_wav_path, voice, speed):
        self.calls.append((text, voice, speed))
        rate = 8000
        t = np.arange(int(rate * 0.1 * len(text.split()))) / rate
        write_wav(out_wav_path, 0.3 * np.sin(2 * np.pi * 440 * t), rate)


def test_another_engine_plugs_in_by_name_from_settings(tmp_path, monkeypatch):
    engine = register_engine(RecordingEngine())
    monkeypatch.setenv("LOAXA_TTS_ENGINE", "recording")
    monkeypatch.setenv("LOAXA_TTS_SPEED", "1.25")
    text = "Lúc 17h30 bà con tập trung tại nhà văn hóa. " * 3
    out = synthesize_to_file(text, tmp_path / "x.wav", voice="south")
    texts = [call[0] for call in engine.calls]
    # Normalised before the engine sees it, split at sentence ends within the engine's limit.
    assert texts == ["Lúc mười bảy giờ ba mươi phút bà con tập trung tại nhà văn hóa."] * 3
    assert {call[1:] for call in engine.calls} == {("south", 1.25)}
    samples, rate = read_wav(out)  # the pieces joined in order
    assert len(samples) == sum(int(rate * 0.1 * len(t.split())) for t in texts)
    assert available_voices() == ["north", "south"]


def test_engine_named_module_and_class_is_imported(tmp_path, monkeypatch):
    (tmp_path / "my_voice_plugin.py").write_text(
        "from audio.tts import TtsEngine\n"
        "class LocalVoice(TtsEngine):\n"
        "    name = 'local-voice'\n"
        "    voices = {'north': 'v1'}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    engine = get_engine("my_voice_plugin:LocalVoice")
    assert engine.name == "local-voice" and get_engine("local-voice") is engine
    with pytest.raises(TtsUnavailable, match="cannot load"):
        get_engine("my_voice_plugin:NoSuchClass")
    with pytest.raises(TtsError, match="unknown speech engine"):
        get_engine("no-such-engine")


def test_long_text_is_split_at_sentence_ends_then_commas():
    sentences = ["Câu thứ %d có vài chữ." % i for i in range(1, 30)]
    chunks = split_text(" ".join(sentences), 100)
    assert all(len(c) <= 100 for c in chunks)
    assert " ".join(chunks) == " ".join(sentences)
    assert all(c.endswith(".") for c in chunks)
    long_sentence = ", ".join(["một đoạn dài không có dấu chấm"] * 10)
    chunks = split_text(long_sentence, 80)
    assert all(len(c) <= 80 for c in chunks) and all(c.endswith(",") for c in chunks[:-1])
    assert split_text("chữ " * 50, 30) == [("chữ " * 7).strip()] * 7 + ["chữ"]
