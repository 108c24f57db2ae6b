"""Page routes, one module per screen an operator uses. Every route is a ``PageRoute``."""

from fastapi import APIRouter

from headend.web.pages import auth, broadcasts, emergency, live, playlog, receivers

router = APIRouter()
for module in (auth, receivers, broadcasts, emergency, playlog, live):
    router.include_router(module.router)
