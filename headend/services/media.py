"""Media items: an upload becomes renditions (mp3 / IMA-ADPCM) the receivers fetch by hash."""

import functools
import hashlib
import secrets
import shutil
from dataclasses import replace
from datetime import datetime
from pathlib import Path, PurePath

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audio.probe import AudioRejected
from audio.renditions import make_renditions
from audio.settings import DEFAULT_SETTINGS, AudioSettings
from headend.errors import Conflict, Invalid, NotFound
from headend.models import Broadcast, MediaItem, Programme, Rendition, User, fit_text, utcnow
from headend.services import audit
from headend.settings import Settings

# Share of an upload's progress the screening decode takes (it decodes once, the conversion's
# three passes each read the whole recording).
SCREEN_SHARE = 0.1
ALLOWED_SUFFIXES = (".mp3", ".wav", ".m4a", ".aac", ".ogg", ".opus", ".oga", ".webm", ".amr",
                    ".flac", ".3gp", ".mp4")


def audio_settings(settings: Settings) -> AudioSettings:
    """The audio pipeline's settings with this head-end's upload limits (the limits are not
    part of the renditions' cache key)."""
    return replace(DEFAULT_SETTINGS, max_upload_bytes=settings.max_upload_mb << 20,
                   max_duration_s=settings.max_media_duration_min * 60.0)


def safe_name(filename: str, suffix: str = "") -> str:
    """The upload's own file name, without any directory part or control characters."""
    name = "".join(c for c in PurePath(filename.replace("\\", "/")).name if c.isprintable())
    return name.strip(" .")[:120] or "upload" + suffix


def ingest_media(session: Session, *, settings: Settings, src_path: Path, filename: str | None,
                 title: str | None = None, actor: User | str | None = None,
                 screen: bool = False, progress=None,
                 expires_at: datetime | None = None) -> MediaItem:
    """Convert an uploaded recording into renditions and register it.

    Raises Invalid("not-audio"/...) with the audio package's reason for a file that is not
    usable audio. ``screen`` (an operator's upload) also refuses digital silence and a
    recording under a second, and takes one channel of out-of-phase stereo
    (``audio.screen``). ``progress(fraction, stage)`` follows the conversion. ``expires_at``:
    no broadcast of it starts from then on (``check_not_expired``).
    """
    check_expiry(expires_at)
    src_path = Path(src_path)
    if src_path.stat().st_size == 0:
        raise Invalid("empty-file", "the file is empty", "Tệp rỗng")
    limits = audio_settings(settings)
    extra_warnings: list[str] = []
    downmix = None
    try:
        if screen:
            from audio.screen import screen as screen_audio

            screened = screen_audio(src_path, limits, progress=progress and (
                lambda fraction: progress(SCREEN_SHARE * fraction, "screen")))
            extra_warnings = list(screened.warnings)
            downmix = "left" if screened.out_of_phase else None
        made = make_renditions(str(src_path), str(settings.resolved_media_dir),
                               codecs=tuple(settings.media_codecs), settings=limits,
                               downmix=downmix, progress=progress and (
                                   lambda fraction, stage: progress(
                                       SCREEN_SHARE + (1 - SCREEN_SHARE) * fraction
                                       if screen else fraction, stage)))
    except AudioRejected as exc:
        raise Invalid(exc.reason, exc.message, exc.message_vi) from None
    filename = fit_text(filename, 300) if filename else filename
    media = MediaItem(id="m%s" % secrets.token_hex(6),
                      title=fit_text((title or Path(filename or "").stem or "Bản tin").strip(), 300),
                      filename=filename, duration_ms=int(made.duration_ms),
                      source_sha256=made.source_sha256,
                      loudness_lufs=made.loudness_after,
                      warnings=extra_warnings + list(made.warnings) or None,
                      created_by=actor.username if isinstance(actor, User) else actor,
                      expires_at=expires_at)
    for codec, rendition in made.renditions.items():
        media.renditions.append(Rendition(
            codec=codec, ext=codec, sha256=rendition.sha256, size=int(rendition.size),
            duration_ms=int(rendition.duration_ms), rate=int(rendition.rate),
            path=str(Path(rendition.path).resolve())))
    session.add(media)
    audit.record(session, actor=actor, action="media.upload", target=media.id,
                 detail={"filename": filename, "duration_ms": media.duration_ms})
    session.commit()
    return media


def get_media(session: Session, *, media_id: str) -> MediaItem:
    media = session.get(MediaItem, media_id)
    if media is None:
        raise NotFound("unknown-media", "unknown media item %r" % media_id,
                       "Không có bản tin %r" % media_id)
    return media


def list_media(session: Session, *, limit: int = 200) -> list[MediaItem]:
    return list(session.scalars(select(MediaItem).order_by(MediaItem.created_at.desc())
                                .limit(limit)))


def rendition_file(session: Session, *, sha256: str, ext: str) -> Path | None:
    """Where the rendition a receiver asks for by hash is stored, or None."""
    path = session.scalar(select(Rendition.path).where(Rendition.sha256 == sha256,
                                                       Rendition.ext == ext).limit(1))
    return Path(path) if path else None


