"""Users and roles (admin, operator, technician, viewer, editor, leader).

User names: 1-64 characters, each a Latin letter (Vietnamese ones included, stored in NFC), a
digit 0-9 or one of ``. _ - @``; no spaces or control characters, and no letters of other
scripts (a Cyrillic "а" would make a second "admin" that looks the same). Unique ignoring case.
"""

import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.db import begin_writing
from headend.errors import Conflict, Invalid, NotFound
from headend.models import ROLES, User
from headend.security import MAX_PASSWORD_BYTES, hash_password, verify_password
from headend.services import audit
from headend.services.sites import check_name

MIN_PASSWORD = 8
MAX_USERNAME = 64
_USERNAME_SYMBOLS = frozenset("0123456789._-@")


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise Invalid("weak-password", "password must have at least %d characters" % MIN_PASSWORD,
                      "Mật khẩu phải có ít nhất %d ký tự" % MIN_PASSWORD)
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): not text at all
        raise Invalid("bad-password", "password must be valid text",
                      "Mật khẩu chứa ký tự không hợp lệ") from None
    if size > MAX_PASSWORD_BYTES:
        raise Invalid("password-too-long",
                      "password must be at most %d bytes in UTF-8" % MAX_PASSWORD_BYTES,
                      "Mật khẩu dài tối đa %d byte (chữ có dấu tính 2-3 byte)"
                      % MAX_PASSWORD_BYTES)


def _allowed_in_username(ch: str) -> bool:
    if ch in _USERNAME_SYMBOLS:
        return True
    return unicodedata.category(ch).startswith("L") and \
        unicodedata.name(ch, "").startswith("LATIN ")


def check_username(username: str) -> str:
    """The name in NFC, or Invalid "bad-username" (see the module's docstring)."""
    name = unicodedata.normalize("NFC", username or "")
    if not 1 <= len(name) <= MAX_USERNAME or not all(map(_allowed_in_username, name)):
        raise Invalid("bad-username",
                      "username must be 1-%d letters, digits or . _ - @ (no spaces or "
                      "control characters)" % MAX_USERNAME,
                      "Tên đăng nhập phải dài 1-%d ký tự, chỉ gồm chữ cái, chữ số và . _ - @ "
                      "(không có dấu cách hay ký tự điều khiển)" % MAX_USERNAME)
    return name


def _name_taken(session: Session, username: str) -> bool:
    # In Python, not SQL lower(): SQLite's lower() folds only ASCII ("Đ" would not match "đ").
    # A commune has tens of users.
    folded = username.casefold()
    return any(name.casefold() == folded for name in session.scalars(select(User.username)))


def create_user(session: Session, *, username: str, password: str, role: str,
                full_name: str | None = None, actor: User | str | None = None) -> User:
    username = check_username(username)
    if role not in ROLES:
        raise Invalid("bad-role", "role must be one of %s" % ", ".join(ROLES),
                      "Vai trò phải là một trong: %s" % ", ".join(ROLES))
    _check_password(password)
    if _name_taken(session, username):
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
    """The active user with this name and password, else None (same answer for both failures,
    and the same time: an unknown or inactive user is checked against a dummy hash)."""
    try:
        # Never a name the database could choke on (a NUL is an error on PostgreSQL).
        user = get_user(session, username=check_username(username))
    except Invalid:
        user = None
    known = user is not None and user.active
    if not verify_password(password, user.password_hash if known else None) or not known:
        return None
    return user


def _check_not_last_admin(session: Session, user: User) -> None:
    """Conflict "last-admin" if ``user`` is the only active admin (nobody could manage users)."""
    begin_writing(session)  # two admins demoting each other at once: one waits for the other
    admins = session.scalars(select(User.id).where(User.role == "admin", User.active.is_(True))
                             .with_for_update()).all()
    if all(admin_id == user.id for admin_id in admins):
        session.rollback()  # let go of the write lock now
        raise Conflict("last-admin", "%r is the last active admin" % user.username,
                       "%r là quản trị viên cuối cùng còn hoạt động: không thể hạ quyền hay "
                       "khóa tài khoản này" % user.username)


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
    if password is not None:
        _check_password(password)
    losing_admin = user.role == "admin" and user.active and (
        (role is not None and role != "admin") or active is False)
    if losing_admin:
        _check_not_last_admin(session, user)
    if role is not None:
        user.role = changed["role"] = role
    if password is not None:
        user.password_hash = hash_password(password)
        user.token_epoch += 1  # every token made with the old password stops working
        changed["password"] = "changed"
    if active is not None:
        if user.active and not active:
            user.token_epoch += 1
        user.active = changed["active"] = active
    if full_name is not None:
        user.full_name = changed["full_name"] = check_name(full_name)
    audit.record(session, actor=actor, action="user.update", target=username, detail=changed)
    session.commit()
    return user
