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


# -- firmware bundles (headend/services/firmware.py) -----------------------------------------
# Public too: the firmware is open source; what a receiver installs is checked against the
# manifest hash its signed ``update`` names, never trusted for where it came from.

def _firmware_file(request: Request, version: str, rel: str) -> Path:
    from firmware.ota import safe_path, valid_version
    from headend.services.firmware import firmware_dir

    if not valid_version(version) or not safe_path("/" + rel):
        raise HTTPException(404, "no such firmware file")
    path = firmware_dir(request.app.state.settings) / version / rel
    if not path.is_file():
        raise HTTPException(404, "no such firmware file")
    return path


@router.get("/firmware/{version}/manifest.json")
@router.head("/firmware/{version}/manifest.json", include_in_schema=False)
def get_firmware_manifest(version: str, request: Request):
    return FileResponse(_firmware_file(request, version, "manifest.json"),
                        media_type="application/json")


@router.get("/firmware/{version}/files/{rel:path}")
@router.head("/firmware/{version}/files/{rel:path}", include_in_schema=False)
def get_firmware_file(version: str, rel: str, request: Request):
    # FileResponse answers Range requests: a receiver resumes a cut download (firmware/http.py).
    return FileResponse(_firmware_file(request, version, "files/" + rel),
                        media_type="application/octet-stream")
