"""Log in and out (a cookie holding the API's own bearer token), and the language switch."""

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse

from headend.api.deps import SessionDep, SettingsDep, ThrottleDep
from headend.api.routes.auth import client_address
from headend.i18n import pick_language
from headend.security import make_token
from headend.services.login_throttle import TooManyAttempts
from headend.services.users import authenticate
from headend.web.csrf import CsrfChecked
from headend.web.guard import PageRoute
from headend.web.rendering import LANGUAGE_COOKIE, error_text, render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

# headend/api/deps.py reads the same cookie: one token, for the pages and for their scripts.
SESSION_COOKIE = "loaxa_token"
HOME = "/"  # the dashboard (headend/web/pages/dashboard.py)
ONE_YEAR_S = 365 * 24 * 3600


def safe_next(target: str | None) -> str:
    """Only a path on this site (no //host or scheme), so the login cannot redirect away."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME


@router.get("/login")
def login_form(request: Request, next: str = HOME):
    return render(request, "login.html", {"next": safe_next(next)})


@router.post("/login")
def login(request: Request, session: SessionDep, settings: SettingsDep, throttle: ThrottleDep,
          _: CsrfChecked, username: Annotated[str, Form()] = "",
          password: Annotated[str, Form()] = "", next: Annotated[str, Form()] = HOME):
    # The same back-off as POST /api/v1/auth/token, and the same counts.
    username, address = username.strip(), client_address(request)
    try:
        throttle.begin(username=username, address=address)
    except TooManyAttempts as wait:
        response = render(request, "login.html",
                          {"next": safe_next(next), "username": username,
                           "error": error_text(translator_of(request), wait)},
                          status_code=wait.status)
        response.headers["Retry-After"] = str(wait.retry_after_s)
        return response
    user = authenticate(session, username=username, password=password)
    if user is None:
        return render(request, "login.html",
                      {"next": safe_next(next), "username": username,
                       "error": translator_of(request)("login.failed")},
                      status_code=status.HTTP_401_UNAUTHORIZED)
    throttle.succeeded(username=username, address=address)
    token = make_token(secret=settings.secret_key, username=user.username, role=user.role,
                       ttl_min=settings.token_ttl_min, epoch=user.token_epoch)
    response = RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.token_ttl_min * 60,
                        httponly=True, samesite="lax", secure=request.url.scheme == "https",
                        path="/")
    return response


@router.post("/logout")
def logout(_: CsrfChecked):
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{language}")
def switch_language(language: str, next: str = HOME):
    response = RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)
    response.set_cookie(LANGUAGE_COOKIE, pick_language(language), max_age=ONE_YEAR_S,
                        samesite="lax", path="/")
    return response
