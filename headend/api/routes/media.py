import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status

from headend.api.deps import MediaEditor, PublisherDep, Reader, SessionDep, SettingsDep
from headend.api.schemas import (
    MediaPublic,
    PinRequest,
    Prefetched,
    PrefetchRequest,
    RenditionPublic,
)
from headend.errors import Invalid
from headend.models import MediaItem
from headend.services import media, pinned
from headend.services.broadcasts import prefetch_media as prefetch

router = APIRouter(prefix="/media", tags=["media"])


def media_public(item: MediaItem) -> MediaPublic:
    return MediaPublic(id=item.id, title=item.title, filename=item.filename,
                       duration_s=item.duration_ms / 1000, created_at=item.created_at,
                       created_by=item.created_by, loudness_lufs=item.loudness_lufs,
                       warnings=item.warnings, pinned=bool(item.pinned),
                       renditions=[RenditionPublic.model_validate(r) for r in item.renditions])


def save_upload(upload: UploadFile, directory: Path, limit_bytes: int) -> Path:
    """Copy an upload to a temp file under ``directory``, refusing it past ``limit_bytes``."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = Path(upload.filename or "").suffix[:8]
    with tempfile.NamedTemporaryFile(dir=directory, suffix=suffix, delete=False) as out:
        written = 0
        while chunk := upload.file.read(1 << 20):
            written += len(chunk)
            if written > limit_bytes:
                out.close()
                Path(out.name).unlink(missing_ok=True)
                raise Invalid("too-large", "the file is larger than %d MB" % (limit_bytes >> 20),
                              "Tệp lớn hơn %d MB" % (limit_bytes >> 20))
            out.write(chunk)
    return Path(out.name)


@router.post("", response_model=MediaPublic, status_code=status.HTTP_201_CREATED)
def upload_media(session: SessionDep, settings: SettingsDep, user: MediaEditor,
                 file: Annotated[UploadFile, File(description="mp3, wav, m4a, ogg, amr, ...")],
                 title: Annotated[str | None, Form()] = None):
    """Upload a recording; it is converted into the renditions receivers play."""
    tmp = save_upload(file, settings.resolved_media_dir / "incoming",
                      settings.max_upload_mb << 20)
    try:
        item = media.ingest_media(session, settings=settings, src_path=tmp,
                                  filename=file.filename, title=title, actor=user)
    finally:
        tmp.unlink(missing_ok=True)
    return media_public(item)


@router.post("/{media_id}/prefetch", response_model=Prefetched,
             status_code=status.HTTP_202_ACCEPTED)
def prefetch_media(media_id: str, body: PrefetchRequest, session: SessionDep,
                   settings: SettingsDep, publisher: PublisherDep, user: MediaEditor):
    """Have receivers (default: all online) fetch this item into their cache now, so that a
    later broadcast of it, an emergency above all, starts at once and in step everywhere."""
    count = prefetch(session, settings=settings, publisher=publisher, media_id=media_id,
                     targets=body.targets, actor=user)
    return Prefetched(receivers=count)


@router.put("/{media_id}/pinned", response_model=Prefetched)
def pin_media(media_id: str, body: PinRequest, session: SessionDep, settings: SettingsDep,
              publisher: PublisherDep, user: MediaEditor):
    """Put this item in the site's pinned set (or take it out): every receiver keeps it in its
    cache ahead of need and never evicts it, from now on and at each reconnect. Answers how
    many online receivers were told now."""
    count = pinned.set_pinned(session, settings=settings, publisher=publisher,
                              media_id=media_id, pinned=body.pinned, actor=user)
    return Prefetched(receivers=count)


@router.get("", response_model=list[MediaPublic])
def list_media(session: SessionDep, _: Reader):
    return [media_public(m) for m in media.list_media(session)]


@router.get("/{media_id}", response_model=MediaPublic)
def get_media(media_id: str, session: SessionDep, _: Reader):
    return media_public(media.get_media(session, media_id=media_id))


