"""Upload a recording and broadcast it; a broadcast's per-receiver status; the list."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile, status
from fastapi.responses import RedirectResponse

from headend.api.deps import PublisherDep, SessionDep, SettingsDep
from headend.errors import Invalid, ServiceError
from headend.models import BROADCAST_FINAL, DELIVERY_PLAYING, DELIVERY_WAITING
from headend.services import broadcasts
from headend.services.devices import list_devices
from headend.services.media import get_media, list_media
from headend.services.sites import list_zones
from headend.web.csrf import CsrfChecked
from headend.web.forms import (
    describe_targets,
    media_from_form,
    preview_url,
    start_from_form,
    targets_from_form,
    zone_names,
)
from headend.web.guard import Broadcaster, PageRoute, PageUser, is_fragment
from headend.web.rendering import error_text, render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

# A broadcast's page refreshes fast around its start and while it plays, slowly before.
FAST_REFRESH_S = 1.5
SLOW_REFRESH_S = 10
SOON_S = 60

# The classes this form offers; an emergency has its own page with a confirmation step.
FORM_PRIORITIES = ("normal", "priority")


def _new_form(request: Request, session, form: dict[str, Any], error: str | None = None,
              status_code: int = 200):
    return render(request, "broadcast_new.html", {
        "form": form, "error": error, "media": list_media(session),
        "zones": list_zones(session), "devices": list_devices(session),
        "priorities": FORM_PRIORITIES}, status_code=status_code)


@router.get("/broadcasts/new")
def new_broadcast(request: Request, session: SessionDep, _user: Broadcaster,
                  media_id: str = ""):
    return _new_form(request, session, {"target": "all", "when": "now", "priority": "normal",
                                        "media_id": media_id, "zones": [], "devices": []})


@router.post("/broadcasts/new")
def create_broadcast(
        request: Request, session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
        user: Broadcaster, _: CsrfChecked,
        file: Annotated[UploadFile | None, File()] = None,
        media_id: Annotated[str, Form()] = "", title: Annotated[str, Form()] = "",
        text: Annotated[str, Form()] = "", voice: Annotated[str, Form()] = "north",
        target: Annotated[str, Form()] = "all",
        zones: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
        devices: Annotated[list[str], Form()] = [],  # noqa: B006
        when: Annotated[str, Form()] = "now", start_at: Annotated[str, Form()] = "",
        priority: Annotated[str, Form()] = "normal"):
    form = {"media_id": media_id, "title": title, "text": text, "voice": voice,
            "target": target, "zones": zones, "devices": devices, "when": when,
            "start_at": start_at, "priority": priority}
    try:
        if priority not in FORM_PRIORITIES:
            raise Invalid("bad-priority", "choose normal or priority (emergency has its own page)",
                          "Chọn mức thường hoặc ưu tiên (tin khẩn cấp có trang riêng)")
        item = media_from_form(session, settings=settings, user=user, upload=file,
                               media_id=media_id, title=title, text=text, voice=voice,
                               kind="bulletin")
        # Uploaded or spoken once: a retry after an error reuses the recording.
        form.update(media_id=item.id, text="")
        broadcast = broadcasts.create_broadcast(
            session, settings=settings, publisher=publisher, media_id=item.id,
            targets=targets_from_form(target, zones, devices), priority=priority,
            start_at=start_from_form(when, start_at, settings.tz), actor=user)
    except ServiceError as exc:
        session.rollback()
        return _new_form(request, session, form, error_text(translator_of(request), exc),
                         status_code=exc.status)
    return RedirectResponse("/broadcasts/%s" % broadcast.id, status.HTTP_303_SEE_OTHER)


def status_context(request: Request, session, broadcast_id: str) -> dict[str, Any]:
    detail = broadcasts.broadcast_status(session, broadcast_id=broadcast_id)
    open_states = DELIVERY_WAITING + (DELIVERY_PLAYING,)
    still_open = any(d["state"] in open_states for d in detail["devices"])
    names = zone_names(session)
    soon = detail["start_at"] - datetime.now(UTC) < timedelta(seconds=SOON_S)
    return {"b": detail, "every": FAST_REFRESH_S if soon else SLOW_REFRESH_S,
            "final": detail["state"] in BROADCAST_FINAL and not still_open,
            "cancellable": detail["state"] != "cancelled" and still_open, "zone_names": names,
            "preview": preview_url(get_media(session, media_id=detail["media_id"])),
            "where": describe_targets(translator_of(request), detail["targets"], names)}


@router.get("/broadcasts/{broadcast_id}")
def broadcast_page(broadcast_id: str, request: Request, session: SessionDep, _user: PageUser):
    context = status_context(request, session, broadcast_id)
    return render(request, "_broadcast_live.html" if is_fragment(request) else "broadcast.html",
                  context)


@router.post("/broadcasts/{broadcast_id}/cancel")
def cancel_broadcast(broadcast_id: str, request: Request, session: SessionDep,
                     settings: SettingsDep, publisher: PublisherDep, user: Broadcaster,
                     _: CsrfChecked):
    try:
        broadcasts.cancel_broadcast(session, settings=settings, publisher=publisher,
                                    broadcast_id=broadcast_id, actor=user)
    except ServiceError as exc:
        session.rollback()
        context = status_context(request, session, broadcast_id)
        context["error"] = error_text(translator_of(request), exc)
        return render(request, "broadcast.html", context, status_code=exc.status)
    return RedirectResponse("/broadcasts/%s" % broadcast_id, status.HTTP_303_SEE_OTHER)


@router.get("/broadcasts")
def broadcasts_page(request: Request, session: SessionDep, _user: PageUser):
    t = translator_of(request)
    names = zone_names(session)
    rows = [{"b": b, "where": describe_targets(t, b.targets, names)}
            for b in broadcasts.list_broadcasts(session, limit=100)]
    return render(request, "broadcasts.html", {"rows": rows})
