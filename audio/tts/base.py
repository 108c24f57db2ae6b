"""The speech engine interface, the engine registry and the text chunking every engine shares.

An engine turns one chunk of already normalised Vietnamese text into a WAV file. Everything
else (normalisation, splitting long text, joining the pieces, choosing the engine from
settings) happens once, in ``audio.tts``, so a new engine is one small class.
"""

import importlib
import os
import re
import threading

ENGINE_ENV = "LOAXA_TTS_ENGINE"
SPEED_ENV = "LOAXA_TTS_SPEED"
DEFAULT_ENGINE = "espeak"
# Outside this range speech is either a drone or a blur on a horn speaker.
MIN_SPEED = 0.5
MAX_SPEED = 2.0


class TtsError(Exception):
    """Speech synthesis failed; the message says why in terms an operator can act on."""


class TtsUnavailable(TtsError):
    """The engine's program or model is not installed on this machine."""


class EmptyText(TtsError, ValueError):
    """There is nothing to say."""


class TtsEngine:
    """One speech engine. Subclasses set ``name``, ``voices`` and implement ``synthesize``.

    ``voices`` maps the project's voice names ("north", "central", "south") to the engine's own
    voice ids. ``max_chunk_chars`` is the longest text handed to ``synthesize`` at once (None:
    no limit); longer text is split at sentence boundaries by the caller.
    """

    name = ""
    voices = {}
    max_chunk_chars = None

    def synthesize(self, text, out_wav_path, voice, speed):
        """Write ``text`` (normalised, non-empty) spoken with ``voice`` (a key of ``voices``)
        at ``speed`` (1.0 is the engine's normal pace) as a PCM WAV file at ``out_wav_path``."""
        raise NotImplementedError

    def __repr__(self):
        return "<%s %r>" % (type(self).__name__, self.name)


_registry = {}
_registry_lock = threading.Lock()


def register_engine(engine):
    """Make ``engine`` available by its name, replacing any engine of the same name."""
    if not isinstance(engine, TtsEngine) or not engine.name:
        raise TypeError("register_engine() takes a TtsEngine instance with a name")
    with _registry_lock:
        _registry[engine.name] = engine
    return engine


def _load_plugin(spec):
    """Import "package.module:ClassName" and register an instance of it under its name."""
    module_name, _, class_name = spec.partition(":")
    try:
        engine_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise TtsUnavailable("cannot load speech engine %r: %s" % (spec, exc)) from exc
    return register_engine(engine_class())


def get_engine(name=None):
    """The engine called ``name``; without a name, the one set in LOAXA_TTS_ENGINE, else espeak.

    A name of the form "package.module:ClassName" imports that class, so a local engine plugs
    in from the settings alone.
    """
    name = name or os.environ.get(ENGINE_ENV) or DEFAULT_ENGINE
    with _registry_lock:
        engine = _registry.get(name)
    if engine is not None:
        return engine
    if ":" in name:
        return _load_plugin(name)
    if name == DEFAULT_ENGINE:
        from audio.tts.espeak import EspeakEngine

        return register_engine(EspeakEngine())
    raise TtsError("unknown speech engine %r (known: %s)" % (name, ", ".join(registered_names())))


def registered_names():
    with _registry_lock:
        return sorted(set(_registry) | {DEFAULT_ENGINE})


def resolve_speed(speed):
    """Speed factor from the argument, else LOAXA_TTS_SPEED, else 1.0; checked against limits."""
    if speed is None:
        speed = os.environ.get(SPEED_ENV) or 1.0
    try:
        speed = float(speed)
    except ValueError as exc:
        raise TtsError("speech speed must be a number, not %r" % (speed,)) from exc
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise TtsError("speech speed %.2f is outside %.1f to %.1f" % (speed, MIN_SPEED, MAX_SPEED))
    return speed


_SENTENCE_END_RE = re.compile(r"(?<=[.!?;:…])\s+|\s*\n+\s*")
_CLAUSE_END_RE = re.compile(r"(?<=,)\s+")


def _pieces(text, max_chars, separators):
    """Split ``text`` at the first separator that yields pieces; recurse on pieces still too
    long with the next separators."""
    if len(text) <= max_chars:
        return [text]
    if not separators:
        # No punctuation left: cut at the last space that fits (a word is never cut).
        cut = text.rfind(" ", 0, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        return [text[:cut].strip()] + _pieces(text[cut:].strip(), max_chars, separators)
    parts = [p for p in separators[0].split(text) if p.strip()]
    if len(parts) == 1:
        return _pieces(text, max_chars, separators[1:])
    out = []
    for part in parts:
        out += _pieces(part.strip(), max_chars, separators[1:])
    return out


def split_text(text, max_chars):
    """Split text into chunks of at most ``max_chars``, at sentence ends where possible, then
    at commas, then at spaces; sentences are packed together up to the limit."""
    text = text.strip()
    if max_chars is None or len(text) <= max_chars:
        return [text] if text else []
    chunks = []
    for piece in _pieces(text, max_chars, (_SENTENCE_END_RE, _CLAUSE_END_RE)):
        if chunks and len(chunks[-1]) + 1 + len(piece) <= max_chars:
            chunks[-1] += " " + piece
        else:
            chunks.append(piece)
    return chunks
