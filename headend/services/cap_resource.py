"""A CAP alert's attached audio ``resource``, used instead of the speech engine when valid.

The first resource of the read-aloud info whose ``mimeType`` is audio and that carries the
file (``derefUri``, digest-checked by the parser) or names it (an http(s) ``uri``, fetched
within the size limit and the timeout, its SHA-1 ``digest`` checked when given) is probed
(audio.probe: real ffmpeg; not audio, truncated, too long are refused), dressed with the alert
tone like the spoken text, and registered as media with the usual renditions
(headend/services/media.py). Anything wrong is a ResourceUnusable with a reason: the caller
falls back to the speech engine and logs why.
"""

import logging
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from audio.probe import AudioRejected, probe
from headend.cap.parse import Info, Resource
from headend.errors import ServiceError
from headend.models import MediaItem, User
from headend.services import audit, media
from headend.services.cap_http import FetchError, http_get
from headend.settings import Settings

log = logging.getLogger(__name__)

# The file name's suffix the probe and ffmpeg see, by mimeType (anything else audio/*: .bin,
# which ffmpeg still reads by its content).
AUDIO_SUFFIXES = {"audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/wav": ".wav",
                  "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/vnd.wave": ".wav",
                  "audio/ogg": ".ogg", "audio/opus": ".opus", "audio/mp4": ".m4a",
                  "audio/aac": ".aac", "audio/amr": ".amr", "audio/flac": ".flac",
                  "audio/webm": ".webm", "audio/3gpp": ".3gp"}


class ResourceUnusable(Exception):
    """Why the attached audio cannot be aired: ``reason`` a code, ``detail`` for the log."""

    def __init__(self, reason: str, detail: str):
        super().__init__("%s: %s" % (reason, detail))
        self.reason = reason
        self.detail = detail


def _mime(resource: Resource) -> str:
    return resource.mime_type.split(";")[0].strip().lower()


def audio_resource(info: Info | None) -> Resource | None:
    """The info's first audio resource that carries or names its file, else None."""
    for resource in info.resources if info is not None else ():
        if _mime(resource).startswith("audio/") and (resource.content is not None
                                                     or resource.uri):
            return resource
    return None


def resource_bytes(resource: Resource, *, settings: Settings) -> bytes:
    """The file: carried in the message, or fetched from its uri. Raises ResourceUnusable."""
    limit = settings.cap_resource_max_bytes
    if resource.content is not None:
        data = resource.content
    else:
        try:
            data = http_get(resource.uri, limit=limit,
                            timeout_s=settings.cap_fetch_timeout_s).body
        except FetchError as error:
            raise ResourceUnusable("fetch-failed", "%s: %s" % (resource.uri[:200], error.reason)
                                   ) from None
    if len(data) > limit:
        raise ResourceUnusable("too-large", "%d bytes, at most %d" % (len(data), limit))
    if not data:
        raise ResourceUnusable("empty", "the resource is empty")
    if resource.digest is not None and not resource.matches_digest(data):
        raise ResourceUnusable("digest-mismatch", "its SHA-1 is not the <digest> %s"
                               % resource.digest[:64])
    return data


def resource_media(session: Session, *, settings: Settings, resource: Resource, title: str,
                   actor: User | str) -> MediaItem:
    """The alert tone then the resource's audio, registered as media. Raises ResourceUnusable."""
    from audio.tones import dress

    data = resource_bytes(resource, settings=settings)
    incoming = settings.resolved_media_dir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=incoming))
    try:
        path = folder / ("resource" + AUDIO_SUFFIXES.get(_mime(resource), ".bin"))
        path.write_bytes(data)
        try:
            probe(path)
            dressed = dress(path, folder / "canh-bao.wav", kind="emergency")
        except AudioRejected as exc:
            raise ResourceUnusable(exc.reason, exc.message) from None
        except ValueError as exc:  # ffmpeg could not decode it after all
            raise ResourceUnusable("not-audio", str(exc)[:200]) from None
        try:
            return media.ingest_media(session, settings=settings, src_path=dressed,
                                      filename=None, title=title, actor=actor)
        except ServiceError as exc:
            raise ResourceUnusable(exc.code, exc.message) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def media_for(session: Session, *, settings: Settings, info: Info | None, title: str,
              actor: User | str, target: str) -> str | None:
    """The media id made from ``info``'s audio resource, or None (no resource, or unusable:
    logged and audited with the reason, so the speech engine reads the text instead)."""
    resource = audio_resource(info)
    if resource is None:
        return None
    try:
        item = resource_media(session, settings=settings, resource=resource, title=title,
                              actor=actor)
    except Exception as error:  # whatever it was, the alert still airs, read aloud
        session.rollback()
        exc = error if isinstance(error, ResourceUnusable) else ResourceUnusable(
            "error", "%s: %s" % (type(error).__name__, str(error)[:200]))
        log.warning("CAP alert %s: attached audio not used, the text is read instead (%s: %s)",
                    target, exc.reason, exc.detail)
        audit.record(session, actor=actor, action="cap.resource-unused", target=target,
                     detail={"reason": exc.reason, "detail": exc.detail[:300],
                             "uri": (resource.uri or "")[:300] or None})
        session.commit()
        return None
    audit.record(session, actor=actor, action="cap.resource-used", target=target,
                 detail={"media_id": item.id, "uri": (resource.uri or "")[:300] or None})
    session.commit()
    return item.id
