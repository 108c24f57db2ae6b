"""Phát khẩn cấp: choose (or upload) the announcement and where, read what will happen and to
how many receivers, confirm; or confirm a CAP alert that waits for an operator. Then the
emergency's own page follows it: per receiver acked / fetched / playing / played and why not,
the receivers that have not confirmed (re-sent by themselves a few times, and a "re-send"
button), and the stop button."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile, status
from fastapi.responses import RedirectResponse

from headend.api.deps import PublisherDep, SessionDep, SettingsDep
from headend.errors import ServiceError
from headend.services import broadcasts, cap_alerts, escalation
from headend.services.media import list_media
from headend.services.sites import list_zones
from headend.web.csrf import CsrfChecked
from headend.web.forms import (
    describe_targets,
    media_from_form,
    preview_url,
    targets_from_form,
    zone_names,
)
from headend.web.guard import EmergencyUser, PageRoute, PageUser, is_fragment
from headend.web.pages.broadcasts import status_context
from headend.web.rendering import error_text, render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

def _form(request: Request, session, form: dict[str, Any], error: str | None = None,
          status_code: int = 200, fragment: bool = False):
    return render(request, "_cap_queued.html" if fragment else "emergency.html", {
        "form": form, "error": error, "media": _pinned_first(list_media(session), session),
        "zones": list_zones(session),
        "current": broadcasts.current_emergencies(session),
        "queued": cap_alerts.waiting(session), "zone_names": zone_names(session),
        "cap_reason": cap_alerts.reason_names}, status_code=status_code)


def _pinned_first(media, session):
    """The pinned set first (on every receiver already: an emergency with it plays at once),
    then the rest, newest first."""
    from headend.services.pinned import pinned_media

    pinned = pinned_media(session)
    ids = {m.id for m in pinned}
    return pinned + [m for m in media if m.id not in ids]


@router.get("/emergency")
def emergency_form(request: Request, session: SessionDep, _user: EmergencyUser):
    """The form, and the CAP alerts waiting for a confirmation (``?fragment=1``: only those,
    the page's live part: an alert that comes in shows without a reload)."""
    return _form(request, session, {"target": "all", "zones": [], "media_id": ""},
                 fragment=is_fragment(request))


@router.post("/emergency")
def emergency_confirm(
        request: Request, session: SessionDep, settings: SettingsDep, user: EmergencyUser,
        _: CsrfChecked, file: Annotated[UploadFile | None, File()] = None,
        media_id: Annotated[str, Form()] = "", title: Annotated[str, Form()] = "",
        text: Annotated[str, Form()] = "", voice: Annotated[str, Form()] = "north",
        target: Annotated[str, Form()] = "all",
        zones: Annotated[list[str], Form()] = []):  # noqa: B006 (FastAPI copies defaults)
    """Step 1 of 2: nothing is sent yet; the page says what confirming will do."""
    form = {"media_id": media_id, "title": title, "text": text, "voice": voice,
            "target": target, "zones": zones}
    try:
        item = media_from_form(session, settings=settings, user=user, upload=file,
                               media_id=media_id, title=title, text=text, voice=voice,
                               kind="emergency")
        # Uploaded or spoken once: going back or retrying reuses the recording.
        form.update(media_id=item.id, text="")
        targets = targets_from_form(target, zones, [])
        receivers = broadcasts.resolve_targets(session, targets)
    except ServiceError as exc:
        session.rollback()
        return _form(request, session, form, error_text(translator_of(request), exc),
                     status_code=exc.status)
    online = sum(1 for r in receivers if r.online)
    return render(request, "emergency_confirm.html", {
        "media": item, "preview": preview_url(item), "form": form, "total": len(receivers),
        "online": online,
        "offline": len(receivers) - online,
        "window_min": settings.emergency_window_s // 60,
        "where": describe_targets(translator_of(request), targets, zone_names(session))})


@router.post("/emergency/send")
def emergency_send(
        request: Request, session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
        user: EmergencyUser, _: CsrfChecked, media_id: Annotated[str, Form()] = "",
        target: Annotated[str, Form()] = "all",
        zones: Annotated[list[str], Form()] = []):  # noqa: B006
    """Step 2 of 2: confirmed. Plays now on every targeted receiver, preempting everything."""
    try:
        broadcast = broadcasts.send_emergency(session, settings=settings, publisher=publisher,
                                              media_id=media_id,
                                              targets=targets_from_form(target, zones, []),
                                              actor=user)
    except ServiceError as exc:
        session.rollback()
        form = {"media_id": media_id, "title": "", "target": target, "zones": zones}
        return _form(request, session, form, error_text(translator_of(request), exc),
                     status_code=exc.status)
    return RedirectResponse("/emergency/%s" % broadcast.id, status.HTTP_303_SEE_OTHER)



@router.post("/emergency/cap/{alert_id}/confirm")
def confirm_cap(alert_id: str, request: Request, session: SessionDep, settings: SettingsDep,
                publisher: PublisherDep, user: EmergencyUser, _: CsrfChecked):
    """An operator's one-click confirmation of a queued CAP alert: it airs now."""
    try:
        row = cap_alerts.confirm(session, settings=settings, publisher=publisher,
                                 alert_id=alert_id, user=user)
    except ServiceError as exc:
        session.rollback()
        return _form(request, session, {"target": "all", "zones": [], "media_id": ""},
                     error_text(translator_of(request), exc), status_code=exc.status)
    return RedirectResponse("/emergency/%s" % row.broadcast_id, status.HTTP_303_SEE_OTHER)


# The emergency's page refreshes this often (the per-receiver states change within seconds).
REFRESH_S = 1.5


def _status_context(request: Request, session, settings, broadcast_id: str) -> dict[str, Any]:
    """The broadcast page's context, and the emergency's own: who has not confirmed, the
    re-sends, the CAP alert it airs."""
    context = status_context(request, session, broadcast_id)
    detail = context["b"]
    now = datetime.now(UTC)
    late = escalation.unconfirmed(detail, settings=settings, now=now)
    context.update(
        every=REFRESH_S, unconfirmed=late,
        resendable=any(d["state"] != "offline" for d in late),
        confirm_s=settings.emergency_confirm_s, resends_max=settings.emergency_resends,
        alert=cap_alerts.for_broadcast(session, broadcast_id=broadcast_id))
    return context


def _status_page(request: Request, session, settings, broadcast_id: str,
                 error: str | None = None, status_code: int = 200):
    context = _status_context(request, session, settings, broadcast_id)
    if context["b"]["priority"] != "emergency":
        return RedirectResponse("/broadcasts/%s" % broadcast_id, status.HTTP_303_SEE_OTHER)
    context["error"] = error
    name = ("_emergency_live.html" if is_fragment(request) and error is None
            else "emergency_status.html")
    return render(request, name, context, status_code=status_code)


@router.get("/emergency/{broadcast_id}")
def emergency_page(broadcast_id: str, request: Request, session: SessionDep,
                   settings: SettingsDep, _user: PageUser):
    return _status_page(request, session, settings, broadcast_id)


def _act(request: Request, session, settings, broadcast_id: str, action) -> Any:
    try:
        action()
    except ServiceError as exc:
        session.rollback()
        return _status_page(request, session, settings, broadcast_id,
                            error_text(translator_of(request), exc), status_code=exc.status)
    return RedirectResponse("/emergency/%s" % broadcast_id, status.HTTP_303_SEE_OTHER)


@router.post("/emergency/{broadcast_id}/resend")
def resend(broadcast_id: str, request: Request, session: SessionDep, settings: SettingsDep,
           publisher: PublisherDep, user: EmergencyUser, _: CsrfChecked):
    """Send the play again now to every online receiver that has not acked it."""
    return _act(request, session, settings, broadcast_id, lambda: escalation.resend(
        session, settings=settings, publisher=publisher, broadcast_id=broadcast_id,
        actor=user))


@router.post("/emergency/{broadcast_id}/cancel")
def cancel(broadcast_id: str, request: Request, session: SessionDep, settings: SettingsDep,
           publisher: PublisherDep, user: EmergencyUser, _: CsrfChecked):
    """Stop the emergency everywhere (receivers offline get the stop when they come back)."""
    return _act(request, session, settings, broadcast_id, lambda: broadcasts.cancel_broadcast(
        session, settings=settings, publisher=publisher, broadcast_id=broadcast_id,
        actor=user))
