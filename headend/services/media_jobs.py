"""Upload jobs of the content library: an upload answers at once, its conversion runs here.

An hour-long recording takes tens of seconds to screen and convert (``audio.screen`` then
``audio.renditions``: four decodes of the whole file), longer than a page or a phone on 4G
should wait on one request. ``POST /api/v1/media/uploads`` saves the file, makes a job
(``queued``) and answers 202; one of ``media_job_workers`` threads runs it (``running``,
``progress`` 0-100 from ffmpeg's own clock) to ``done`` (``media_id``; ``duplicate`` when the
same sound was already in the library, which answers that item) or ``failed`` (``reason`` and
the refusal in English and Vietnamese, naming the uploaded file). At most ``media_job_queue``
jobs wait beyond the running ones: past that an upload is refused (503, "try again in a
minute") before it is saved.

A job lives in the database, so a page polling it sees the same answer whatever worker
answers; a head-end that stops mid-job cannot finish it, so at start every job still queued
or running is failed ("head-end restarted") and its files (the upload, a half-built rendition
set) removed: no job stays "running" forever.
"""

import logging
import queue
import secrets
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio.renditions import sha256_file
from headend.db import session_scope
from headend.errors import Busy, NotFound, ServiceError
from headend.models import MediaJob, User, fit_text, utcnow
from headend.services import media
from headend.settings import Settings

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
UNFINISHED = (QUEUED, RUNNING)
# The database is written at most this often while a job runs (and at every whole step of
# progress it passes, whichever is rarer).
PROGRESS_EVERY_S = 0.5
RESTARTED = ("restarted", "the head-end restarted while this upload was being converted; "
             "upload it again",
             "Máy chủ đã khởi động lại khi đang xử lý tệp này; hãy tải tệp lên lại")


class MediaJobs:
    """The bounded worker pool; one per application (``app.state.media_jobs``)."""

    def __init__(self, *, settings: Settings, session_factory: sessionmaker[Session]):
        self.settings = settings
        self.session_factory = session_factory
        self.workers = max(1, settings.media_job_workers)
        self.limit = self.workers + max(0, settings.media_job_queue)
        # Daemon threads, not an executor's: a head-end told to stop does not wait for an
        # hour's conversion to end (the job is failed at the next start, as after a crash).
        self._queue: queue.Queue[tuple[str, str | None] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._pending = 0

    # -- taking work ----------------------------------------------------------------------

    def reserve(self) -> None:
        """Claim a place for one more job, or Busy: call before saving the upload."""
        with self._lock:
            if self._pending >= self.limit:
                raise Busy("busy", "%d uploads are already being converted or waiting; try "
                           "again in a minute" % self._pending,
                           "Đang xử lý %d tệp tải lên; hãy thử lại sau một phút"
                           % self._pending)
            self._pending += 1

    def release(self) -> None:
        with self._lock:
            self._pending -= 1

    def submit(self, session: Session, *, src_path: Path, filename: str | None,
               title: str | None, actor: User | str | None,
               expires_at: datetime | None = None) -> MediaJob:
        """Queue the saved upload ``src_path`` (alone in its folder, which the job removes)
        after ``reserve()``; answers the job, committed."""
        media.check_expiry(expires_at)
        job = MediaJob(id="j%s" % secrets.token_hex(6), state=QUEUED, progress=0,
                       filename=fit_text(filename, 300) if filename else None,
                       title=fit_text(title, 300) if title else None,
                       src_path=str(src_path), expires_at=expires_at,
                       created_by=actor.username if isinstance(actor, User) else actor)
        session.add(job)
        session.commit()
        with self._lock:
            if len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name="media-job-%d" % (len(self._threads) + 1))
                self._threads.append(thread)
                thread.start()
        self._queue.put((job.id, actor.username if isinstance(actor, User) else actor))
        return job

    @property
    def pending(self) -> int:
        return self._pending

    def stop(self) -> None:
        """The application stops: each worker ends once the jobs queued before now are done,
        unless the process ends first (daemon threads: it does not wait for them; the next
        start fails those jobs). A later upload (the same application started again, as
        tests do) starts new workers."""
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)
            self._threads = []

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            self._run(*task)

    # -- doing it -------------------------------------------------------------------------

    def _run(self, job_id: str, actor: str | None) -> None:
        try:
            with session_scope(self.session_factory) as session:
                job = session.get(MediaJob, job_id)
                if job is None or job.state != QUEUED:
                    return
                job.state, job.started_at = RUNNING, utcnow()
                session.commit()
                try:
                    item = self._convert(session, job, actor)
                except ServiceError as exc:
                    session.rollback()
                    _fail(job, exc.code, exc.message, exc.message_vi)
                except Exception as exc:  # an ffmpeg crash, a full disk: say so, keep going
                    log.exception("upload job %s failed", job_id)
                    session.rollback()
                    _fail(job, "conversion-failed",
                          "the conversion failed: %s" % str(exc)[:300],
                          "Chuyển đổi tệp bị lỗi: %s" % str(exc)[:300])
                else:
                    job.state, job.progress, job.stage = DONE, 100, None
                    job.media_id, job.finished_at = item.id, utcnow()
                finally:
                    _remove_upload(job)
                session.commit()
        finally:
            self.release()

    def _convert(self, session: Session, job: MediaJob, actor: str | None):
        src = Path(job.src_path or "")
        duplicate = media.find_by_source(session, sha256_file(src))
        if duplicate is not None:
            job.duplicate = True
            return duplicate
        last = [0.0]

        def progress(fraction: float, stage: str) -> None:
            percent = min(99, int(fraction * 100))
            now = time.monotonic()
            if stage != job.stage or (percent > job.progress
                                      and now - last[0] >= PROGRESS_EVERY_S):
                last[0] = now
                job.progress, job.stage = max(job.progress, percent), stage
                session.commit()

        return media.ingest_media(session, settings=self.settings, src_path=src,
                                  filename=job.filename, title=job.title, actor=actor,
                                  screen=True, progress=progress, expires_at=job.expires_at)


def _fail(job: MediaJob, reason: str, message: str, message_vi: str) -> None:
    job.state, job.reason, job.finished_at = FAILED, reason, utcnow()
    job.message, job.message_vi = message, message_vi


def _remove_upload(job: MediaJob) -> None:
    if job.src_path:
        shutil.rmtree(Path(job.src_path).parent, ignore_errors=True)
        job.src_path = None


def get_job(session: Session, *, job_id: str) -> MediaJob:
    job = session.get(MediaJob, job_id)
    if job is None:
        raise NotFound("unknown-job", "unknown upload job %r" % job_id,
                       "Không có lượt tải lên %r" % job_id)
    return job


def list_jobs(session: Session, *, limit: int = 20) -> list[MediaJob]:
    return list(session.scalars(select(MediaJob).order_by(MediaJob.created_at.desc())
                                .limit(limit)))


def fail_interrupted(session: Session, settings: Settings) -> int:
    """At start: every job a previous run left queued or running is failed ("restarted"),
    its upload and any half-built rendition set and work file removed. Answers how many."""
    jobs = list(session.scalars(select(MediaJob).where(MediaJob.state.in_(UNFINISHED))))
    for job in jobs:
        _fail(job, *RESTARTED)
        _remove_upload(job)
    session.commit()
    if jobs:
        # audio.renditions builds a set in ".building-*" (its raw work file in ".work-*") and
        # renames it when complete: one left behind is what the interrupted conversion wrote.
        for pattern in (".building-*", ".work-*"):
            for partial in settings.resolved_media_dir.glob(pattern):
                shutil.rmtree(partial, ignore_errors=True)
    return len(jobs)
