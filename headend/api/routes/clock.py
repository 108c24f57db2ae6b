"""The head-end's clock as the signer sees it, and an admin's confirmation after a step."""

from fastapi import APIRouter
from pydantic import BaseModel

from headend.api.deps import Admin, Reader, SessionDep
from headend.clock_guard import CLOCK
from headend.services import audit

router = APIRouter(prefix="/clock", tags=["clock"])


class ClockState(BaseModel):
    trusted: bool
    problem: str | None
    now_ms: int


@router.get("", response_model=ClockState)
def clock_state(_: Reader):
    return CLOCK.state()


@router.post("/confirm", response_model=ClockState)
def confirm_clock(session: SessionDep, admin: Admin):
    """The admin checked the wall clock (against a phone, a radio): sign from it again."""
    before = CLOCK.state()
    CLOCK.confirm()
    audit.record(session, actor=admin, action="clock.confirm", detail={"was": before["problem"]})
    session.commit()
    return CLOCK.state()
