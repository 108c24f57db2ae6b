import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from headend.api.deps import MediaEditor, PublisherDep, Reader, SessionDep, SettingsDep
from headend.api.schemas import (
    MediaJobPublic,
    MediaPublic,
    PinRequest,
    Prefetched,
    PrefetchRequest,
    RenditionPublic,
)
from headend.errors import Invalid
from headend.models import MediaItem, User
from headend.services import media, media_jobs, pinned
from headend.services.broadcasts import prefetch_media as prefetch
from headend.settings import Settings

router = APIRouter(prefix="/media", tags=["media"])


def media_public(item: MediaItem) -> MediaPublic:
    return MediaPublic(id=item.id, title=item.title, filename=item.filename,
                       duration_s=item.duration_ms / 1000, created_at=item.created_at,
                       created_by=item.created_by, loudness_lufs=item.loudness_lufs,
                       warnings=item.warnings, warnings_vi=media.warnings_vi(item.warnings),
                       expires_at=item.expires_at,
                       pinned=bool(item.pinned),
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


def stash_upload(upload: UploadFile, settings: Settings) -> Path:
    """The upload saved under its own (cleaned) name, alone in a new folder under the media
    folder's ``incoming/``, so a refusal names the operator's file, not a temp name. The
    caller removes the folder."""
    incoming = settings.resolved_media_dir / "incoming"
    saved = save_upload(upload, incoming, settings.max_upload_mb << 20)
    folder = Path(tempfile.mkdtemp(dir=incoming))
    return saved.rename(folder / media.safe_name(upload.filename or "", saved.suffix))


@router.post("", response_model=MediaPublic, status_code=status.HTTP_201_CREATED)
def upload_media(session: SessionDep, settings: SettingsDep, user: MediaEditor,
                 file: Annotated[UploadFile, File(description="mp3, wav, m4a, ogg, amr, ...")],
                 title: Annotated[str | None, Form()] = None,
                 expires_at: Annotated[datetime | None, Form()] = None):
    """Upload a recording and wait for its conversion into the renditions receivers play
    (a short clip, a script). For a long recording use ``POST /media/uploads``, which answers
    at once with a job."""
    named = stash_upload(file, settings)
    try:
        item = media.ingest_media(session, settings=settings, src_path=named,
                                  filename=file.filename, title=title, actor=user, screen=True,
                                  expires_at=expires_at)
    finally:
        shutil.rmtree(named.parent, ignore_errors=True)
    return media_public(item)


def start_upload_job(request: Request, session, settings: Settings, user: User,
                     upload: UploadFile, title: str | None, expires_at: datetime | None = None):
    """Save ``upload`` and queue its conversion; Busy (503) when the queue is full."""
    jobs: media_jobs.MediaJobs = request.app.state.media_jobs
    media.check_expiry(expires_at)
    jobs.reserve()
    named = None
    try:
        named = stash_upload(upload, settings)
        return jobs.submit(session, src_path=named, filename=upload.filename,
                           title=(title or "").strip() or None, actor=user,
                           expires_at=expires_at)
    except BaseException:
        jobs.release()
        if named is not None:
            shutil.rmtree(named.parent, ignore_errors=True)
        raise


@router.post("/uploads", response_model=MediaJobPublic, status_code=status.HTTP_202_ACCEPTED,
             responses={503: {"description": "too many uploads waiting; Retry-After"}})
def upload_media_job(request: Request, response: Response, session: SessionDep,
                     settings: SettingsDep, user: MediaEditor,
                     file: Annotated[UploadFile, File(description="mp3, wav, m4a, ogg, amr, ...")],
                     title: Annotated[str | None, Form()] = None,
                     expires_at: Annotated[datetime | None, Form(
                         description="ISO time with its zone: not aired from then on")] = None):
    """Upload a recording; answers at once with a job (``queued``) whose conversion runs in
    the background: poll ``GET /media/jobs/{id}`` for its progress and its media item."""
    job = start_upload_job(request, session, settings, user, file, title, expires_at)
    response.headers["Location"] = "/api/v1/media/jobs/%s" % job.id
    return MediaJobPublic.model_validate(job)


@router.get("/jobs", response_model=list[MediaJobPublic])
def list_media_jobs(session: SessionDep, _: Reader):
    """The latest upload jobs, newest first."""
    return [MediaJobPublic.model_validate(j) for j in media_jobs.list_jobs(session)]


@router.get("/jobs/{job_id}", response_model=MediaJobPublic)
def get_media_job(job_id: str, session: SessionDep, _: Reader):
    return MediaJobPublic.model_validate(media_jobs.get_job(session, job_id=job_id))


@router.delete("/{media_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_media(media_id: str, session: SessionDep, settings: SettingsDep, user: MediaEditor):
    """Remove a recording nothing uses; 409 naming the programmes and broadcasts that do."""
    media.delete_media(session, settings=settings, media_id=media_id, actor=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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


