"""``GET /api/v1/alerts``: open and recent alerts (headend/services/alerts.py), newest first."""

from datetime import datetime

from fastapi import APIRouter
from sqlalchemy import select

from headend.api.deps import Reader, SessionDep
from headend.api.schemas import AlertPublic
from headend.commands import chunks
from headend.models import Receiver
from headend.services import alerts
from headend.services.programmes_time import aware

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get("", response_model=list[AlertPublic])
def get_alerts(session: SessionDep, _: Reader, open: bool | None = None,
               device: str | None = None, since: datetime | None = None, limit: int = 200):
    """``open=true``: what is wrong now; ``open=false``: what is over; ``device``: one
    receiver's; ``since``: raised, still open or over since then (ISO 8601)."""
    if since is not None:
        since = aware(since, "since")
    found = alerts.list_alerts(session, open=open, device_id=device, since=since, limit=limit)
    receivers = {}
    for part in chunks(sorted({a.device_id for a in found})):
        for receiver in session.scalars(select(Receiver).where(Receiver.id.in_(part))):
            receivers[receiver.id] = receiver
    return [alerts.as_dict(a, receivers.get(a.device_id)) for a in found]
