"""The /api/v1 router: every resource's routes, and ServiceError -> clear 4xx answers."""

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from headend.api.routes import (
    alerts,
    audit,
    auth,
    broadcasts,
    calendar,
    cap,
    cap_feeds,
    clock,
    dashboard,
    devices,
    firmware,
    health,
    live,
    media,
    playlog,
    programmes,
    selftest,
    users,
    zones,
)
from headend.errors import ServiceError

api_router = APIRouter(prefix="/api/v1")
for module in (auth, users, zones, devices, media, broadcasts, cap_feeds, cap, programmes, calendar,
               playlog, audit, health, clock, live, dashboard, firmware, alerts,
               selftest):
    api_router.include_router(module.router)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError):
        return JSONResponse(exc.as_dict(), status_code=exc.status,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
            problems.append("%s: %s" % (where or "body", error.get("msg", "invalid")))
        message = "; ".join(problems) or "invalid request"
        return JSONResponse({"detail": message, "code": "invalid-request",
                             "message_vi": "Yêu cầu không hợp lệ: " + message,
                             "errors": jsonable_encoder(exc.errors())}, status_code=422)
