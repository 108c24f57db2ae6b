"""Phát khẩn cấp: choose (or upload) the announcement and where, read what will happen and to
how many receivers, confirm; then the broadcast page follows it and holds the stop button."""

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile, status
from fastapi.responses import RedirectResponse

from headend.api.deps import PublisherDep, SessionDep, SettingsDep
from headend.errors import ServiceError
from headend.services import broadcasts
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
from headend.web.guard import EmergencyUser, PageRoute
from headend.web.rendering import error_text, render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

def _form(request: Request, session, form: dict[str, Any], error: str | None = None,
          status_code: int = 200):
    return render(request, "emergency.html", {
        "form": form, "error": error, "media": _pinned_first(list_media(session), session),
        "zones": list_zones(session),
        "current": broadcasts.current_emergencies(session)}, status_code=status_code)


def _pinned_first(media, session):
    """The pinned set first (on every receiver already: an emergency with it plays at once),
    then the rest, newest first."""
    from headend.services.pinned import pinned_media

    pinned = pinned_media(session)
    ids = {m.id for m in pinned}
    return pinned + [m for m in media if m.id not in ids]


@router.get("/emergency")
def emergency_form(request: Request, session: SessionDep, _user: EmergencyUser):
    return _form(request, session, {"target": "all", "zones": [], "media_id": ""})


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
    return RedirectResponse("/broadcasts/%s" % broadcast.id, status.HTTP_303_SEE_OTHER)

