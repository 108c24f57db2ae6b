"""A throwaway PostgreSQL server for tests: ``initdb`` into a temp folder, ``postgres`` on
127.0.0.1 at a free port (fsync off: nothing here needs to survive a power cut), stopped with
``pg_ctl stop -m fast`` and deleted afterwards. Imported as a top-level module, like ``polling``
(``tests/`` is on ``sys.path``).

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user
the Debian package creates (tools/setup.sh installs it); as anyone else it runs as that user.
"""

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile

SUPERUSER = "loaxa"


class ServerUnavailable(Exception):
    """No PostgreSQL server binaries here, or no user to run them as: tests skip, saying why."""


def _server_bindir() -> str:
    """The newest Debian ``/usr/lib/postgresql/<major>/bin`` with a server, else one on PATH."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(d + "/postgres")]
    if found:
        return max(found, key=lambda d: int(re.sub(r"\D", "", d.split("/")[-2]) or 0))
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return os.path.dirname(initdb)
    raise ServerUnavailable("no PostgreSQL server binaries (install the Debian package "
                            "'postgresql': tools/setup.sh system)")


def _run_as() -> list[str]:
    """The command prefix that drops root to the ``postgres`` user; nothing when not root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerUnavailable("running as root and there is no 'postgres' user to run the "
                                "server as") from None
    return ["runuser", "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        self.bindir = _server_bindir()
        self.prefix = _run_as()
        self.dir = None
        self.port = None
        self._databases = 0

    def _run(self, tool, *args, timeout=60):
        return subprocess.run(self.prefix + [os.path.join(self.bindir, tool), *args],
                              check=True, capture_output=True, text=True, timeout=timeout)

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="loaxa-pg-")
        if self.prefix:
            shutil.chown(self.dir, "postgres", "postgres")
        data = os.path.join(self.dir, "data")
        self._run("initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                  "--no-sync")
        self.port = _free_port()
        options = ("-h 127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off" % (self.port, self.dir))
        # -w waits until the server accepts connections (or fails with its log).
        try:
            self._run("pg_ctl", "start", "-w", "-t", "30", "-D", data, "-o", options,
                      "-l", os.path.join(self.dir, "server.log"))
        except subprocess.CalledProcessError:
            log = open(os.path.join(self.dir, "server.log")).read()
            self.stop()
            raise RuntimeError("PostgreSQL did not start:\n" + log) from None
        return self

    def stop(self):
        if self.dir is None:
            return
        data = os.path.join(self.dir, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", data)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def url(self, database="postgres") -> str:
        return "postgresql+psycopg://%s@127.0.0.1:%d/%s" % (SUPERUSER, self.port, database)

    def new_database(self, template: str = "template0") -> str:
        """A database of its own (one per test), a copy of ``template`` (the name of a
        database nobody is connected to; empty by default), and its SQLAlchemy URL."""
        import psycopg

        self._databases += 1
        name = "loaxa_%d" % self._databases
        with psycopg.connect("host=127.0.0.1 port=%d user=%s dbname=postgres"
                             % (self.port, SUPERUSER), autocommit=True) as conn:
            conn.execute("CREATE DATABASE %s TEMPLATE %s" % (name, template))
        return self.url(name)
