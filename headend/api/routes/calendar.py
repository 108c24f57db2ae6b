"""The station's calendar of programmes as an .ics file (calendar programs subscribe to it)."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from headend.api.deps import Reader, SessionDep, SettingsDep
from headend.errors import Invalid
from headend.models import PROGRAMME_STATES
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
