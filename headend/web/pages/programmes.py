"""Chương trình: the week's calendar, the editor's form, a programme's page (its coming
occurrences to skip or move, its past ones with proof of play), the leader's approvals.

Roles as the API's (headend/api/routes/programmes.py): an editor drafts, edits and submits, a
leader approves or rejects, either skips or moves one occurrence; everyone signed in reads.
Every step goes through headend/services/programmes.py, which checks the guard rails and
writes the audit log; a refusal comes back as the service's message, the form as typed.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile, status
from fastapi.responses import RedirectResponse

from headend.api.deps import PublisherDep, SessionDep, SettingsDep
from headend.errors import Invalid, ServiceError
from headend.models import PROGRAMME_SUBMITTED, User
from headend.security import has_permission
from headend.services import programme_import, programme_views, programmes, programmes_time
from headend.services.devices import list_devices
from headend.services.media import list_media
from headend.services.sites import list_zones
from headend.web import programme_forms
from headend.web.csrf import CsrfChecked
from headend.web.forms import (
    VOICES,
    describe_targets,
    start_from_form,
    targets_from_form,
    zone_names,
)
from headend.web.guard import PageRoute, PageUser, allowed
from headend.web.rendering import error_text, render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

Editor = Annotated[User, Depends(allowed("programmes.edit"))]
Leader = Annotated[User, Depends(allowed("programmes.approve"))]
CALENDAR_DAYS = 7
PROOF_DAYS = 30  # past occurrences shown with their proof of play


def editor_or_leader(user: PageUser) -> User:
    """Skipping or moving one occurrence: the editor's plan or the leader's call (as the
    API's ``editor_or_leader``)."""
    if not (has_permission(user.role, "programmes.edit")
            or has_permission(user.role, "programmes.approve")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "forbidden")
    return user


EditorOrLeader = Annotated[User, Depends(editor_or_leader)]


def _back(programme_id: str) -> RedirectResponse:
    return RedirectResponse("/programmes/%s" % programme_id, status.HTTP_303_SEE_OTHER)


def _describe(request: Request, session, programme,
              names: dict[str, str] | None = None) -> dict[str, str]:
    """Its time and targets in words (``names``: the villages', when already read)."""
    t = translator_of(request)
    tz = request.app.state.settings.tz
    return {"when": programme_forms.describe_when(t, programme, tz),
            "where": describe_targets(t, programme.targets,
                                      zone_names(session) if names is None else names)}


# -- the week ---------------------------------------------------------------------------------

@router.get("/programmes")
def calendar_page(request: Request, session: SessionDep, settings: SettingsDep,
                  _user: PageUser, start: str = ""):
    """The coming week by day, today first (a phone shows today at the top)."""
    tz = settings.tz
    today = datetime.now(tz).date()
    try:
        first = date.fromisoformat(start) if start else today
    except ValueError:
        raise Invalid("bad-date", "dates are written yyyy-mm-dd", "Ngày không hợp lệ") from None
    begin = datetime.combine(first, time(), tz)
    end = begin + timedelta(days=CALENDAR_DAYS)
    t = translator_of(request)
    names = zone_names(session)
    days: dict[date, list[dict[str, Any]]] = {first + timedelta(days=i): []
                                              for i in range(CALENDAR_DAYS)}
    for entry in programme_views.calendar(session, settings=settings,
                                          start=begin.astimezone(UTC), end=end.astimezone(UTC)):
        days[entry.start.astimezone(tz).date()].append({
            "p": entry.programme, "o": entry.occurrence,
            "where": describe_targets(t, entry.programme.targets, names)})
    everything = [dict(p=p, **_describe(request, session, p, names))
                  for p in programmes.list_programmes(session)]
    return render(request, "programmes.html", {
        "days": days, "today": today, "everything": everything,
        "day_codes": programme_forms.DAYS,
        "previous": (first - timedelta(days=CALENDAR_DAYS)).isoformat(),
        "next": (first + timedelta(days=CALENDAR_DAYS)).isoformat(),
        "waiting": sum(1 for p in everything if p["p"].state == PROGRAMME_SUBMITTED)})


# -- the editor -------------------------------------------------------------------------------

FORM_DEFAULTS: dict[str, Any] = {
    "title": "", "target": "all", "zones": [], "devices": [], "priority": "normal",
    "when": "weekly", "start_at": "", "days": list(programme_forms.DAYS[:6]), "at_time": "05:30",
    "first_day": "", "until": "", "rrule": "", "volume": "", "confirm_quiet": False}


def _editor(request: Request, session, form: dict[str, Any], rows: list[dict[str, str]],
            programme=None, error: str | None = None, status_code: int = 200,
            notice: str | None = None):
    return render(request, "programme_form.html", {
        "form": form, "rows": rows, "programme": programme, "error": error, "notice": notice,
        "media": list_media(session), "zones": list_zones(session),
        "devices": list_devices(session), "priorities": ("normal", "priority"),
        "day_codes": programme_forms.DAYS, "voices": VOICES,
        "kinds": programme_forms.SEGMENT_KINDS,
        "quiet": programmes_time.quiet_hours(request.app.state.settings.quiet_hours_start,
                                             request.app.state.settings.quiet_hours_end)},
        status_code=status_code)


@router.get("/programmes/new")
def new_programme(request: Request, session: SessionDep, _user: Editor):
    rows = programme_forms.segment_rows([{"chime": "start"}, {"media_id": ""}])
    return _editor(request, session, dict(FORM_DEFAULTS), rows)


def _targets_form(targets: dict[str, Any]) -> dict[str, Any]:
    if targets.get("zones"):
        return {"target": "zones", "zones": list(targets["zones"]), "devices": []}
    if targets.get("devices"):
        return {"target": "devices", "zones": [], "devices": list(targets["devices"])}
    return {"target": "all", "zones": [], "devices": []}


@router.get("/programmes/{programme_id}/edit")
def edit_programme(programme_id: str, request: Request, session: SessionDep,
                   settings: SettingsDep, _user: Editor):
    programme = programmes.get_programme(session, programme_id=programme_id)
    form = dict(FORM_DEFAULTS, title=programme.title, priority=programme.priority,
                volume="" if programme.volume is None else str(programme.volume),
                **_targets_form(programme.targets),
                **programme_forms.when_choices(programme, settings.tz))
    return _editor(request, session, form, programme_forms.segment_rows(programme.segments),
                   programme)


FormList = Annotated[list[str], Form()]


@dataclass
class Typed:
    """What was typed in the editor: the form's values (to show again after a refusal), its
    segment rows, and which button was pressed ("save" or "submit")."""

    form: dict[str, Any]
    rows: list[dict[str, str]]
    action: str


def typed_form(
        action: Annotated[str, Form()] = "save", title: Annotated[str, Form()] = "",
        seg_kind: FormList = [], seg_media: FormList = [],  # noqa: B006 (FastAPI copies)
        seg_text: FormList = [], seg_voice: FormList = [], seg_chime: FormList = [],  # noqa: B006
        seg_relay_url: FormList = [], seg_relay_minutes: FormList = [],  # noqa: B006
        target: Annotated[str, Form()] = "all",
        zones: FormList = [], devices: FormList = [],  # noqa: B006
        priority: Annotated[str, Form()] = "normal", when: Annotated[str, Form()] = "once",
        start_at: Annotated[str, Form()] = "", days: FormList = [],  # noqa: B006
        at_time: Annotated[str, Form()] = "", first_day: Annotated[str, Form()] = "",
        until: Annotated[str, Form()] = "", rrule: Annotated[str, Form()] = "",
        volume: Annotated[str, Form()] = "", confirm_quiet: Annotated[str, Form()] = "") -> Typed:
    form = {"title": title, "target": target, "zones": zones, "devices": devices,
            "priority": priority, "when": when, "start_at": start_at, "days": days,
            "at_time": at_time, "first_day": first_day, "until": until, "rrule": rrule,
            "volume": volume, "confirm_quiet": bool(confirm_quiet),
            "segments": programme_forms.segments_from_form(seg_kind, seg_media, seg_text,
                                                           seg_voice, seg_chime, seg_relay_url,
                                                           seg_relay_minutes)}
    at = programme_forms.at
    rows = [programme_forms.row(kind, at(seg_media, i), at(seg_text, i), at(seg_voice, i),
                                at(seg_chime, i), at(seg_relay_url, i),
                                at(seg_relay_minutes, i))
            for i, kind in enumerate(seg_kind)]
    # The rows typed, then blank rows again after them.
    return Typed(form, [r for r in rows if r["kind"]] + programme_forms.segment_rows([]),
                 action)


TypedForm = Annotated[Typed, Depends(typed_form)]


def _fields(form: dict[str, Any], settings, programme=None) -> dict[str, Any]:
    """The service's fields from the form (for an edit, "when" only if it changed)."""
    volume = form["volume"].strip()
    if volume and not volume.isdigit():
        raise Invalid("bad-volume", "volume must be a whole number 0-100",
                      "Âm lượng phải là số nguyên từ 0 đến 100")
    fields: dict[str, Any] = {
        "title": form["title"], "segments": form["segments"],
        "targets": targets_from_form(form["target"], form["zones"], form["devices"]),
        "priority": form["priority"], "volume": int(volume) if volume else None,
        "confirm_quiet": form["confirm_quiet"]}
    if form["when"] not in programme_forms.WHEN_KINDS:
        raise Invalid("bad-when", "choose once or every week", "Hãy chọn phát một lần hoặc hằng tuần")
    if programme is None or not programme_forms.same_when(form, programme, settings.tz):
        fields["start"], fields["rrule"] = programme_forms.when_from_form(form, settings.tz)
    return fields


def _save(request: Request, session, settings, publisher, user: User, programme_id: str | None,
          typed: Typed):
    form, rows, action = typed.form, typed.rows, typed.action
    programme = (programmes.get_programme(session, programme_id=programme_id)
                 if programme_id else None)
    saved = False
    try:
        fields = _fields(form, settings, programme)
        if action == "check":  # the guard rails' verdict, nothing saved
            programme_views.check_draft(session, settings=settings, fields=fields, actor=user,
                                        programme=programme)
            return _editor(request, session, form, rows, programme,
                           notice=translator_of(request)("programme.check_ok"))
        if programme is None:
            programme = programmes.create_programme(session, settings=settings, fields=fields,
                                                    actor=user)
        else:
            programme = programmes.update_programme(
                session, settings=settings, publisher=publisher, programme_id=programme.id,
                fields=fields, actor=user)
        saved = True
        if action == "submit" and programme.state != PROGRAMME_SUBMITTED:
            programmes.submit_programme(session, settings=settings, programme_id=programme.id,
                                        actor=user, confirm_quiet=form["confirm_quiet"])
    except ServiceError as exc:
        session.rollback()
        if saved:  # saved, but not submitted: its page says why
            return _programme_page(request, session, settings, programme.id,
                                   error=error_text(translator_of(request), exc),
                                   status_code=exc.status)
        stored = (programmes.get_programme(session, programme_id=programme_id)
                  if programme_id else None)
        return _editor(request, session, form, rows, stored,
                       error_text(translator_of(request), exc), status_code=exc.status)
    return _back(programme.id)


@router.post("/programmes/new")
def create_programme(request: Request, session: SessionDep, settings: SettingsDep,
                     publisher: PublisherDep, user: Editor, _: CsrfChecked, typed: TypedForm):
    return _save(request, session, settings, publisher, user, None, typed)


@router.post("/programmes/{programme_id}/edit")
def update_programme(programme_id: str, request: Request, session: SessionDep,
                     settings: SettingsDep, publisher: PublisherDep, user: Editor,
                     _: CsrfChecked, typed: TypedForm):
    return _save(request, session, settings, publisher, user, programme_id, typed)


@router.post("/programmes/{programme_id}/delete")
def delete_programme(programme_id: str, session: SessionDep, settings: SettingsDep,
                     publisher: PublisherDep, user: Editor, _: CsrfChecked):
    programmes.delete_programme(session, settings=settings, publisher=publisher,
                                programme_id=programme_id, actor=user)
    return RedirectResponse("/programmes", status.HTTP_303_SEE_OTHER)


# -- .ics import ------------------------------------------------------------------------------

def _import_page(request: Request, session, form: dict[str, Any], result=None,
                 error: str | None = None, status_code: int = 200):
    return render(request, "programme_import.html", {
        "form": form, "result": result, "error": error, "media": list_media(session),
        "zones": list_zones(session), "devices": list_devices(session)},
        status_code=status_code)


@router.get("/programmes/import")
def import_form(request: Request, session: SessionDep, _user: Editor):
    return _import_page(request, session, {"media_id": "", "target": "all", "zones": [],
                                           "devices": []})


@router.post("/programmes/import")
def import_calendar(
        request: Request, session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
        user: Editor, _: CsrfChecked, file: Annotated[UploadFile | None, File()] = None,
        media_id: Annotated[str, Form()] = "", target: Annotated[str, Form()] = "all",
        zones: FormList = [], devices: FormList = []):  # noqa: B006 (FastAPI copies)
    """Draft programmes from an .ics file: each event with the recording and targets chosen
    here (a calendar has neither); what the file has that cannot be mapped is listed."""
    form = {"media_id": media_id, "target": target, "zones": zones, "devices": devices}
    try:
        if file is None or not file.filename:
            raise Invalid("missing-file", "choose the .ics file to import",
                          "Hãy chọn tệp lịch .ics để nhập")
        if not media_id:
            raise Invalid("missing-media", "choose the recording the imported programmes play",
                          "Hãy chọn bản tin làm nội dung cho các chương trình được nhập")
        data = file.file.read(programme_import.MAX_BYTES + 1)
        result = programme_import.import_calendar(
            session, settings=settings,
            publisher=publisher, data=data, segments=[{"media_id": media_id}],
            targets=targets_from_form(target, zones, devices), actor=user)
    except ServiceError as exc:
        session.rollback()
        return _import_page(request, session, form, error=error_text(translator_of(request),
                                                                     exc),
                            status_code=exc.status)
    return _import_page(request, session, form, result=result)


# -- a programme ------------------------------------------------------------------------------

def _programme_page(request: Request, session, settings, programme_id: str,
                    error: str | None = None, status_code: int = 200):
    programme = programmes.get_programme(session, programme_id=programme_id)
    now = datetime.now(UTC)
    proofs = programme_views.proof_of_play(session, settings=settings, programme=programme,
                                           since=now - timedelta(days=PROOF_DAYS), now=now)
    names = {d.id: d.name for d in list_devices(session)}
    media = {m.id: m.title for m in list_media(session, limit=1000)}
    return render(request, "programme.html", dict(
        p=programme, error=error, proofs=proofs, device_names=names, media_titles=media,
        day_codes=programme_forms.DAYS, tz=settings.tz,
        quiet_ids=(_quiet_ids(session, settings, [programme])
                   if programme.state == PROGRAMME_SUBMITTED else set()),
        coming=programme_views.coming(session, settings=settings, programme=programme,
                                      now=now),
        **_describe(request, session, programme)), status_code=status_code)


@router.get("/programmes/approvals")
def approvals_page(request: Request, session: SessionDep, _user: Leader):
    """The leader's inbox: the programmes waiting for approval, oldest change first."""
    return render(request, "programme_approvals.html", _inbox(request, session))


def _inbox(request: Request, session) -> dict[str, Any]:
    settings = request.app.state.settings
    waiting = sorted(programmes.list_programmes(session, state=PROGRAMME_SUBMITTED),
                     key=lambda p: p.updated_at)
    names = zone_names(session)
    return {"rows": [dict(p=p, **_describe(request, session, p, names)) for p in waiting],
            "media_titles": {m.id: m.title for m in list_media(session, limit=1000)},
            "quiet_ids": _quiet_ids(session, settings, waiting)}


def _quiet_ids(session, settings, waiting) -> set[str]:
    now = datetime.now(UTC)
    return {p.id for p in waiting if programme_views.airs_in_quiet_hours(
        session, settings=settings, programme=p, now=now)}


@router.get("/programmes/{programme_id}")
def programme_page(programme_id: str, request: Request, session: SessionDep,
                   settings: SettingsDep, _user: PageUser):
    return _programme_page(request, session, settings, programme_id)


def _step(request: Request, session, settings, programme_id: str, step, back: str):
    """Run an approval step; a refusal is shown on the page it came from."""
    try:
        step()
    except ServiceError as exc:
        session.rollback()
        message = error_text(translator_of(request), exc)
        if back == "approvals":
            return render(request, "programme_approvals.html", dict(
                _inbox(request, session), error=message, error_for=programme_id),
                status_code=exc.status)
        return _programme_page(request, session, settings, programme_id, error=message,
                               status_code=exc.status)
    if back == "approvals":
        return RedirectResponse("/programmes/approvals", status.HTTP_303_SEE_OTHER)
    return _back(programme_id)


@router.post("/programmes/{programme_id}/submit")
def submit_programme(programme_id: str, request: Request, session: SessionDep,
                     settings: SettingsDep, user: Editor, _: CsrfChecked,
                     confirm_quiet: Annotated[str, Form()] = ""):
    return _step(request, session, settings, programme_id, lambda: programmes.submit_programme(
        session, settings=settings, programme_id=programme_id, actor=user,
        confirm_quiet=bool(confirm_quiet)), "programme")


@router.post("/programmes/{programme_id}/approve")
def approve_programme(programme_id: str, request: Request, session: SessionDep,
                      settings: SettingsDep, user: Leader, _: CsrfChecked,
                      comment: Annotated[str, Form()] = "",
                      confirm_quiet: Annotated[str, Form()] = "",
                      back: Annotated[str, Form()] = "programme"):
    return _step(request, session, settings, programme_id, lambda: programmes.approve_programme(
        session, settings=settings, programme_id=programme_id, actor=user,
        confirm_quiet=bool(confirm_quiet), comment=comment.strip() or None), back)


@router.post("/programmes/{programme_id}/reject")
def reject_programme(programme_id: str, request: Request, session: SessionDep,
                     settings: SettingsDep, user: Leader, _: CsrfChecked,
                     comment: Annotated[str, Form()] = "",
                     back: Annotated[str, Form()] = "programme"):
    return _step(request, session, settings, programme_id, lambda: programmes.reject_programme(
        session, programme_id=programme_id, actor=user, comment=comment), back)


@router.post("/programmes/{programme_id}/skip")
def skip_occurrence(programme_id: str, request: Request, session: SessionDep,
                    settings: SettingsDep, publisher: PublisherDep, user: EditorOrLeader,
                    _: CsrfChecked, slot: Annotated[str, Form()] = ""):
    return _step(request, session, settings, programme_id, lambda: programmes.skip_occurrence(
        session, settings=settings, publisher=publisher, programme_id=programme_id,
        slot=programmes_time.aware(slot, "slot"), actor=user), "programme")


@router.post("/programmes/{programme_id}/move")
def move_occurrence(programme_id: str, request: Request, session: SessionDep,
                    settings: SettingsDep, publisher: PublisherDep, user: EditorOrLeader,
                    _: CsrfChecked, slot: Annotated[str, Form()] = "",
                    to: Annotated[str, Form()] = "",
                    confirm_quiet: Annotated[str, Form()] = ""):
    def move():
        programmes.move_occurrence(
            session, settings=settings, publisher=publisher, programme_id=programme_id,
            slot=programmes_time.aware(slot, "slot"), to=start_from_form("at", to, settings.tz),
            actor=user, confirm_quiet=bool(confirm_quiet))

    return _step(request, session, settings, programme_id, move, "programme")

