"""Announcement dressing: a generated attention chime and emergency alert tone.

Commune stations open and close every bulletin with a short signal so people in the fields
know to listen; an emergency starts with an unmistakable alert. Both are generated here
(no third-party sound files) and joined with the speech by ``dress``:

- bulletin:  chime, pause, speech, pause, chime
- emergency: alert tone, pause, speech

The chime is a two-note "ding-dong" (E5 then C5, bell-like decay). The alert is a hi-lo warble
alternating between 853 Hz and 960 Hz (the two tones of the EAS attention signal, which people
already associate with warnings) four times a second, for 4 s. Tones are scaled to the speech's
own level, so the loudness normalisation that follows treats them alike.
"""

import io
import wave
from pathlib import Path

import numpy as np

from audio import ffmpeg

CHIME_NOTES_HZ = (659.25, 523.25)
CHIME_NOTE_S = (0.6, 0.9)  # the second note rings longer, as a door chime does
ALERT_TONES_HZ = (853.0, 960.0)
ALERT_SECONDS = 4.0
ALERT_SWITCH_S = 0.125  # each tone of the warble lasts this long (4 hi-lo cycles per second)
PAUSE_S = 0.4
KINDS = ("bulletin", "emergency")

_FADE_S = 0.01  # edges ramped over 10 ms so no tone starts or stops with a click
_TONE_PEAK = 0.5  # -6 dBFS when there is no speech to match
_MAX_PEAK = 0.9
_ACTIVE_RMS = 10 ** (-40 / 20)  # 50 ms windows quieter than -40 dBFS are pauses, not speech


def _fade(signal, rate):
    n = min(len(signal) // 2, int(rate * _FADE_S))
    if n:
        ramp = np.linspace(0.0, 1.0, n, endpoint=False)
        signal[:n] *= ramp
        signal[-n:] *= ramp[::-1]
    return signal


def _bell_note(freq, seconds, rate):
    t = np.arange(int(seconds * rate)) / rate
    # A fundamental with two quieter partials and an exponential decay sounds like a bell.
    tone = (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(2 * np.pi * 2 * freq * t)
            + 0.1 * np.sin(2 * np.pi * 3 * freq * t))
    return _fade(tone * np.exp(-t / (seconds / 3)), rate)


def chime(rate):
    """The attention chime as float samples in [-1, 1] (peak at -6 dBFS)."""
    notes = zip(CHIME_NOTES_HZ, CHIME_NOTE_S, strict=True)
    signal = np.concatenate([_bell_note(freq, seconds, rate) for freq, seconds in notes])
    return signal * (_TONE_PEAK / np.max(np.abs(signal)))


def alert_tone(rate, seconds=ALERT_SECONDS):
    """The emergency warble as float samples in [-1, 1] (peak at -6 dBFS)."""
    n = int(seconds * rate)
    step = np.arange(n) // int(ALERT_SWITCH_S * rate) % 2
    freq = np.where(step == 0, ALERT_TONES_HZ[0], ALERT_TONES_HZ[1])
    # Integrating the frequency keeps the phase continuous at each switch (no clicks).
    phase = 2 * np.pi * np.cumsum(freq) / rate
    return _fade(np.sin(phase), rate) * _TONE_PEAK


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError("unknown announcement kind %r (choose from: %s)"
                         % (kind, ", ".join(KINDS)))


def tone(kind, rate):
    """The opening signal for a kind of announcement."""
    _check_kind(kind)
    return chime(rate) if kind == "bulletin" else alert_tone(rate)


def write_wav(path, samples, rate):
    """Write mono samples (int16, or float in [-1, 1]) as a 16-bit PCM WAV file."""
    if samples.dtype != np.int16:
        samples = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())
    return Path(path)


def alert_tone_wav(rate):
    """The alert tone as the bytes of a 16-bit WAV file: the same every time, so the media
    item made from it is found again by its source's SHA-256 (headend/services/pinned.py)."""
    samples = np.round(np.clip(alert_tone(rate), -1.0, 1.0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return out.getvalue()


def read_wav_mono(path):
    """Samples (int16, downmixed to mono) and rate of a PCM WAV file; other formats go through
    ffmpeg."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate, frames = wav.getparams()[:4]
            data = wav.readframes(frames)
    except (wave.Error, EOFError):
        return _decode_with_ffmpeg(path)
    if width != 2:
        return _decode_with_ffmpeg(path)
    samples = np.frombuffer(data, dtype="<i2")
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels)
        samples = np.round(samples.mean(axis=1)).astype(np.int16)
    return samples.astype(np.int16), rate


def _decode_with_ffmpeg(path, rate=22050):
    try:
        out, _ = ffmpeg.run(["-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(rate),
                             "-f", "s16le", "pipe:1"], timeout=600)
    except ffmpeg.FfmpegError as exc:
        raise ValueError("cannot read audio from %s: %s" % (path, exc)) from exc
    if not out:
        raise ValueError("no audio in %s" % path)
    return np.frombuffer(out, dtype="<i2").astype(np.int16), rate


def speech_rms(samples, rate):
    """RMS (float, full scale 1.0) over the parts of ``samples`` that are not pauses."""
    x = samples.astype(np.float64) / 32768
    window = max(1, int(rate * 0.05))
    n = len(x) // window * window
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(x[:n].reshape(-1, window) ** 2, axis=1))
    active = rms[rms > _ACTIVE_RMS]
    return float(np.sqrt(np.mean(active ** 2))) if len(active) else 0.0


def _matched(signal, level_rms):
    """``signal`` scaled to ``level_rms`` (no louder than -1 dBFS peak), as int16."""
    if level_rms > 0:
        signal = signal * (level_rms / np.sqrt(np.mean(signal ** 2)))
        peak = np.max(np.abs(signal))
        if peak > _MAX_PEAK:
            signal = signal * (_MAX_PEAK / peak)
    return np.round(signal * 32767).astype(np.int16)


def dress(in_wav, out_wav, kind="bulletin"):
    """Write ``in_wav``'s speech with the signals of ``kind`` around it as a mono WAV at the
    input's rate; return the output path. The speech samples are copied unchanged."""
    _check_kind(kind)  # before any work
    speech, rate = read_wav_mono(in_wav)
    opening = _matched(tone(kind, rate), speech_rms(speech, rate))
    pause = np.zeros(int(PAUSE_S * rate), dtype=np.int16)
    parts = [opening, pause, speech]
    if kind == "bulletin":
        parts += [pause, opening]
    return write_wav(out_wav, np.concatenate(parts), rate)
