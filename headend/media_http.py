"""Renditions for receivers: GET /media/{sha256}.{ext}, with HTTP Range requests.

Public by unguessable name: the path is the SHA-256 of the rendition's content, which only a
signed ``play``/``fetch`` command tells a receiver (and the receiver checks the hash after the
download). No login, so a receiver on a pole needs no second credential; media is not secret
(it is played on loudspeakers), but it cannot be listed or guessed.
"""

import re

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from headend.api.deps import SessionDep
from headend.services.media import rendition_file

router = APIRouter(tags=["media files"])

_SHA = re.compile(r"^[0-9a-f]{64}$")
MEDIA_TYPES = {"mp3": "audio/mpeg", "adpcm": "application/octet-stream"}


@router.get("/media/{sha}.{ext}")
@router.head("/media/{sha}.{ext}", include_in_schema=False)
def get_rendition(sha: str, ext: str, session: SessionDep):
    if not _SHA.match(sha) or ext not in MEDIA_TYPES:
        raise HTTPException(404, "no such media")
    path = rendition_file(session, sha256=sha, ext=ext)
    if path is None or not path.exists():
        raise HTTPException(404, "no such media")
    # FileResponse answers Range requests (206 Partial Content), so a receiver resumes an
    # interrupted download on a flaky 4G link instead of starting over.
    return FileResponse(path, media_type=MEDIA_TYPES[ext],
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})
