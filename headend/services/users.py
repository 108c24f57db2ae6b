"""Users and roles (admin, operator, technician, viewer)."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.errors import Conflict, Invalid, NotFound
from headend.models import ROLES, User
from headend.security import hash_password, verify_password
from headend.services import audit
from headend.services.sites import check_name

MIN_PASSWORD = 8


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise Invalid("weak-password", "password must have at least %d characters" % MIN_PASSWORD,
                      "Mật khẩu phải có ít nhất %d ký tự" % MIN_PASSWORD)


def create_user(session: Session, *, username: str, password: str, role: str,
                full_name: str | None = None, actor: User | str | None = None) -> User:
    username = (username or "").strip()
    if not username or len(username) > 64:
        raise Invalid("bad-username", "username must be 1-64 characters",
                      "Tên đăng nhập phải dài 1-64 ký tự")
    if role not in ROLES:
        raise Invalid("bad-role", "role must be one of %s" % ", ".join(ROLES),
                      "Vai trò phải là một trong: %s" % ", ".join(ROLES))
    _check_password(password)
    if get_user(session, username=username) is not None:
        raise Conflict("user-exists", "user %r already exists" % username,
                       "Người dùng %r đã tồn tại" % username)
    user = User(username=username, password_hash=hash_password(password), role=role,
                full_name=check_name(full_name) if full_name is not None else None)
    session.add(user)
    audit.record(session, actor=actor, action="user.create", target=username,
                 detail={"role": role})
    session.commit()
    return user


def get_user(session: Session, *, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """The active user with this name and password, else None (same answer for both failures)."""
    user = get_user(session, username=username)
    if user is None or not user.active or not verify_password(password, user.password_hash):
        return None
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def update_user(session: Session, *, username: str, role: str | None = None,
                password: str | None = None, active: bool | None = None,
                full_name: str | None = None, actor: User | str | None = None) -> User:
    user = get_user(session, username=username)
    if user is None:
        raise NotFound("unknown-user", "no user %r" % username,
                       "Không có người dùng %r" % username)
    changed: dict[str, str | bool] = {}
    if role is not None:
        if role not in ROLES:
            raise Invalid("bad-role", "role must be one of %s" % ", ".join(ROLES),
                          "Vai trò phải là một trong: %s" % ", ".join(ROLES))
        user.role = changed["role"] = role
    if password is not None:
        _check_password(password)
        user.password_hash = hash_password(password)
        changed["password"] = "changed"
    if active is not None:
        user.active = changed["active"] = active
    if full_name is not None:
        user.full_name = changed["full_name"] = check_name(full_name)
    audit.record(session, actor=actor, action="user.update", target=username, detail=changed)
    session.commit()
    return user
