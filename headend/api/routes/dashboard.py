"""The dashboard's figures (headend/services/dashboard.py), for a script or another screen."""

from fastapi import APIRouter, Request

from headend.api.deps import Reader, SessionDep, SettingsDep
from headend.services.dashboard import Dashboard, overview

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


def live_sessions(request: Request) -> list:
    """The live service's sessions, none before it was first used (headend/live/service.py)."""
    live = getattr(request.app.state, "live", None)
    return list(live.sessions.values()) if live is not None else []


@router.get("", response_model=Dashboard)
def dashboard(request: Request, session: SessionDep, settings: SettingsDep, _: Reader):
    """Receivers online / with a fault / offline per village (``id`` "" for receivers in no
    village), what plays now, emergencies still valid, the next programme occurrences."""
    return overview(session, settings=settings, live_sessions=live_sessions(request))