def find_by_source(session: Session, source_sha256: str) -> MediaItem | None:
    """The oldest item made from the same source bytes, if any (a duplicate upload)."""
    return session.scalar(select(MediaItem).where(MediaItem.source_sha256 == source_sha256)
                          .order_by(MediaItem.created_at).limit(1))


ALERT_TONE_RATE = 22050


@functools.cache
def alert_tone_source_sha() -> str:
    """The SHA-256 of the alert tone's WAV (audio.tones), what its media item is found by."""
    from audio.tones import alert_tone_wav

    return hashlib.sha256(alert_tone_wav(ALERT_TONE_RATE)).hexdigest()


def alert_tone_media(session: Session) -> MediaItem | None:
    """The site's alert tone if it is pinned (``loaxa headend alert-tone``; the demo's)."""
    return session.scalar(select(MediaItem).where(
        MediaItem.source_sha256 == alert_tone_source_sha(), MediaItem.pinned.is_(True))
        .order_by(MediaItem.created_at).limit(1))


def usage(session: Session, media_ids: list[str] | None = None) -> dict[str, dict[str, list]]:
    """``{media_id: {"broadcasts": [Broadcast], "programmes": [Programme]}}`` for the items
    that any broadcast or programme segment uses (all of them, or ``media_ids``)."""
    used: dict[str, dict[str, list]] = {}
    query = select(Broadcast).order_by(Broadcast.start_at.desc())
    if media_ids is not None:
        query = query.where(Broadcast.media_id.in_(media_ids))
    for broadcast in session.scalars(query):
        used.setdefault(broadcast.media_id, {"broadcasts": [], "programmes": []})[
            "broadcasts"].append(broadcast)
    for programme in session.scalars(select(Programme)):
        for media_id in {seg.get("media_id") for seg in programme.segments or []
                         if isinstance(seg, dict) and seg.get("media_id")}:
            if media_ids is None or media_id in media_ids:
                used.setdefault(media_id, {"broadcasts": [], "programmes": []})[
                    "programmes"].append(programme)
    return used


def delete_media(session: Session, *, settings: Settings, media_id: str,
                 actor: User | str | None = None) -> None:
    """Remove an item nothing uses; its rendition files go unless another item shares them.
    Conflict("media-in-use") names the programmes and broadcasts that use it."""
    media = get_media(session, media_id=media_id)
    uses = usage(session, [media_id]).get(media_id)
    if uses:
        programmes = ", ".join("«%s»" % p.title for p in uses["programmes"][:5])
        count = len(uses["broadcasts"])
        raise Conflict(
            "media-in-use",
            "%s is used by %s%d broadcast(s): it cannot be deleted"
            % (media.title, ("programme(s) %s and " % programmes) if programmes else "", count),
            "Bản tin «%s» đang được dùng trong %s%d lượt phát: không xoá được"
            % (media.title, ("chương trình %s và " % programmes) if programmes else "", count))
    folders = {Path(r.path).parent for r in media.renditions}
    session.delete(media)
    audit.record(session, actor=actor, action="media.delete", target=media_id,
                 detail={"title": media.title, "filename": media.filename})
    session.commit()
    cache = settings.resolved_media_dir.resolve()
    for folder in folders:
        shared = session.scalar(select(func.count()).select_from(Rendition).where(
            Rendition.path.startswith(str(folder) + "/")))
        # A rendition set is one folder (audio.renditions): it goes whole, or it stays for
        # another item made from the same sound.
        if not shared and folder.resolve().is_relative_to(cache) and folder.resolve() != cache:
            shutil.rmtree(folder, ignore_errors=True)


def check_expiry(expires_at: datetime | None) -> None:
    """An expiry given with an upload: with its time zone, and not already past."""
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise Invalid("naive-time", "expires_at needs a time zone (e.g. +07:00 or Z)",
                      "Thời điểm hết hạn cần có múi giờ (ví dụ +07:00 hoặc Z)")
    if expires_at <= utcnow():
        raise Invalid("expiry-past", "the expiry is already past",
                      "Ngày hết hạn đã qua")


def check_not_expired(media: MediaItem, at: datetime | None = None) -> None:
    """Invalid("media-expired") for a broadcast of ``media`` starting at ``at`` (None: now)
    at or after its expiry."""
    at = at or utcnow()
    if media.expires_at is not None and at >= media.expires_at:
        raise Invalid("media-expired",
                      "%s expired on %s UTC: it is no longer aired"
                      % (media.title, media.expires_at.strftime("%Y-%m-%d %H:%M")),
                      "Bản tin «%s» đã hết hạn từ %s (UTC), không được phát nữa"
                      % (media.title, media.expires_at.strftime("%H:%M %d/%m/%Y")))


def warning_key(warning: str) -> str:
    """``"clipped: 1.2% of..."`` -> ``"clipped"``: the catalog's ``mwarn.<key>`` says it in
    Vietnamese (the stored text is the pipeline's English, with its figures)."""
    return warning.split(":", 1)[0].strip()


def warnings_vi(warnings: list[str] | None) -> list[str] | None:
    """The pipeline's warnings in Vietnamese (an unknown one as it is)."""
    if not warnings:
        return None
    from headend.i18n import translator

    vi = translator("vi")
    return [vi.maybe("mwarn", warning_key(w), w) for w in warnings]
