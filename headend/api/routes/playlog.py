from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import Response

from headend.api.deps import Reader, SessionDep, SettingsDep
from headend.api.schemas import PlayLogEntry
from headend.services.playlog import list_playlog, playlog_csv

router = APIRouter(prefix="/playlog", tags=["playlog"])


@router.get("", response_model=list[PlayLogEntry])
def get_playlog(session: SessionDep, settings: SettingsDep, _: Reader,
                device_id: str | None = None, broadcast_id: str | None = None,
                since: datetime | None = None, until: datetime | None = None,
                limit: int = 1000, format: str = "json"):
    """Proof of play: what receivers reported playing. ``format=csv`` for a report file."""
    entries = list_playlog(session, device_id=device_id, broadcast_id=broadcast_id,
                           since=since, until=until, limit=min(limit, 100_000))
    if format == "csv":
        return Response(playlog_csv(entries, tz=settings.tz), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="playlog.csv"'})
    return entries
