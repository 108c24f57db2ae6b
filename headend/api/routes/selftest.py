"""The periodic test (kiểm tra định kỳ): run it now, and the latest run's results."""

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel

from headend.api.deps import PublisherDep, Reader, SessionDep, SettingsDep, Technician
from headend.services import selftests

router = APIRouter(prefix="/selftest", tags=["selftest"])


class SelftestStarted(BaseModel):
    run_id: str


class SelftestReceiver(BaseModel):
    device_id: str
    name: str
    zone_id: str | None
    state: Literal["passed", "failed", "no-answer", "waiting"]
    reason: str | None  # firmware/reasons.py, or "offline" / "timeout" for no answer
    answered_at: datetime | None
    result: dict[str, Any] | None  # what the receiver read: sink, relay, fault, ma, flash, ...


class SelftestRunPublic(BaseModel):
    id: str
    started_at: datetime
    actor: str | None
    slot: datetime | None  # the scheduled time it ran for (none: by hand)
    complete: bool  # no receiver is still waiting to answer
    counts: dict[str, int]
    receivers: list[SelftestReceiver]
    next_run: datetime | None  # the next scheduled run (none: no schedule)


@router.post("", response_model=SelftestStarted, status_code=status.HTTP_202_ACCEPTED)
def run_selftest(session: SessionDep, settings: SettingsDep, publisher: PublisherDep,
                 user: Technician):
    """Send the periodic test to every receiver online now (technician or admin)."""
    run = selftests.start_run(session, settings=settings, publisher=publisher, actor=user)
    return SelftestStarted(run_id=run.id)


@router.get("", response_model=SelftestRunPublic)
def latest_selftest(session: SessionDep, settings: SettingsDep, _: Reader):
    """The latest run: per receiver passed / failed / no answer with the reason, failures
    first; 404 before the first run."""
    out = selftests.latest_run(session, settings=settings)
    out["next_run"] = selftests.next_slot(settings)
    return out
