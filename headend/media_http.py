"""Renditions for receivers: GET /media/{sha256}.{ext}, with HTTP Range requests.

Public by unguessable name: the path is the SHA-256 of the rendition's content, which only a
signed ``play``/``fetch`` command tells a receiver (and the receiver checks the hash after the
download). No login, so a receiver on a pole needs no second credential; media is not secret
(it is played on loudspeakers), but it cannot be listed or guessed.
"""

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse

from headend.services.media import rendition_file

router = APIRouter(tags=["media files"])

_SHA = re.compile(r"^[0-9a-f]{64}$")
MEDIA_TYPES = {"mp3": "audio/mpeg", "adpcm": "application/octet-stream"}

# Where the file of a rendition (sha256, ext) is, or None.
RenditionLookup = Callable[[str, str], Path | None]


def stored_renditions(request: Request) -> RenditionLookup:
    """The head-end's lookup: renditions its database knows. An app that serves media from
    elsewhere (the simulator's, simulator/media.py) overrides this dependency."""
    factory = request.app.state.session_factory
    return lambda sha, ext: _lookup(factory, sha, ext)


RenditionLookupDep = Annotated[RenditionLookup, Depends(stored_renditions)]


@router.get("/media/{sha}.{ext}")
@router.head("/media/{sha}.{ext}", include_in_schema=False)
def get_rendition(sha: str, ext: str, find: RenditionLookupDep):
    if not _SHA.match(sha) or ext not in MEDIA_TYPES:
        raise HTTPException(404, "no such media")
    path = find(sha, ext)
    if path is None or not path.exists():
        raise HTTPException(404, "no such media")
    # FileResponse answers Range requests (206 Partial Content), so a receiver resumes an
    # interrupted download on a flaky 4G link instead of starting over.
    return FileResponse(path, media_type=MEDIA_TYPES[ext],
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


@lru_cache(maxsize=4096)
def _cached_lookup(factory, sha: str, ext: str):
    with factory() as session:
        return rendition_file(session, sha256=sha, ext=ext)


def _lookup(factory, sha: str, ext: str):
    """Where a rendition is: looked up once, then from memory. An emergency makes every
    receiver fetch the same file at once; the database session is not held while a file is
    streamed, so a thousand downloads do not exhaust the connection pool."""
    path = _cached_lookup(factory, sha, ext)
    if path is None:
        _cached_lookup.cache_clear()  # a miss is not remembered: the upload may be in flight
    return path
