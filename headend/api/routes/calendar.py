"""The station's calendar of programmes as an .ics file (calendar programs subscribe to it)."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile

from headend.api.deps import PublisherDep, Reader, SessionDep, SettingsDep, require
from headend.api.schemas import ProgrammePublic
from headend.errors import Invalid
from headend.models import PROGRAMME_STATES, User
from headend.services import programme_import
from headend.services.programmes_ics import calendar_ics

router = APIRouter(tags=["programmes"])


@router.get("/calendar.ics", response_class=Response,
            responses={200: {"content": {"text/calendar": {}}}})
def calendar(session: SessionDep, settings: SettingsDep, _: Reader,
             state: Annotated[list[str] | None, Query(
                 description="programme states to include (default: approved)")] = None):
    """Every approved programme (or those of ``state``) as an iCalendar VEVENT with its RRULE,
    EXDATEs (skipped occurrences too) and moved occurrences, in the site's time zone."""
    state = state or ["approved"]
    unknown = [s for s in state if s not in PROGRAMME_STATES]
    if unknown:
        raise Invalid("bad-state", "unknown state(s): %s" % ", ".join(unknown),
                      "Trạng thái không hợp lệ: %s" % ", ".join(unknown))
    return Response(calendar_ics(session, settings=settings, states=tuple(state)),
                    media_type="text/calendar; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="lich-phat.ics"'})


@router.post("/calendar/import")
def import_calendar(session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
                    user: Annotated[User, Depends(require("programmes.edit"))],
                    file: Annotated[UploadFile, File(description="an iCalendar (.ics) file")],
                    media_id: Annotated[str, Form(description="the recording every imported "
                                                  "programme plays")],
                    targets: Annotated[str, Form(description='as broadcasts, JSON: '
                                                 '{"all": true} (default) | {"zones": [...]}'
                                                 )] = '{"all": true}') -> dict[str, Any]:
    """Each VEVENT becomes a draft programme (SUMMARY, DTSTART, RRULE, EXDATEs, moved
    occurrences) with ``media_id`` and ``targets``; events it cannot map (all-day, RDATE,
    EXRULE, several RRULEs, a guard rail's refusal) are listed in ``refused``."""
    try:
        chosen = json.loads(targets)
    except ValueError:
        raise Invalid("bad-targets", "targets must be JSON", "Nơi phát không hợp lệ") from None
    result = programme_import.import_calendar(
        session, settings=settings, publisher=publisher,
        data=file.file.read(programme_import.MAX_BYTES + 1), segments=[{"media_id": media_id}],
        targets=chosen, actor=user)
    return {"created": [ProgrammePublic.model_validate(p).model_dump(mode="json")
                        for p in result.created],
            "refused": [{"summary": r.summary, "message": r.message,
                         "message_vi": r.message_vi} for r in result.refused]}
