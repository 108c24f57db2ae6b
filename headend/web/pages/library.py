"""Thư viện bản tin: the recordings the station holds, an upload that answers at once and
shows its conversion's progress, and deleting what nothing uses.

The upload form posts to ``/library/uploads``, which saves the file, queues its job
(headend/services/media_jobs.py, the same as ``POST /api/v1/media/uploads``) and sends the
browser back to ``/library?job=<id>``: the job's panel refreshes itself (loaxa.js's
``data-refresh``, the fragment ``/library/jobs/<id>?fragment=1``) until it is done or refused.
Without JavaScript the panel says to reload the page.
"""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile, status
from fastapi.responses import RedirectResponse

from headend.api.deps import SessionDep, SettingsDep
from headend.api.routes.media import start_upload_job
from headend.errors import Invalid, ServiceError
from headend.models import User
from headend.services import media, media_jobs
from headend.web.csrf import CsrfChecked
from headend.web.guard import PageRoute, PageUser, allowed
from headend.web.pages.playlog import _day as expiry_day
from headend.web.rendering import error_text, render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

MediaUser = Annotated[User, Depends(allowed("media"))]
JOB_REFRESH_S = 1
ONE_SECOND = timedelta(seconds=1)  # an expiry at local midnight shows the day before it


def _page(request: Request, session, *, job_id: str = "", error: str | None = None,
          form: dict[str, str] | None = None, status_code: int = 200):
    items = media.list_media(session)
    used = media.usage(session, [m.id for m in items])
    rows: list[dict[str, Any]] = [{"m": m, "used": used.get(m.id)} for m in items]
    job = None
    if job_id:
        try:
            job = media_jobs.get_job(session, job_id=job_id)
        except ServiceError:
            job = None
    return render(request, "library.html", {
        "rows": rows, "job": job, "error": error, "form": form or {"title": "", "expires": ""},
        "every": JOB_REFRESH_S, "warning_key": media.warning_key, "one_second": ONE_SECOND,
        "jobs": [j for j in media_jobs.list_jobs(session, limit=5) if j is not job]},
        status_code=status_code)


@router.get("/library")
def library_page(request: Request, session: SessionDep, _user: PageUser, job: str = ""):
    return _page(request, session, job_id=job)


@router.post("/library/uploads")
def library_upload(request: Request, session: SessionDep, settings: SettingsDep,
                   user: MediaUser, _: CsrfChecked,
                   file: Annotated[UploadFile | None, File()] = None,
                   title: Annotated[str, Form()] = "", expires: Annotated[str, Form()] = ""):
    """Queue the upload's conversion and show its progress; a refusal before the job (no
    file, the queue full, too large) shows on the page with the title kept."""
    try:
        if file is None or not file.filename:
            raise Invalid("missing-file", "choose the recording to upload",
                          "Hãy chọn tệp ghi âm để tải lên")
        # The bulletin airs until the end of the chosen local day.
        job = start_upload_job(request, session, settings, user, file, title,
                               expiry_day(expires.strip(), settings, next_day=True))
    except ServiceError as exc:
        session.rollback()
        return _page(request, session, error=error_text(translator_of(request), exc),
                     form={"title": title, "expires": expires}, status_code=exc.status)
    return RedirectResponse("/library?job=%s" % job.id, status.HTTP_303_SEE_OTHER)


@router.get("/library/jobs/{job_id}")
def library_job(request: Request, session: SessionDep, _user: PageUser, job_id: str):
    """One job's panel (the fragment the page refreshes)."""
    job = media_jobs.get_job(session, job_id=job_id)
    return render(request, "_media_job.html", {"job": job, "every": JOB_REFRESH_S})


@router.post("/library/{media_id}/delete")
def library_delete(request: Request, session: SessionDep, settings: SettingsDep,
                   user: MediaUser, _: CsrfChecked, media_id: str):
    try:
        media.delete_media(session, settings=settings, media_id=media_id, actor=user)
    except ServiceError as exc:
        session.rollback()
        return _page(request, session, error=error_text(translator_of(request), exc),
                     status_code=exc.status)
    return RedirectResponse("/library", status.HTTP_303_SEE_OTHER)
