"""Receivers' signing keys at rest: sealed (AES-256-GCM) under a key-encryption key (KEK) that
lives outside the database, so a copy of the database (a backup, a stolen file) yields no key.

The KEK comes from ``LOAXA_KEY_ENCRYPTION_KEY`` (64 hex chars; from a secret manager), else
from ``settings.resolved_kek_file`` (default ``{data_dir}/key-encryption-key``, 0600), made
with 32 random bytes when missing. A stored key reads ``kek1:`` + base64(nonce || ciphertext),
with the device id as associated data: a sealed key copied onto another receiver's row does
not open. A plain hex value (a database from before sealing) still opens, and
``seal_plain_keys`` seals those at start.

The KEK is read once per process and remembered per database, so the hot paths (signing
commands, opening reports) find it from their session without a file read or a settings
argument: ``kek_for(session)``.
"""

import base64
import logging
import os
import threading
from binascii import unhexlify
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from headend.models import Receiver
from headend.private_files import PRIVATE_FILE, make_private, write_atomically
from headend.services import audit
from headend.settings import Settings
from protocol.errors import ProtocolError

log = logging.getLogger(__name__)

PREFIX = "kek1:"
KEK_BYTES = 32
NONCE_BYTES = 12

_lock = threading.Lock()
_by_source: dict[str, bytes] = {}  # "env" value or KEK file path -> KEK
# database URL -> the KEK its keys are sealed under. URL objects hash as tuples: the lookup on
# every signing and every report costs no rendering of the URL.
_by_database: dict[URL, bytes] = {}


class DeviceKeyError(ProtocolError):
    """A stored device key that does not open: wrong KEK, tampered, or moved from another row.
    A ProtocolError, so the paths that already drop a receiver with an unusable key (ingest,
    the MQTT service's key cache) drop this one the same way. Names the device, never a key."""

    def __init__(self, device_id: str, why: str):
        super().__init__("unopenable-key", "stored key of receiver %r does not open (%s)"
                         % (device_id, why))
        self.device_id = device_id


class RekeyError(RuntimeError):
    """Rotation refused, or pending (names a receiver or a file, never a key)."""


def _next_kek_file(settings: Settings) -> Path:
    return settings.resolved_kek_file.with_name(settings.resolved_kek_file.name + ".next")


def _kek_from_hex(text: str, where: str) -> bytes:
    try:
        kek = unhexlify(text.strip())
    except ValueError:
        kek = b""
    if len(kek) != KEK_BYTES:
        raise ValueError("the key-encryption key in %s must be %d hex characters"
                         % (where, 2 * KEK_BYTES))
    return kek


def load_kek(settings: Settings, *, rotating: bool = False) -> bytes:
    """The KEK of ``settings`` (read once per process), remembered for its database.
    Refuses (RekeyError) while a rotation cut short is pending, unless ``rotating``: the keys
    may be sealed under the new file already, and a head-end on the old one would drop every
    command to every receiver."""
    if not rotating and not settings.key_encryption_key and _next_kek_file(settings).exists():
        raise RekeyError("a rotation of the key-encryption key was cut short (%s exists): run "
                         "`loaxa headend rekey` to finish it" % _next_kek_file(settings))
    with _lock:
        if settings.key_encryption_key:
            source = "env"
            kek = _by_source.get(source + settings.key_encryption_key)
            if kek is None:
                kek = _kek_from_hex(settings.key_encryption_key, "LOAXA_KEY_ENCRYPTION_KEY")
                _by_source[source + settings.key_encryption_key] = kek
        else:
            path = settings.resolved_kek_file
            kek = _by_source.get(str(path))
            if kek is None:
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_atomically(path, os.urandom(KEK_BYTES).hex().encode(), PRIVATE_FILE)
                    log.warning("made a new key-encryption key in %s: back it up apart from "
                                "the database", path)
                else:
                    make_private(path)
                kek = _kek_from_hex(path.read_text(), str(path))
                _by_source[str(path)] = kek
        _by_database[make_url(settings.resolved_database_url)] = kek
        return kek


def kek_for(session: Session) -> bytes:
    """The KEK for the database of ``session``: the one loaded for it, else (a SQLite file
    opened without settings, as scripts and tests do) the default of its folder."""
    url = session.get_bind().url
    kek = _by_database.get(url)
    if kek is not None:
        return kek
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return load_kek(Settings(data_dir=Path(url.database).parent,
                                 database_url=url.render_as_string(hide_password=False)))
    raise RuntimeError("no key-encryption key loaded for this database: call "
                       "headend.keystore.load_kek(settings) first")


def seal_device_key(kek: bytes, device_id: str, key_hex: str) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(kek).encrypt(nonce, unhexlify(key_hex), device_id.encode())
    return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def open_device_key(kek: bytes, device_id: str, stored: str) -> str:
    """The key (hex) of ``device_id`` from its stored value; a legacy plain hex value as is."""
    if not is_sealed(stored):
        return stored
    try:
        blob = base64.b64decode(stored[len(PREFIX):], validate=True)
    except ValueError:
        raise DeviceKeyError(device_id, "not base64") from None
    if len(blob) <= NONCE_BYTES:
        raise DeviceKeyError(device_id, "too short")
    try:
        key = AESGCM(kek).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], device_id.encode())
    except InvalidTag:
        raise DeviceKeyError(device_id, "wrong key-encryption key, altered, or another "
                                        "receiver's") from None
    return key.hex()


