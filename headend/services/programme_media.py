"""A programme's segments joined into one media item, the way an upload becomes one.

Recordings are used as they are (their mp3 rendition, already loudness-normalised), texts are
spoken by the TTS (``audio.tts.synthesize_to_file``), chimes come from ``audio.tones``; the
parts are joined with the bulletin's short pause between them into one WAV, which goes through
``headend.services.media.ingest_media`` like any upload (normalised, encoded per codec). The
result is kept by the hash of the segments' content, so the same programme is built once and
a daily programme does not fill the disk.
"""

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from audio import tones
from audio.tts import TtsError, synthesize_to_file
from headend.errors import Invalid
from headend.models import MediaItem, ProgrammeMedia
from headend.services.media import get_media, ingest_media
from headend.settings import Settings

# Raise when the way segments are joined changes: old joined items are then built again.
JOIN_VERSION = 1
JOIN_RATE = 16000  # the renditions' rate (audio/settings.py): no resampling of recordings
CHIME_S = sum(tones.CHIME_NOTE_S)
# A rough speaking pace of the Vietnamese TTS at normal speed, for the guard rails' durations
# before a text was ever spoken (once built, the real duration is used).
TTS_CHARS_PER_S = 12.0
VOICES = ("north", "central", "south")


def content_sha256(session: Session, segments: list[dict[str, Any]]) -> str:
    """The hash of what the segments sound like: a recording by its source's hash (so the
    same upload under another id is the same content), a text with its voice, a chime."""
    parts: list[Any] = [JOIN_VERSION]
    for segment in segments:
        if "media_id" in segment:
            media = get_media(session, media_id=segment["media_id"])
            parts.append({"media": media.source_sha256 or media.id})
        else:
            parts.append(segment)
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False)
                          .encode()).hexdigest()


def cached_media(session: Session, segments: list[dict[str, Any]]) -> MediaItem | None:
    row = session.get(ProgrammeMedia, content_sha256(session, segments))
    return session.get(MediaItem, row.media_id) if row is not None else None


def recorded(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The segments joined into the programme's media: all but its relay."""
    return [s for s in segments if "relay" not in s]


def relay_of(segments: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The programme's relay of a stream ({"url", "seconds"}; its last segment), if any."""
    return next((s["relay"] for s in segments if "relay" in s), None)


def relay_offset_ms(recorded_ms: int | None) -> int:
    """When the relay starts after the occurrence's start: after the recorded part (None:
    there is none) and the pause that separates segments."""
    return 0 if recorded_ms is None else recorded_ms + int(tones.PAUSE_S * 1000)


def estimated_duration_ms(session: Session, segments: list[dict[str, Any]]) -> int:
    """How long the programme airs: its joined media (exact once built, else from the
    recordings' durations, the chimes' and a speaking-pace estimate of the texts), then its
    relay's window."""
    relay, segments = relay_of(segments), recorded(segments)
    recorded_ms = _joined_ms(session, segments) if segments else None
    if relay is None:
        return recorded_ms or 0
    return relay_offset_ms(recorded_ms) + relay["seconds"] * 1000


def _joined_ms(session: Session, segments: list[dict[str, Any]]) -> int:
    built = cached_media(session, segments)
    if built is not None:
        return built.duration_ms
    total_s = tones.PAUSE_S * max(0, len(segments) - 1)
    for segment in segments:
        if "media_id" in segment:
            total_s += get_media(session, media_id=segment["media_id"]).duration_ms / 1000
        elif "text" in segment:
            total_s += 0.5 + len(segment["text"]) / TTS_CHARS_PER_S
        else:
            total_s += CHIME_S
    return int(total_s * 1000)


def _recording(session: Session, media_id: str) -> np.ndarray:
    media = get_media(session, media_id=media_id)
    mp3 = [r for r in media.renditions if r.codec == "mp3"]
    if not mp3:
        raise Invalid("no-mp3-rendition", "media %s has no mp3 rendition to join" % media_id,
                      "Bản tin %s không có bản mp3 để ghép" % media_id)
    # The tones module's one ffmpeg decoder, at the renditions' rate.
    samples, _rate = tones._decode_with_ffmpeg(mp3[0].path, JOIN_RATE)
    return samples


def _speech(text: str, voice: str, work: Path, index: int) -> np.ndarray:
    wav = work / ("speech-%d.wav" % index)
    try:
        synthesize_to_file(text, wav, voice=voice)
    except TtsError as exc:
        raise Invalid("tts-failed", "text segment %d could not be spoken: %s" % (index + 1, exc),
                      "Không đọc được đoạn văn bản thứ %d: %s" % (index + 1, exc)) from None
    samples, _rate = tones._decode_with_ffmpeg(wav, JOIN_RATE)
    return samples


def build_media(session: Session, *, settings: Settings, segments: list[dict[str, Any]],
                title: str, actor: str) -> MediaItem:
    """The media item that plays ``segments`` one after the other (built once per content;
    a relay is not part of it)."""
    segments = recorded(segments)
    digest = content_sha256(session, segments)
    built = session.get(ProgrammeMedia, digest)
    if built is not None and session.get(MediaItem, built.media_id) is not None:
        return session.get(MediaItem, built.media_id)
    with tempfile.TemporaryDirectory(prefix="loaxa-programme-") as tmp:
        work = Path(tmp)
        parts: list[np.ndarray] = []
        chimes: list[int] = []
        for index, segment in enumerate(segments):
            if "media_id" in segment:
                parts.append(_recording(session, segment["media_id"]))
            elif "text" in segment:
                parts.append(_speech(segment["text"], segment.get("voice", "north"), work,
                                     index))
            else:
                chimes.append(len(parts))
                parts.append(np.zeros(0, dtype=np.int16))  # filled in below
        # A chime as loud as the speech around it, as the bulletin's dressing does, so the
        # loudness normalisation after treats them alike.
        spoken = [p for p in parts if len(p)]
        level = tones.speech_rms(np.concatenate(spoken), JOIN_RATE) if spoken else 0.0
        for index in chimes:
            parts[index] = tones._matched(tones.chime(JOIN_RATE), level)
        pause = np.zeros(int(tones.PAUSE_S * JOIN_RATE), dtype=np.int16)
        joined: list[np.ndarray] = []
        for part in parts:
            if joined:
                joined.append(pause)
            joined.append(part)
        wav = tones.write_wav(work / "programme.wav", np.concatenate(joined), JOIN_RATE)
        # The joined item expires with the first of its recordings to expire.
        expiries = [get_media(session, media_id=s["media_id"]).expires_at
                    for s in segments if "media_id" in s]
        media = ingest_media(session, settings=settings, src_path=wav,
                             filename="%s.wav" % digest[:12], title=title, actor=actor)
        media.expires_at = min((e for e in expiries if e is not None), default=None)
    if built is not None:  # its media item was deleted
        session.delete(built)
        session.flush()
    session.add(ProgrammeMedia(content_sha256=digest, media_id=media.id))
    session.commit()
    return media
