from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm

from headend.api.deps import CurrentUser, SessionDep, SettingsDep
from headend.api.schemas import Token, UserPublic
from headend.security import make_token
from headend.services.users import authenticate

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=Token)
def login(session: SessionDep, settings: SettingsDep,
          form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    """OAuth2 password flow: a bearer token for the API (and the pages' cookie)."""
    user = authenticate(session, username=form.username, password=form.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    token = make_token(secret=settings.secret_key, username=user.username, role=user.role,
                       ttl_min=settings.token_ttl_min)
    return Token(access_token=token, role=user.role)


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)
