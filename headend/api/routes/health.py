from fastapi import APIRouter, Request
from sqlalchemy import func, select

from headend.api.deps import SessionDep, SettingsDep
from headend.api.schemas import Health
from headend.clock_guard import CLOCK
from headend.models import Receiver

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(request: Request, session: SessionDep, settings: SettingsDep):
    """Liveness for monitoring: MQTT link, receivers online, ingest counters, whether the
    clock is trusted for signing (no login)."""
    mqtt = getattr(request.app.state, "mqtt", None)
    total, online = session.execute(
        select(func.count(), func.count().filter(Receiver.online.is_(True)))).one()
    stats = {k: int(v) for k, v in (mqtt.stats.items() if mqtt is not None else [])}
    problem = CLOCK.problem()
    return Health(status="ok" if problem is None else "degraded", site=settings.site_id,
                  mqtt_connected=bool(mqtt is not None and mqtt.connected.is_set()),
                  receivers=total, online=online, stats=stats,
                  clock_trusted=problem is None, clock_problem=problem)