def open_stored(session: Session, device_id: str, stored: str) -> str:
    """``open_device_key`` with the KEK of ``session``'s database (none needed for plain hex)."""
    return open_device_key(kek_for(session), device_id, stored) if is_sealed(stored) else stored


def seal_plain_keys(session: Session, kek: bytes) -> int:
    """Seal every receiver key still stored in plain hex (idempotent); returns how many.
    The caller commits."""
    count = 0
    for receiver in session.scalars(select(Receiver).where(~Receiver.device_key.startswith(PREFIX))):
        try:
            receiver.device_key = seal_device_key(kek, receiver.id, receiver.device_key)
        except ValueError:
            log.error("receiver %s has an unusable key in the database: left as is", receiver.id)
            continue
        count += 1
    if count:
        log.warning("sealed %d receiver keys that were stored in plain", count)
    return count


# -- rotation ------------------------------------------------------------------------------

def cap_source_aad(source_id: str) -> str:
    """What a CAP source's sealed HMAC secret is bound to, as a receiver's key is to its id."""
    return "cap-source:%s" % source_id


def _sealed_slots(session: Session):
    """Every secret sealed under the KEK: (row, attribute, associated data), receivers first."""
    from headend.models import CapSource

    for receiver in session.scalars(select(Receiver).order_by(Receiver.id)):
        yield receiver, "device_key", receiver.id
        if receiver.pending_key is not None:  # a rotation under way (services/rotation.py)
            yield receiver, "pending_key", receiver.id
            yield receiver, "pending_password", "%s:rekey-password" % receiver.id
    for source in session.scalars(select(CapSource).where(CapSource.hmac_secret.is_not(None))
                                  .order_by(CapSource.id)):
        yield source, "hmac_secret", cap_source_aad(source.id)


def _opens_all(session: Session, kek: bytes) -> bool:
    for row, attr, aad in _sealed_slots(session):
        stored = getattr(row, attr)
        if not is_sealed(stored):
            continue
        try:
            open_device_key(kek, aad, stored)
        except DeviceKeyError:
            return False
    return True


def reseal_all(session: Session, old: bytes, new: bytes) -> int:
    """Seal every receiver's key and every CAP source's HMAC secret under ``new`` (opened with
    ``old``; plain ones as they are), all or none: one that does not open stops it with
    RekeyError before the caller commits. Returns how many receivers' keys were resealed."""
    slots = list(_sealed_slots(session))
    resealed = []
    for row, attr, aad in slots:
        try:
            plain = open_device_key(old, aad, getattr(row, attr))
            resealed.append(seal_device_key(new, aad, plain))
        except (DeviceKeyError, ValueError) as exc:
            raise RekeyError("%s: its stored secret does not open with the current "
                             "key-encryption key (%s); nothing was changed"
                             % (aad if attr == "hmac_secret" else "receiver " + aad,
                                getattr(exc, "reason", "not hex"))) from None
    for (row, attr, _), value in zip(slots, resealed, strict=True):
        setattr(row, attr, value)
    return sum(1 for _, attr, _ in slots if attr == "device_key")


def rekey_file(session: Session, settings: Settings) -> int:
    """Rotate the KEK file: a new random KEK is written next to it (``.next``, 0600), every key
    is resealed under it in one transaction, then the new file replaces the old. A run cut short
    at any step is finished by running it again: the keys open with exactly one of the two files.
    The head-end must be stopped (a running one keeps the old KEK in memory). Returns how many
    keys were resealed."""
    current_path, next_path = settings.resolved_kek_file, _next_kek_file(settings)
    current = load_kek(settings, rotating=True)
    if next_path.exists():
        pending = _kek_from_hex(next_path.read_text(), str(next_path))
        if not _opens_all(session, current) and _opens_all(session, pending):
            os.replace(next_path, current_path)  # committed last time; only the swap was left
            _forget(settings)
            return 0
        next_path.unlink()  # written but never committed: start over with a fresh one
    new = os.urandom(KEK_BYTES)
    write_atomically(next_path, new.hex().encode(), PRIVATE_FILE)
    count = reseal_all(session, current, new)
    audit.record(session, actor="cli", action="keys.rekey", detail={"receivers": count})
    session.commit()
    os.replace(next_path, current_path)
    _forget(settings)
    return count


def rekey_given(session: Session, settings: Settings, new_hex: str) -> int:
    """Rotate a KEK given by environment: reseal every key under ``new_hex`` (idempotent: keys
    already under it are left). The caller then puts ``new_hex`` in LOAXA_KEY_ENCRYPTION_KEY."""
    new = _kek_from_hex(new_hex, "LOAXA_NEW_KEY_ENCRYPTION_KEY")
    current = load_kek(settings)
    if current == new:
        raise RekeyError("the new key-encryption key is the current one")
    if not _opens_all(session, current) and _opens_all(session, new):
        return 0
    count = reseal_all(session, current, new)
    audit.record(session, actor="cli", action="keys.rekey", detail={"receivers": count})
    session.commit()
    _forget(settings)
    return count


def _forget(settings: Settings) -> None:
    """Drop what this process remembered of the old KEK."""
    with _lock:
        _by_source.clear()
        _by_database.pop(make_url(settings.resolved_database_url), None)
