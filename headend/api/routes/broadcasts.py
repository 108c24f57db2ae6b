from fastapi import APIRouter, status

from headend.api.deps import (
    EmergencySender,
    Operator,
    PublisherDep,
    Reader,
    SessionDep,
    SettingsDep,
)
from headend.api.schemas import (
    BroadcastCreate,
    BroadcastCreated,
    BroadcastDetail,
    BroadcastSummary,
    EmergencyCreate,
)
from headend.models import Broadcast, Delivery
from headend.services import broadcasts, escalation

router = APIRouter(tags=["broadcasts"])


def created(session, broadcast: Broadcast) -> BroadcastCreated:
    count = session.query(Delivery).filter(Delivery.broadcast_id == broadcast.id).count()
    return BroadcastCreated(id=broadcast.id, state=broadcast.state, start_at=broadcast.start_at,
                            receivers=count)


@router.post("/broadcasts", response_model=BroadcastCreated,
             status_code=status.HTTP_201_CREATED)
def create_broadcast(body: BroadcastCreate, session: SessionDep, settings: SettingsDep,
                     publisher: PublisherDep, user: Operator):
    """Play a media item on all receivers, some zones or some receivers, now or at a time.
    ``priority: "emergency"`` plays now everywhere targeted, preempting everything."""
    # Who may send which class is decided once, in the service (permission_for).
    broadcast = broadcasts.create_broadcast(
        session, settings=settings, publisher=publisher, media_id=body.media_id,
        targets=body.targets, priority=body.priority, start_at=body.start_at, actor=user)
    return created(session, broadcast)


@router.post("/emergency", response_model=BroadcastCreated,
             status_code=status.HTTP_201_CREATED)
def send_emergency(body: EmergencyCreate, session: SessionDep, settings: SettingsDep,
                   publisher: PublisherDep, user: EmergencySender):
    """One call: play ``media_id`` now on every receiver (or the targets given), at emergency
    volume, preempting everything. Cancel with DELETE /api/v1/broadcasts/{id}."""
    broadcast = broadcasts.send_emergency(session, settings=settings, publisher=publisher,
                                          media_id=body.media_id, targets=body.targets,
                                          actor=user)
    return created(session, broadcast)


@router.get("/broadcasts", response_model=list[BroadcastSummary])
def list_broadcasts(session: SessionDep, _: Reader, state: str | None = None,
                    priority: str | None = None, limit: int = 100):
    return broadcasts.list_broadcasts(session, limit=min(limit, 1000), state=state,
                                      priority=priority)


@router.get("/broadcasts/{broadcast_id}", response_model=BroadcastDetail)
def get_broadcast(broadcast_id: str, session: SessionDep, _: Reader):
    """The broadcast and every targeted receiver's state, from the receivers' own reports."""
    return broadcasts.broadcast_status(session, broadcast_id=broadcast_id)


@router.delete("/broadcasts/{broadcast_id}", response_model=BroadcastDetail)
def cancel_broadcast(broadcast_id: str, session: SessionDep, settings: SettingsDep,
                     publisher: PublisherDep, user: Operator):
    """Cancel: every receiver playing or holding it stops; none is sent it again."""
    broadcasts.cancel_broadcast(session, settings=settings, publisher=publisher,
                                broadcast_id=broadcast_id, actor=user)
    return broadcasts.broadcast_status(session, broadcast_id=broadcast_id)


@router.post("/broadcasts/{broadcast_id}/resend")
def resend_emergency(broadcast_id: str, session: SessionDep, settings: SettingsDep,
                     publisher: PublisherDep, user: EmergencySender) -> dict[str, int]:
    """Send a current emergency's play again, now, to every online receiver that has not
    acked it (the sweep does it by itself after ``emergency_confirm_s``, a few times)."""
    sent = escalation.resend(session, settings=settings, publisher=publisher,
                             broadcast_id=broadcast_id, actor=user)
    return {"resent": sent}
