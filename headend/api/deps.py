"""Annotated dependencies shared by every route: the session, the settings, the current user,
the publisher that sends commands, and role checks."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from headend.commands import Publisher
from headend.errors import Forbidden
from headend.models import User
from headend.security import has_permission, read_token
from headend.services.login_throttle import LoginThrottle, throttle_of
from headend.services.users import get_user
from headend.settings import Settings
from headend.web.csrf import HEADER as CSRF_HEADER
from headend.web.csrf import csrf_valid

# The pages keep the same bearer token in this cookie (headend/web sets it at log-in).
SESSION_COOKIE = "loaxa_token"

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)

# Methods that change nothing: a cookie is enough for them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIX = "/api/"


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.close()


def get_publisher(request: Request) -> Publisher:
    return request.app.state.publisher


def get_login_throttle(request: Request) -> LoginThrottle:
    return throttle_of(request.app.state)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
TokenDep = Annotated[str | None, Depends(oauth2_scheme)]
ThrottleDep = Annotated[LoginThrottle, Depends(get_login_throttle)]


def get_current_user(request: Request, session: SessionDep, settings: SettingsDep,
                     token: TokenDep) -> User:
    """The user of a bearer token (API) or of the session cookie the pages set.

    A token made before the user's last password change or deactivation (an older
    ``token_epoch``) is refused. An API call that changes something and is authenticated by
    the cookie alone must carry the CSRF header: a browser sends the cookie to any site's form
    or script, never a bearer header (the pages' own forms check their CSRF field themselves).
    """
    by_cookie = not token
    token = token or request.cookies.get(SESSION_COOKIE)
    claims = read_token(secret=settings.secret_key, token=token) if token else None
    user = get_user(session, username=claims.username) if claims else None
    if user is None or not user.active or claims is None or claims.epoch != user.token_epoch:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in or token expired",
                            headers={"WWW-Authenticate": "Bearer"})
    if (by_cookie and request.method not in SAFE_METHODS
            and request.url.path.startswith(API_PREFIX)
            and not csrf_valid(request, request.headers.get(CSRF_HEADER))):
        raise Forbidden("csrf", "a change authenticated by the session cookie needs the %s "
                        "header" % CSRF_HEADER,
                        "Yêu cầu thiếu mã chống giả mạo (CSRF). Vui lòng tải lại trang rồi "
                        "thử lại.")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require(permission: str):
    """A dependency that lets through only users whose role holds ``permission``."""

    def check(user: CurrentUser) -> User:
        if not has_permission(user.role, permission):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                "role %s may not do this (%s)" % (user.role, permission))
        return user

    return check


Reader = Annotated[User, Depends(require("read"))]
Operator = Annotated[User, Depends(require("broadcast"))]
EmergencySender = Annotated[User, Depends(require("emergency"))]
MediaEditor = Annotated[User, Depends(require("media"))]
Technician = Annotated[User, Depends(require("devices"))]
Admin = Annotated[User, Depends(require("users"))]
