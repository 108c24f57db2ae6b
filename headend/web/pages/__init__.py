"""Page routes, one module per screen an operator uses. Every route is a ``PageRoute``."""

from fastapi import APIRouter

from headend.web.pages import (
    alerts,
    auth,
    broadcasts,
    dashboard,
    emergency,
    firmware,
    live,
    map,
    playlog,
    programmes,
    receiver,
    receivers,
)

router = APIRouter()
for module in (auth, dashboard, receivers, receiver, map, broadcasts, emergency, playlog, live,
               programmes, firmware, alerts):
    router.include_router(module.router)
