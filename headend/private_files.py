"""Secrets at rest: the head-end's database, its key-encryption key and its TLS keys are
readable by its own user only.

The SQLite file holds every receiver's signing key and broker password hash, the TLS folder
the site CA's private key. A 0644 file in a 0755 folder (what a default umask gives) lets any
account on the machine read them. At start the head-end makes what is missing private (0700
folders, 0600 files), tightens what it finds too open (with a warning naming the file) and
refuses to start when it cannot. PostgreSQL keeps its own files; only SQLite's are ours.
"""

import logging
import os
import stat
from pathlib import Path

from headend.settings import Settings

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite's companions of a database file: they hold the same rows as the file itself.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


class ExposedSecrets(RuntimeError):
    """A file holding secrets is readable by others and this user cannot change that."""


def sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1]
    return None if not path or path == ":memory:" else Path(path)


def _private_paths(settings: Settings) -> list[Path]:
    paths = []
    database = sqlite_file(settings.resolved_database_url)
    if database is not None:
        paths += [database.parent, database]
        paths += [database.with_name(database.name + suffix) for suffix in SQLITE_COMPANIONS]
    paths.append(settings.resolved_kek_file)  # the key that opens every device key
    tls = settings.resolved_tls_dir
    if tls.is_dir():
        paths.append(tls)
        paths += sorted(p for p in tls.iterdir() if p.is_file())
    return paths


def make_private(path: Path) -> None:
    """Take group and other bits off ``path`` (warning), or raise ExposedSecrets."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return
    wanted = mode & 0o700
    try:
        os.chmod(path, wanted)
    except OSError as error:
        raise ExposedSecrets(
            "%s holds secrets and is readable by others (mode %04o), and this user cannot "
            "change it (%s): run `chmod %o %s` as its owner"
            % (path, mode, error.strerror, PRIVATE_DIR if path.is_dir() else PRIVATE_FILE,
               path)) from error
    log.warning("%s was readable by others (mode %04o): now %04o", path, mode, wanted)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the first byte (no moment where a secret
    sits in a file others may read, no half-written file), then rename into place."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # also for a leftover .tmp made with other bits
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def secure_storage(settings: Settings) -> None:
    """Create the SQLite folder (0700) and file (0600) if missing, then make private every
    database and TLS file found open to others. Call before the database is first opened."""
    database = sqlite_file(settings.resolved_database_url)
    if database is not None:
        database.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        if not database.exists():
            # Born 0600 whatever the umask: SQLite gives its -wal and -shm files the mode of
            # the database file. An empty file is a valid, empty SQLite database.
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    for path in _private_paths(settings):
        if path.exists():
            make_private(path)
