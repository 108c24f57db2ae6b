"""CSRF protection for the cookie-authenticated forms.

A random nonce lives in an HttpOnly cookie; every form carries ``HMAC(secret_key, nonce)``.
A page on another site can neither read the cookie nor compute the MAC without the head-end's
secret, so it cannot forge a form post (and the session cookie is SameSite=Lax on top).
The nonce is not tied to the login, so the login form itself is protected too.

The API accepts the same session cookie; a state-changing API call authenticated by it (not by
a bearer header) must carry the same token in the ``X-CSRF-Token`` header
(headend/api/deps.py), e.g. a page script reading it from the page's form field.
"""

import hashlib
import hmac
import re
import secrets
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request, Response, status

COOKIE = "loaxa_csrf"
FIELD = "csrf"
HEADER = "X-CSRF-Token"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def _cookie_nonce(request: Request) -> str | None:
    nonce = request.cookies.get(COOKIE)
    return nonce if nonce and _NONCE.match(nonce) else None


def _mac(request: Request, nonce: str) -> str:
    secret = request.app.state.settings.secret_key.encode()
    return hmac.new(secret, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The token this browser's forms must carry (a new nonce is made on first sight)."""
    nonce = _cookie_nonce(request) or getattr(request.state, "new_csrf_nonce", None)
    if nonce is None:
        nonce = request.state.new_csrf_nonce = secrets.token_urlsafe(24)
    return _mac(request, nonce)


def remember_nonce(request: Request, response: Response) -> None:
    """Set the nonce cookie if this request made a new one."""
    nonce = getattr(request.state, "new_csrf_nonce", None)
    if nonce is not None:
        response.set_cookie(COOKIE, nonce, httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/")


def csrf_valid(request: Request, token: str | None) -> bool:
    """True if ``token`` is the one made for this browser's nonce cookie."""
    nonce = _cookie_nonce(request)
    return nonce is not None and token is not None and hmac.compare_digest(
        token.encode("utf-8", "replace"), _mac(request, nonce).encode())


def check_csrf(request: Request, csrf: Annotated[str, Form()] = "") -> None:
    if not csrf_valid(request, csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "csrf")


CsrfChecked = Annotated[None, Depends(check_csrf)]
