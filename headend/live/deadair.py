"""Dead air on a relay: the source stalled or fell silent; what plays instead; who is told.

``DeadAirDetector`` is sans-IO: it is fed every tick of the relay's paced feed (the time, and
the PCM the source gave for it or None) and says when dead air starts and ends:

    on-air --no bytes for after_s------------> dead (stalled)
    on-air --RMS < threshold for after_s----> dead (silent)
    dead   --audio for resume_s, no gap, 80 % of it sound--> on-air

"No bytes" is judged from when the source last delivered audio (the puller's arrival time,
not the paced feed's), so a stall is seen ``after_s`` after the network went quiet, not after
the feed's buffer has drained too. While dead, the source's audio is still read (to see it
come back) but the fallback is what goes out.

The fallback (``fallback_pcm``): the media item named by ``settings.relay_fallback_media``
(a filler recording from the library, decoded to the relay's 16 kHz), else a short notice in
Vietnamese read by the TTS after a chime, else (no TTS engine) the chime alone; it loops,
with a pause, until the source is back.

``dead_air_event`` is the one place a dead-air start or end leaves the live service: it logs
the event; an alert engine hooks in there.
"""

import collections
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio import tones
from audio.tts import synthesize_to_file

log = logging.getLogger(__name__)

ON_AIR = "on-air"
STALLED = "source-stalled"  # no bytes from the source (play-log and delivery reason codes)
SILENT = "source-silent"    # bytes, but below the silence threshold
FALLBACK_RATE = 16000
NOTICE_VI = ("Tín hiệu tiếp sóng đang bị gián đoạn. Xin quý vị vui lòng chờ trong giây lát.")
_LOOP_PAUSE_S = 2.0  # between two plays of the fallback
RESUME_LOUD = 0.8  # the share of the resume time that must be sound


def rms_dbfs(pcm: bytes) -> float:
    """RMS of 16-bit mono little-endian PCM in dBFS (-inf for digital silence)."""
    n = len(pcm) // 2
    if not n:
        return -math.inf
    samples = np.frombuffer(pcm[:2 * n], dtype="<i2").astype(np.float64)
    rms = math.sqrt(float(np.mean(samples * samples))) / 32768.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


@dataclass
class DeadAirChange:
    """Dead air started (``dead`` True, with its reason) or ended, at ``at`` (feed time, s)."""

    dead: bool
    reason: str  # STALLED or SILENT: why it started (kept on the end too)
    at: float
    since: float  # when the source was last heard well (a start) or went dead (an end)


@dataclass
class DeadAirDetector:
    after_s: float
    threshold_dbfs: float
    resume_s: float
    state: str = ON_AIR
    _started: float | None = None
    _last_bytes: float | None = None
    _last_sound: float | None = None
    _dead_since: float = 0.0
    _back_since: float | None = None
    _recent: collections.deque = field(default_factory=collections.deque)  # (time, loud)

    @property
    def dead(self) -> bool:
        return self.state != ON_AIR

    def feed(self, now: float, pcm: bytes | None,
             arrived: float | None = None) -> DeadAirChange | None:
        """One tick at ``now`` (seconds, any monotonic origin): ``pcm`` the source's audio for
        it (None: none), ``arrived`` when the source last delivered bytes (default: now if
        ``pcm``). Returns the change of state this tick brings, if any."""
        if self._started is None:
            self._started = now
        if pcm:
            self._last_bytes = max(self._last_bytes or now, arrived if arrived is not None
                                   else now)
        elif arrived is not None:
            self._last_bytes = max(self._last_bytes or arrived, arrived)
        loud = bool(pcm) and rms_dbfs(pcm) >= self.threshold_dbfs
        if loud:
            self._last_sound = now
        if self.state == ON_AIR:
            bytes_at = self._started if self._last_bytes is None else self._last_bytes
            sound_at = self._started if self._last_sound is None else self._last_sound
            if now - bytes_at >= self.after_s:
                return self._go_dead(STALLED, now, bytes_at)
            if now - sound_at >= self.after_s:
                return self._go_dead(SILENT, now, sound_at)
            return None
        # Dead: back once the source has given audio for resume_s with no gap, sound in at
        # least RESUME_LOUD of it (speech has short pauses).
        if not pcm:
            self._back_since = None
            self._recent.clear()
            return None
        if self._back_since is None:
            self._back_since = now
        self._recent.append((now, loud))
        while self._recent and self._recent[0][0] < now - self.resume_s:
            self._recent.popleft()
        if now - self._back_since < self.resume_s:
            return None
        if sum(1 for _, sound in self._recent if sound) < RESUME_LOUD * len(self._recent):
            return None
        reason = self.state
        self.state = ON_AIR
        self._last_sound = self._last_bytes = now
        self._back_since = None
        self._recent.clear()
        return DeadAirChange(False, reason, now, self._dead_since)

    def _go_dead(self, reason: str, now: float, since: float) -> DeadAirChange:
        self.state = reason
        self._dead_since = now
        self._back_since = None
        self._recent.clear()
        return DeadAirChange(True, reason, now, since)


