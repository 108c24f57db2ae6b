"""Passwords (bcrypt), bearer tokens (JWT, HS256) and who may do what."""

import base64
import hashlib
import os
import secrets
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import bcrypt
import jwt

# Permission -> roles that hold it. The one place roles are interpreted.
PERMISSIONS = {
    "read": ("admin", "operator", "technician", "viewer", "editor", "leader"),
    "media": ("admin", "operator", "editor"),  # an editor uploads a programme's recordings
    "broadcast": ("admin", "operator"),
    "emergency": ("admin", "operator"),
    "devices": ("admin", "technician"),      # provision, edit, commands to a receiver
    "zones": ("admin", "technician"),
    "users": ("admin",),
    "audit": ("admin",),
    # Programmes (headend/services/programmes.py): an editor drafts and submits, a leader
    # approves or rejects (and may confirm one in the quiet hours).
    "programmes.edit": ("admin", "editor"),
    "programmes.approve": ("admin", "leader"),
}

_ALGORITHM = "HS256"


BCRYPT_ROUNDS = 12
# bcrypt reads at most 72 bytes (bcrypt 5 refuses more): a longer password is refused at
# create/update, and at login it is simply wrong.
MAX_PASSWORD_BYTES = 72

# A hash of nothing anyone knows, per cost: an unknown or inactive user's login checks it, so
# it takes as long as a real one and the timing does not say which names exist.
_dummy_hashes: dict[int, bytes] = {}


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def _dummy_hash() -> bytes:
    rounds = BCRYPT_ROUNDS
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds))
    return _dummy_hashes[rounds]


def verify_password(password: str, hashed: str | None) -> bool:
    """True if ``password`` matches ``hashed``. ``hashed=None`` (no such user) checks a dummy
    hash of the same cost and is False: always exactly one bcrypt check, whatever the input."""
    secret = password.encode("utf-8", "surrogatepass") if password else b""
    too_long = len(secret) > MAX_PASSWORD_BYTES
    try:
        matches = bcrypt.checkpw(secret[:MAX_PASSWORD_BYTES],
                                 hashed.encode() if hashed else _dummy_hash())
    except ValueError:  # a malformed stored hash
        return False
    return matches and hashed is not None and not too_long


# Mosquitto's own password hash ($7$ = PBKDF2-HMAC-SHA512), so the broker's password file can
# be exported from the database without ever storing a device's broker password in clear.
MOSQUITTO_ITERATIONS = 1000


def mosquitto_hash(password: str, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(),
                            base64.b64encode(digest).decode())


class TokenClaims(NamedTuple):
    username: str
    epoch: int  # the user's token_epoch when it was made; a password change bumps it


def make_token(*, secret: str, username: str, role: str, ttl_min: int, epoch: int) -> str:
    if ttl_min <= 0:
        raise ValueError("a token must expire: ttl_min must be positive")
    now = datetime.now(UTC)
    claims = {"sub": username, "role": role, "ep": epoch, "iat": now,
              "exp": now + timedelta(minutes=ttl_min)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def read_token(*, secret: str, token: str) -> TokenClaims | None:
    """The claims of a valid, unexpired token, else None. A token without an expiry, an issue
    time, a subject or an epoch is refused: every token this head-end makes has them."""
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM],
                            options={"require": ["exp", "iat", "sub", "ep"]})
    except jwt.PyJWTError:
        return None
    sub, epoch = claims.get("sub"), claims.get("ep")
    if not isinstance(sub, str) or type(epoch) is not int:
        return None
    return TokenClaims(sub, epoch)


def random_password(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)


def random_key_hex() -> str:
    """A device's HMAC key: 32 random bytes as 64 hex characters."""
    return secrets.token_hex(32)


def has_permission(role: str, permission: str) -> bool:
    return role in PERMISSIONS.get(permission, ())
