"""Live from the microphone: make a session, stream its audio over a WebSocket, stop it.

The routes are async: a session's encoders, timers and socket live on the event loop
(headend/live/service.py); database work goes to a thread.
"""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, WebSocket, status
from pydantic import BaseModel, Field

from headend.api.deps import SESSION_COOKIE, Operator, Reader
from headend.errors import Conflict, NotFound, ServiceError
from headend.live.devices import device_states
from headend.live.service import PCM_RATES, live_service
from headend.live.session import END_STOPPED, LiveSession
from headend.models import User
from headend.security import has_permission, read_token
from headend.services.users import get_user
from headend.web.csrf import csrf_valid

log = logging.getLogger(__name__)

router = APIRouter(prefix="/live", tags=["live"])

# WebSocket close codes (4000-4999 are the application's): the page says what went wrong.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNKNOWN = 4404
CLOSE_BUSY = 4409
CLOSE_BAD_RATE = 4422
MAX_CHUNK_S = 1.0  # a chunk longer than this is not a live microphone's; dropped


class LiveCreate(BaseModel):
    source: dict[str, Any] = Field(description='{"microphone": true} | {"url": "http(s)://..."} '
                                               '(a relay: HTTP/Icecast MP3 or AAC, HLS m3u8)')
    targets: dict[str, Any] = Field(
        description='{"all": true} | {"zones": ["thon-1", ...]} | {"devices": ["r01", ...]}')
    until: datetime | None = Field(None, description="ISO 8601 with a zone; null = until "
                                                     "stopped")


class LiveDevice(BaseModel):
    id: str
    name: str | None = None
    zone: str | None = None
    state: str
    reason: str | None = None


class DeadAir(BaseModel):
    reason: str  # source-stalled | source-silent
    detail: str | None = None
    since: datetime
    fallback: str  # what plays instead: a media id, "notice" or "chime"


class LiveSummary(BaseModel):
    id: str
    state: str
    reason: str | None
    websocket: str | None  # where a microphone session's audio connects; None for a relay
    source: dict[str, Any]  # {"microphone": true} | {"url", "state", "error", "listeners"}
    dead_air: DeadAir | None = None  # a relay's source is stalled or silent: the fallback plays
    fallbacks: int = 0
    targets: dict[str, Any]
    receivers: int
    online: int
    codecs: list[str]
    delay_ms: int
    until: datetime | None
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class LiveDetail(LiveSummary):
    devices: list[LiveDevice]


def websocket_path(live_id: str) -> str:
    return "/api/v1/live/%s/audio" % live_id


def summary(request_app, live: LiveSession) -> dict[str, Any]:
    service = live_service(request_app)
    relay = service.relay_source(live)
    return {"id": live.id, "state": live.state, "reason": live.reason,
            "websocket": websocket_path(live.id) if relay is None else None,
            "source": relay or {"microphone": True}, "dead_air": live.dead_air,
            "fallbacks": live.fallbacks, "targets": live.targets,
            "receivers": len(live.receivers),
            "online": sum(1 for t in live.receivers if t.online and t.codec),
            "codecs": sorted(live.streams), "delay_ms": service.delay_ms(live),
            "until": (None if live.until_ms is None
                      else datetime.fromtimestamp(live.until_ms / 1000, UTC)),
            "created_by": live.created_by, "created_at": live.created_at,
            "started_at": live.started_at, "ended_at": live.ended_at}


async def detail(request_app, live: LiveSession) -> dict[str, Any]:
    def states():
        with request_app.state.session_factory() as db:
            return device_states(db, live)

    return dict(summary(request_app, live), devices=await asyncio.to_thread(states))


