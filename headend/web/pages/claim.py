"""Nhận cụm loa: a technician at a pole, on a phone, types the receiver's id and the claim code
from the pole's label (or pastes what the QR code holds) and puts it in its village, with the
pole's coordinates (the phone's position, one tap). headend/services/claims.py checks the code,
backs off repeated wrong ones and audits every attempt."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import RedirectResponse

from headend.api.deps import SessionDep
from headend.api.routes.auth import client_address
from headend.errors import ServiceError
from headend.models import User
from headend.services import claims
from headend.services.sites import list_zones
from headend.web.csrf import CsrfChecked
from headend.web.guard import PageRoute, allowed
from headend.web.rendering import error_text, render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

DevicesUser = Annotated[User, Depends(allowed("devices"))]


def _number(text: str) -> float | None:
    text = (text or "").strip().replace(",", ".")
    return float(text) if text else None


def _context(session, values: dict, **extra) -> dict:
    zones = [zone for zone, _, _ in list_zones(session)]
    return dict({"zones": zones, "values": values}, **extra)


@router.get("/claim")
def claim_form(request: Request, session: SessionDep, _user: DevicesUser, device: str = ""):
    return render(request, "claim.html", _context(session, {"device": device}))


@router.post("/claim")
def claim(request: Request, session: SessionDep, user: DevicesUser, _: CsrfChecked,
          device: Annotated[str, Form()] = "", code: Annotated[str, Form()] = "",
          zone: Annotated[str, Form()] = "", lat: Annotated[str, Form()] = "",
          lon: Annotated[str, Form()] = ""):
    values = {"device": device.strip(), "code": code, "zone": zone, "lat": lat, "lon": lon}
    t = translator_of(request)
    try:
        claimed = claims.claim_device(
            session, throttle=claims.claim_throttle_of(request.app.state),
            address=client_address(request), device_id=device, code=code,
            zone_id=zone or None, lat=_number(lat), lon=_number(lon), actor=user)
    except ValueError:
        return render(request, "claim.html", _context(session, values,
                      error=t("claim.bad_number")), status_code=422)
    except ServiceError as exc:
        session.rollback()
        response = render(request, "claim.html",
                          _context(session, values, error=error_text(t, exc)),
                          status_code=exc.status)
        if isinstance(exc, claims.TooManyCodes):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    return RedirectResponse("/receivers/%s?claimed=1" % claimed.id, status.HTTP_303_SEE_OTHER)
