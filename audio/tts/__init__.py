"""Vietnamese text-to-speech behind a small engine interface.

    from audio.tts import synthesize_to_file
    synthesize_to_file("Lúc 17h30 ngày 15/11/2026 ...", "bulletin.wav", voice="south")

The text is normalised (``audio.textnorm``: dates, times, numbers, units, abbreviations read as
words), split at sentence boundaries into chunks the engine handles well, synthesized (chunks
in parallel) and joined into one mono PCM WAV.

Engines: espeak-ng by default (voices "north", "central", "south"). Another engine, for example
a local neural voice, subclasses ``TtsEngine`` and is either registered in code
(``register_engine(MyEngine())``) or named in the settings: LOAXA_TTS_ENGINE=name, or
LOAXA_TTS_ENGINE=package.module:ClassName to import it. LOAXA_TTS_SPEED sets the default speed.
"""

import os
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from audio.textnorm import normalize_vi
from audio.tts.base import (
    EmptyText,
    TtsEngine,
    TtsError,
    TtsUnavailable,
    get_engine,
    register_engine,
    registered_names,
    resolve_speed,
    split_text,
)
from audio.tts.espeak import EspeakEngine

__all__ = [
    "EmptyText", "EspeakEngine", "TtsEngine", "TtsError", "TtsUnavailable", "available_voices",
    "get_engine", "prepare_text", "register_engine", "registered_names", "synthesize_to_file",
]

_PAUSE_PUNCTUATION = ".!?;:,…"


def available_voices(engine=None):
    """Voice names the engine offers ("north", "central", "south" for espeak)."""
    return list(_engine(engine).voices)


def _engine(engine):
    return engine if isinstance(engine, TtsEngine) else get_engine(engine)


def prepare_text(text):
    """Normalised text, with a full stop after lines that lack one (a heading followed by its
    first sentence would otherwise be read as one breathless clause)."""
    lines = []
    for line in normalize_vi(text).split("\n"):
        line = line.strip()
        if line:
            lines.append(line if line[-1] in _PAUSE_PUNCTUATION else line + ".")
    return "\n".join(lines)


def _join_wavs(parts, out_path):
    params = None
    with wave.open(str(out_path), "wb") as out:
        for part in parts:
            with wave.open(str(part), "rb") as wav:
                if params is None:
                    params = wav.getparams()[:3]
                    out.setnchannels(params[0])
                    out.setsampwidth(params[1])
                    out.setframerate(params[2])
                elif wav.getparams()[:3] != params:
                    raise TtsError("speech engine returned chunks in different WAV formats")
                out.writeframes(wav.readframes(wav.getnframes()))


def synthesize_to_file(text, out_path, voice="north", speed=None, engine=None):
    """Speak Vietnamese ``text`` into the WAV file ``out_path`` and return its Path.

    ``voice`` is one of ``available_voices()``; ``speed`` a factor (1.0 normal, 0.5 to 2.0;
    default from LOAXA_TTS_SPEED); ``engine`` a TtsEngine, an engine name, or None for the
    configured default. Raises EmptyText, TtsUnavailable or TtsError with a clear message.
    """
    if not text or not text.strip():
        raise EmptyText("there is no text to speak")
    tts = _engine(engine)
    if voice not in tts.voices:
        raise TtsError("voice %r is not offered by %s (choose from: %s)"
                       % (voice, tts.name, ", ".join(tts.voices)))
    speed = resolve_speed(speed)
    chunks = split_text(prepare_text(text), tts.max_chunk_chars)
    if not chunks:
        raise EmptyText("there is nothing to speak in the text")
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="loaxa-tts-") as tmp:
        parts = [Path(tmp) / ("%04d.wav" % i) for i in range(len(chunks))]
        workers = max(1, min(len(chunks), os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            # list() re-raises the first engine error here.
            list(pool.map(lambda job: tts.synthesize(job[0], job[1], voice, speed),
                          zip(chunks, parts, strict=True)))
        # Write beside the target then rename, so a reader never sees a half-written file.
        out_path.parent.mkdir(parents=True, exist_ok=True)
        partial = out_path.with_name(out_path.name + ".part")
        try:
            _join_wavs(parts, partial)
            os.replace(partial, out_path)
        finally:
            partial.unlink(missing_ok=True)
    return out_path
