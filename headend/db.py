"""Engine, sessions and migrations.

SQLite by default (one commune on one small PC), PostgreSQL by URL (a province): the SQL stays
portable, so nothing but this module (the SQLite connection pragmas, ``begin_writing``) knows
which one is in use. tests/headend runs the API and ingest tests on both (a throwaway PostgreSQL server).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the ingest thread writes; FULL makes a commit survive a power
    # cut, which matters because an MQTT report is acknowledged only after its commit.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _make_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file (SQLite creates the file, not its folder)."""
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _make_sqlite_folder(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10},
                               pool_size=10, max_overflow=30)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def begin_writing(session: Session) -> None:
    """Make ``session``'s transaction the writer now, before it reads rows it will write back
    (a read-modify-write, like the command counters). PostgreSQL needs nothing more than the
    ``FOR UPDATE`` on those reads. SQLite has one write lock, taken at a transaction's first
    write, and pysqlite runs the reads before that outside any transaction: without this, two
    writers read the same value."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE sites SET id = id WHERE 0"))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: service functions return objects that routes serialise after
    # the commit without another round trip.
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    session = factory()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite"):
        _make_sqlite_folder(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
