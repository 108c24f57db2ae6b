"""Page routes, one module per screen an operator uses. Every route is a ``PageRoute``."""

from fastapi import APIRouter

from headend.web.pages import (
    alerts,
    auth,
    broadcasts,
    cap_feeds,
    claim,
    dashboard,
    emergency,
    firmware,
    library,
    live,
    map,
    playlog,
    programmes,
    receiver,
    receivers,
    selftest,
)

router = APIRouter()
for module in (auth, dashboard, receivers, receiver, map, broadcasts, emergency, playlog, live,
               programmes, firmware, alerts, selftest, library,
               claim, cap_feeds):
    router.include_router(module.router)
