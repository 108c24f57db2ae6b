"""Who may see a page, and what an operator sees when something goes wrong.

``PageRoute`` wraps every page handler: not signed in -> the login page (and back afterwards);
not allowed, bad input, unknown id -> a page that says so in Vietnamese (or English); anything
unexpected -> logged with its traceback, and a plain apology on the page. Never a stack trace.
"""

import logging
from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.routing import APIRoute

from headend.api.deps import CurrentUser
from headend.errors import ServiceError
from headend.models import User
from headend.security import has_permission
from headend.web.rendering import error_text, render, translator_of

log = logging.getLogger(__name__)

# HTTPException details the pages raise themselves, mapped to catalog keys.
_DETAIL_KEYS = {"csrf": "error.csrf", "forbidden": "error.forbidden"}


def is_fragment(request: Request) -> bool:
    """A request from the pages' auto-refresh script for a part of a page."""
    return request.query_params.get("fragment") == "1"


def error_page(request: Request, status_code: int, message: str) -> Response:
    if is_fragment(request):
        return PlainTextResponse(message, status_code=status_code)
    return render(request, "error.html", {"status": status_code, "message": message},
                  status_code=status_code)


def login_redirect(request: Request) -> Response:
    if is_fragment(request):
        return PlainTextResponse("login", status_code=status.HTTP_401_UNAUTHORIZED)
    here = request.url.path + ("?" + request.url.query if request.url.query else "")
    return RedirectResponse("/login?next=" + quote(here, safe=""), status.HTTP_303_SEE_OTHER)


def _http_message(request: Request, exc: HTTPException) -> str:
    t = translator_of(request)
    key = _DETAIL_KEYS.get(str(exc.detail))
    if key is not None:
        return t(key)
    if exc.status_code == status.HTTP_403_FORBIDDEN:
        return t("error.forbidden")
    if exc.status_code == status.HTTP_404_NOT_FOUND:
        return t("error.not_found")
    return t("error.bad_request")


class PageRoute(APIRoute):
    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                if exc.status_code == status.HTTP_401_UNAUTHORIZED:
                    return login_redirect(request)
                return error_page(request, exc.status_code, _http_message(request, exc))
            except ServiceError as exc:
                return error_page(request, exc.status, error_text(translator_of(request), exc))
            except RequestValidationError:
                return error_page(request, 422, translator_of(request)("error.bad_request"))
            except Exception:
                log.exception("page %s %s failed", request.method, request.url.path)
                return error_page(request, 500, translator_of(request)("error.unexpected"))

        return guarded


def page_user(request: Request, user: CurrentUser) -> User:
    """The signed-in user (same token as the API), kept for the page's header."""
    request.state.user = user
    return user


PageUser = Annotated[User, Depends(page_user)]


def allowed(permission: str):
    """A dependency: the signed-in user, if their role holds ``permission``."""

    def check(user: PageUser) -> User:
        if not has_permission(user.role, permission):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "forbidden")
        return user

    return check


Broadcaster = Annotated[User, Depends(allowed("broadcast"))]
EmergencyUser = Annotated[User, Depends(allowed("emergency"))]
