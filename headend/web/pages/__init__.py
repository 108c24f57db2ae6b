"""Page routes, one module per screen an operator uses. Every route is a ``PageRoute``."""

from fastapi import APIRouter

from headend.web.pages import (
    auth,
    broadcasts,
    dashboard,
    emergency,
    library,
    live,
    map,
    playlog,
    programmes,
    receiver,
    receivers,
)

router = APIRouter()
for module in (auth, dashboard, receivers, receiver, map, broadcasts, emergency, playlog, live,
               programmes, library):
    router.include_router(module.router)
