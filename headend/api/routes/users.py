from fastapi import APIRouter, status

from headend.api.deps import Admin, SessionDep
from headend.api.schemas import UserCreate, UserPublic, UserUpdate
from headend.services import users

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[UserPublic])
def list_users(session: SessionDep, _: Admin):
    return users.list_users(session)


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, session: SessionDep, admin: Admin):
    return users.create_user(session, username=body.username, password=body.password,
                             role=body.role, full_name=body.full_name, actor=admin)


@router.patch("/{username}", response_model=UserPublic)
def update_user(username: str, body: UserUpdate, session: SessionDep, admin: Admin):
    return users.update_user(session, username=username, role=body.role, password=body.password,
                             active=body.active, full_name=body.full_name, actor=admin)
