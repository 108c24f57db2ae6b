"""Passwords (bcrypt), bearer tokens (JWT, HS256) and who may do what."""

import base64
import hashlib
import os
import secrets
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt

# Permission -> roles that hold it. The one place roles are interpreted.
PERMISSIONS = {
    "read": ("admin", "operator", "technician", "viewer"),
    "media": ("admin", "operator"),
    "broadcast": ("admin", "operator"),
    "emergency": ("admin", "operator"),
    "devices": ("admin", "technician"),      # provision, edit, commands to a receiver
    "zones": ("admin", "technician"),
    "users": ("admin",),
    "audit": ("admin",),
}

_ALGORITHM = "HS256"


BCRYPT_ROUNDS = 12


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def verify_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


# Mosquitto's own password hash ($7$ = PBKDF2-HMAC-SHA512), so the broker's password file can
# be exported from the database without ever storing a device's broker password in clear.
MOSQUITTO_ITERATIONS = 1000


def mosquitto_hash(password: str, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(),
                            base64.b64encode(digest).decode())


def make_token(*, secret: str, username: str, role: str, ttl_min: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": username, "role": role, "iat": now, "exp": now + timedelta(minutes=ttl_min)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def read_token(*, secret: str, token: str) -> str | None:
    """The username in a valid, unexpired token, else None."""
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM])
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


def random_password(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)


def random_key_hex() -> str:
    """A device's HMAC key: 32 random bytes as 64 hex characters."""
    return secrets.token_hex(32)


def has_permission(role: str, permission: str) -> bool:
    return role in PERMISSIONS.get(permission, ())
