"""Media items: an upload becomes renditions (mp3 / IMA-ADPCM) the receivers fetch by hash."""

import secrets
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio.probe import AudioRejected
from audio.renditions import make_renditions
from headend.errors import Invalid, NotFound
from headend.models import MediaItem, Rendition, User, fit_text
from headend.services import audit
from headend.settings import Settings

ALLOWED_SUFFIXES = (".mp3", ".wav", ".m4a", ".aac", ".ogg", ".opus", ".oga", ".webm", ".amr",
                    ".flac", ".3gp", ".mp4")


def ingest_media(session: Session, *, settings: Settings, src_path: Path, filename: str | None,
                 title: str | None = None, actor: User | str | None = None) -> MediaItem:
    """Convert an uploaded recording into renditions and register it.

    Raises Invalid("not-audio"/...) with the audio package's reason for a file that is not
    usable audio.
    """
    src_path = Path(src_path)
    if src_path.stat().st_size == 0:
        raise Invalid("empty-file", "the file is empty", "Tệp rỗng")
    try:
        made = make_renditions(str(src_path), str(settings.resolved_media_dir),
                               codecs=tuple(settings.media_codecs))
    except AudioRejected as exc:
        raise Invalid(exc.reason, exc.message, exc.message_vi) from None
    filename = fit_text(filename, 300) if filename else filename
    media = MediaItem(id="m%s" % secrets.token_hex(6),
                      title=fit_text((title or Path(filename or "").stem or "Bản tin").strip(), 300),
                      filename=filename, duration_ms=int(made.duration_ms),
                      source_sha256=made.source_sha256,
                      loudness_lufs=made.loudness_after, warnings=list(made.warnings) or None,
                      created_by=actor.username if isinstance(actor, User) else actor)
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
