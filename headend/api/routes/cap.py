"""CAP alerts from warning sources (docs/cap.md), their confirmation, and the emergency ledger.

``POST /api/v1/cap`` takes the CAP XML as the raw body, from a warning source (its API key
header, or its HMAC signature and timestamp headers) or an admin's bearer token. The body is
read in pieces and refused (413) past the CAP size limit before the rest is read.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from headend.api.deps import (
    EmergencySender,
    PublisherDep,
    Reader,
    SessionDep,
    SettingsDep,
    TokenDep,
    get_current_user,
    require,
)
from headend.cap.errors import CapTooLarge
from headend.cap.parse import MAX_CAP_BYTES
from headend.models import User
from headend.security import has_permission
from headend.services import cap_alerts, ledger
from headend.services.cap_alerts import Unauthorized

router = APIRouter(tags=["cap"])
Auditor = Annotated[User, Depends(require("audit"))]


async def read_limited(request: Request, limit: int = MAX_CAP_BYTES) -> bytes:
    """The raw body, refused (413) as soon as it passes ``limit`` bytes: a declared length
    over it is refused before reading anything, a body longer than declared when it gets there."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise CapTooLarge(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise CapTooLarge(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/cap", responses={200: {"description": "aired, queued or logged"},
                                401: {"description": "not a known source"},
                                403: {"description": "a sender the source may not use"},
                                413: {"description": "larger than 256 KB"},
                                422: {"description": "not a valid CAP 1.2 alert, or expired"}})
async def post_cap(request: Request, session: SessionDep, settings: SettingsDep,
                   publisher: PublisherDep, token: TokenDep):
    """A CAP 1.2 alert (the XML as the body) from a warning source. Answers
    ``{"identifier", "outcome": "aired" | "queued" | "logged" | "refused", "reason", "zones",
    "broadcast_id", ...}``."""
    body = await read_limited(request)
    now = datetime.now(UTC)

    def handle() -> tuple[dict[str, Any], int]:
        if token:
            user = get_current_user(request, session, settings, token)
            if not has_permission(user.role, "users"):
                raise Unauthorized("cap-unauthorized", "only an admin's token may post CAP",
                                   "Chỉ quản trị viên được gửi bản tin CAP")
            poster = cap_alerts.user_poster(user)
        else:
            poster = cap_alerts.authenticate_source(session, settings=settings,
                                                    headers=request.headers, body=body, now=now)
        return cap_alerts.receive(session, settings=settings, publisher=publisher, body=body,
                                  poster=poster, now=now)

    # The database, the speech engine and ffmpeg block: off the event loop.
    answer, status = await run_in_threadpool(handle)
    return JSONResponse(answer, status_code=status)


@router.get("/cap")
def list_cap(session: SessionDep, _: Reader, limit: int = 200) -> list[dict[str, Any]]:
    """The CAP messages kept, newest first (refused ones are not kept)."""
    now = datetime.now(UTC)
    return [cap_alerts.describe(row, now) for row in
            cap_alerts.list_alerts(session, limit=max(1, min(limit, 1000)))]


@router.post("/cap/{alert_id}/confirm")
def confirm_cap(alert_id: str, session: SessionDep, settings: SettingsDep,
                publisher: PublisherDep, user: EmergencySender) -> dict[str, Any]:
    """Air a queued CAP alert now (an operator's one-click confirmation)."""
    row = cap_alerts.confirm(session, settings=settings, publisher=publisher,
                             alert_id=alert_id, user=user)
    return cap_alerts.describe(row)


@router.get("/emergency/ledger/verify")
def verify_ledger(session: SessionDep, _: Auditor) -> dict[str, Any]:
    """Walk the emergency ledger's hash chain: ``{"ok", "rows", "head", "first_bad"}``."""
    return ledger.verify(session)


@router.get("/emergency/ledger")
def list_ledger(session: SessionDep, _: Auditor, limit: int = 200) -> list[dict[str, Any]]:
    """The ledger's newest rows: who or what sent, approved and cancelled each emergency."""
    return [{"seq": e.seq, "at": e.at, "event": e.event, "actor": e.actor,
             "broadcast_id": e.broadcast_id, "cap_identifier": e.cap_identifier,
             "detail": e.detail, "prev_hash": e.prev_hash, "hash": e.hash}
            for e in ledger.list_entries(session, limit=max(1, min(limit, 1000)))]