@router.post("", response_model=LiveSummary, status_code=status.HTTP_201_CREATED)
async def create_live(body: LiveCreate, request: Request, user: Operator):
    """Go live from the microphone to the targets. Connect the answer's ``websocket`` and send
    16-bit mono PCM (16 kHz, or ``?rate=48000``) in 20-40 ms binary messages; the receivers
    are sent the stream with the first audio. Ends on DELETE, at ``until``, when the socket
    closes or after 3 s without audio.

    With ``{"url": ...}`` the head-end relays that stream (tiếp sóng): it pulls it (once, for
    every session relaying the URL) and sends it from its first audio until DELETE or
    ``until``. A source that stalls or falls silent plays the fallback (``dead_air`` says
    why) until it is back."""
    live = await live_service(request.app).create(actor=user, source=body.source,
                                                  targets=body.targets, until=body.until)
    return summary(request.app, live)


@router.get("", response_model=list[LiveSummary])
async def list_live(request: Request, _: Reader):
    """Current and recently ended sessions, newest first."""
    return [summary(request.app, live) for live in live_service(request.app).newest_first()]


@router.get("/{live_id}", response_model=LiveDetail)
async def get_live(live_id: str, request: Request, _: Reader):
    """A session with each targeted receiver's state, from its own reports."""
    return await detail(request.app, live_service(request.app).get(live_id))


@router.delete("/{live_id}", response_model=LiveDetail)
async def stop_live(live_id: str, request: Request, _: Operator):
    """Stop: every receiver that was sent the stream is sent ``stop`` before this answers."""
    service = live_service(request.app)
    live = service.get(live_id)
    if live.over:
        raise Conflict("already-over", "live session %s is already over (%s)"
                       % (live.id, live.reason), "Phiên phát trực tiếp này đã kết thúc")
    await service.end(live_id, END_STOPPED)
    return await detail(request.app, live)


# -- the audio socket ----------------------------------------------------------------------

def socket_user(websocket: WebSocket) -> User | None:
    """The user of ``?token=`` (a bearer token), or of the pages' session cookie with
    ``?csrf=`` (a page of another site can open a socket with our cookie, never with the
    token the page holds). The same checks as headend/api/deps.py get_current_user."""
    settings = websocket.app.state.settings
    token = websocket.query_params.get("token")
    by_cookie = not token
    token = token or websocket.cookies.get(SESSION_COOKIE)
    claims = read_token(secret=settings.secret_key, token=token) if token else None
    if claims is None:
        return None
    if by_cookie and not csrf_valid(websocket, websocket.query_params.get("csrf")):  # type: ignore[arg-type]
        return None
    with websocket.app.state.session_factory() as db:
        user = get_user(db, username=claims.username)
        if user is None or not user.active or claims.epoch != user.token_epoch:
            return None
        db.expunge(user)
        return user


@router.websocket("/{live_id}/audio")
async def live_audio(websocket: WebSocket, live_id: str):
    await websocket.accept()
    service = live_service(websocket.app)
    try:
        rate = int(websocket.query_params.get("rate", "16000"))
    except ValueError:
        rate = 0
    user = await asyncio.to_thread(socket_user, websocket)
    if user is None:
        await websocket.close(CLOSE_UNAUTHORIZED, "not logged in")
        return
    if not has_permission(user.role, "broadcast"):
        await websocket.close(CLOSE_FORBIDDEN, "may not go live")
        return
    if rate not in PCM_RATES:
        await websocket.close(CLOSE_BAD_RATE, "rate must be 16000 or 48000")
        return
    try:
        live = service.get(live_id)
        # The voice of a session is its creator's (an administrator may stand in).
        if user.username != live.created_by and user.role != "admin":
            await websocket.close(CLOSE_FORBIDDEN, "not your live session")
            return
        live = service.attach(live_id)
    except NotFound:
        await websocket.close(CLOSE_UNKNOWN, "unknown live session")
        return
    except Conflict:
        await websocket.close(CLOSE_BUSY, "session has its audio or is over")
        return
    max_bytes = int(rate * 2 * MAX_CHUNK_S)

    async def chunks():
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data and len(data) <= max_bytes:
                yield data

    try:
        reason = await service.run_audio(live.id, chunks(), rate=rate)
    except ServiceError as exc:  # never raised past attach, but never crash the socket
        reason = exc.code
    try:
        await websocket.send_json({"state": "ended", "reason": reason})
        await websocket.close(1000, reason)
    except Exception:  # the peer is gone already: nothing to tell
        pass