# -- the fallback ----------------------------------------------------------------------------

class FallbackLoop:
    """The fallback's PCM in ticks, looped with a pause; ``rewind`` at each dead-air start so
    every episode begins with its start (the notice's first words, the filler's opening)."""

    def __init__(self, pcm: bytes, *, name: str, rate: int = FALLBACK_RATE,
                 pause_s: float = _LOOP_PAUSE_S):
        self.name = name  # what the play log names as the item: a media id, "notice", "chime"
        self._pcm = pcm + bytes(2 * int(pause_s * rate))
        self._pos = 0

    def rewind(self) -> None:
        self._pos = 0

    def take(self, samples: int) -> bytes:
        out = bytearray()
        while len(out) < 2 * samples:
            part = self._pcm[self._pos:self._pos + 2 * samples - len(out)]
            out += part
            self._pos = (self._pos + len(part)) % len(self._pcm)
        return bytes(out)


def _int16(signal: np.ndarray) -> bytes:
    return np.clip(np.round(signal * 32767), -32768, 32767).astype("<i2").tobytes()


def notice_pcm(rate: int = FALLBACK_RATE) -> tuple[bytes, str]:
    """(PCM, name): a chime then the Vietnamese notice, or the chime alone without a TTS."""
    chime = tones.chime(rate)
    try:
        with tempfile.TemporaryDirectory(prefix="loaxa-fallback-") as tmp:
            wav = Path(tmp) / "notice.wav"
            synthesize_to_file(NOTICE_VI, wav, voice="north")
            speech, _ = tones._decode_with_ffmpeg(wav, rate)
    except Exception as exc:  # no engine, no voice: a chime says "wait" without words
        log.warning("relay fallback: no TTS notice (%s); the chime alone", exc)
        return _int16(chime), "chime"
    chimed = tones._matched(chime, tones.speech_rms(speech, rate))
    pause = np.zeros(int(tones.PAUSE_S * rate), dtype=np.int16)
    joined = np.concatenate([chimed, pause, speech.astype(np.int16), pause])
    return joined.astype("<i2").tobytes(), "notice"


# -- telling the operator ---------------------------------------------------------------------

@dataclass
class DeadAirEvent:
    """What the operator is told: on which session and source, started or ended, why."""

    live_id: str
    url: str
    dead: bool
    reason: str       # STALLED | SILENT
    detail: str       # the source's own words, e.g. "Connection refused", "-72 dBFS"
    fallback: str     # what plays instead (a media id, "notice", "chime")
    at_ms: int        # wall clock, when it was decided
    devices: list[str] = field(default_factory=list)


_hooks: list[Callable[[DeadAirEvent], None]] = []


def dead_air_event(event: DeadAirEvent) -> None:
    """The one exit of dead-air events from the live service: logged, then given to every
    hook (``add_dead_air_hook``: the alert engine, tests). A failing hook is logged."""
    if event.dead:
        log.warning("dead air on relay %s (%s): %s, %s; fallback %s plays", event.live_id,
                    event.url, event.reason, event.detail, event.fallback)
    else:
        log.warning("relay %s (%s) is back after dead air (%s)", event.live_id, event.url,
                    event.reason)
    for hook in list(_hooks):
        try:
            hook(event)
        except Exception:
            log.exception("dead-air hook failed")


def add_dead_air_hook(hook: Callable[[DeadAirEvent], None]) -> Callable[[], None]:
    """Call ``hook(event)`` on every dead-air start and end; returns its removal."""
    _hooks.append(hook)
    return lambda: _hooks.remove(hook) if hook in _hooks else None
