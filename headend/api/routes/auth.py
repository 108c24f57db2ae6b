from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm

from headend.api.deps import CurrentUser, SessionDep, SettingsDep, ThrottleDep
from headend.api.schemas import Token, UserPublic
from headend.security import make_token
from headend.services.login_throttle import TooManyAttempts
from headend.services.users import authenticate

router = APIRouter(prefix="/auth", tags=["auth"])


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/token", response_model=Token,
             responses={429: {"description": "too many failed logins (see Retry-After)"}})
def login(request: Request, session: SessionDep, settings: SettingsDep, throttle: ThrottleDep,
          form: Annotated[OAuth2PasswordRequestForm, Depends()]):
    """OAuth2 password flow: a bearer token for the API (and the pages' cookie)."""
    address = client_address(request)
    try:
        throttle.begin(username=form.username, address=address)
    except TooManyAttempts as wait:
        return JSONResponse(wait.as_dict(), status_code=wait.status,
                            headers={"Retry-After": str(wait.retry_after_s)})
    user = authenticate(session, username=form.username, password=form.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    throttle.succeeded(username=form.username, address=address)
    token = make_token(secret=settings.secret_key, username=user.username, role=user.role,
                       ttl_min=settings.token_ttl_min, epoch=user.token_epoch)
    return Token(access_token=token, role=user.role)


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)
