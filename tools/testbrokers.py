"""Real MQTT brokers as child processes, for tests and benchmarks.

Each broker listens on 127.0.0.1 on a free port and can be stopped, killed and started again
on the same port, so a test can cut the link under a receiver and bring it back. Mosquitto is
the production broker; the embedded one (`loaxa broker`, amqtt) runs in its own process so it
can be killed like a real one and never shares the test's event loop.

    broker = start_mosquitto(tmp_path)          # anonymous
    broker.host, broker.port
    broker.stop(); broker.start(); broker.kill(); broker.restart()

    broker = start_mosquitto(tmp_path, accounts={"d1": "pw1", "headend": "pw"})  # ACL per device
    broker = start_embedded_broker(tmp_path, accounts={"d1": "pw1"})  # the same, on amqtt

    broker = start_mosquitto(tmp_path, tls={"cafile": ..., "certfile": ..., "keyfile": ...})
    # its listener is TLS only, with the lines `loaxa headend export-broker-tls` writes
"""

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HEADEND_USER = "headend"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0

# What each device account may do (see protocol/topics.py); %u is the MQTT username.
DEVICE_ACL = (
    "pattern write loaxa/v1/+/dev/%u/status",
    "pattern write loaxa/v1/+/dev/%u/hb",
    "pattern write loaxa/v1/+/dev/%u/evt",
    "pattern write loaxa/v1/+/dev/%u/treq",
    "pattern read loaxa/v1/+/dev/%u/cmd",
    "pattern read loaxa/v1/+/dev/%u/time",
    "pattern read loaxa/v1/+/stream/#",
)


class BrokerUnavailable(RuntimeError):
    """The broker program is not installed here."""


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def accepts_tcp(host, port, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_mosquitto():
    """Path of the mosquitto binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class BrokerProcess:
    """A broker child process on a fixed host and port; restartable on the same port."""

    def __init__(self, name, argv, host, port, output_path, log_path=None, cwd=None):
        self.name = name
        self.argv = list(argv)
        self.host = host
        self.port = port
        self.output_path = Path(output_path)  # the process's stdout and stderr
        self.log_path = Path(log_path) if log_path else None  # the broker's own log file, if any
        self.cwd = cwd
        self.accounts = {}
        self.tls = False  # the listener speaks TLS only (start_mosquitto(tls=...))
        self._proc = None
        self._log = None

    def __repr__(self):
        return "<%s broker %s:%d %s>" % (self.name, self.host, self.port,
                                          "running" if self.running else "stopped")

    @property
    def address(self):
        return (self.host, self.port)

    @property
    def running(self):
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self):
        return self._proc.pid if self.running else None

    def log_text(self):
        """What the broker printed and logged, for failure messages."""
        text = ""
        for path in (self.output_path, self.log_path):
            if path is not None and path.exists():
                text += path.read_text(errors="replace")
        return text

    def start(self):
        """Start the broker and return once it accepts TCP connections."""
        if self.running:
            return self
        self._close_log()  # the last run's, if the broker died without stop() (a supervisor restarts it)
        self._log = open(self.output_path, "ab")
        self._proc = subprocess.Popen(self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not accepts_tcp(self.host, self.port):
            if self._proc.poll() is not None:
                self._close_log()
                raise RuntimeError("%s exited with code %s at start; its log:\n%s"
                                   % (self.name, self._proc.returncode, self.log_text()[-3000:]))
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("%s did not accept connections on %s:%d within %.0f s; log:\n%s"
                                   % (self.name, self.host, self.port, START_TIMEOUT_S,
                                      self.log_text()[-3000:]))
            time.sleep(0.02)
        return self

    def stop(self):
        """Graceful stop (SIGTERM): the broker closes every connection and exits."""
        self._end(signal.SIGTERM)

    def kill(self):
        """Abrupt stop (SIGKILL), as when the head-end PC loses power."""
        self._end(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def _end(self, sig):
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        # The port must be free again before anyone restarts on it.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while accepts_tcp(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._close_log()

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- Mosquitto --------------------------------------------------------------------------------

def mosquitto_password_line(username, password, iterations=101):
    """One line of a Mosquitto 2 password file ($7$ = PBKDF2-HMAC-SHA512), no mosquitto_passwd."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return "%s:$7$%d$%s$%s" % (username, iterations, base64.b64encode(salt).decode(),
                               base64.b64encode(digest).decode())


def write_mosquitto_accounts(directory, accounts, headend_users=(HEADEND_USER,)):
    """Write a password file and an ACL file; return their paths.

    Users named in ``headend_users`` may read and write all of ``loaxa/v1/#``; every other
    user is a device limited to its own topics (DEVICE_ACL).
    """
    directory = Path(directory)
    passwd = directory / "passwd"
    acl = directory / "acl"
    passwd.write_text("".join(mosquitto_password_line(u, p) + "\n" for u, p in accounts.items()))
    lines = ["# devices: only their own topics"] + list(DEVICE_ACL)
    for user in headend_users:
        lines += ["", "user %s" % user, "topic readwrite loaxa/v1/#"]
    acl.write_text("\n".join(lines) + "\n")
    return passwd, acl


def _with_headend_account(accounts):
    """A copy of ``accounts`` with a "headend" account (random password) if it has none."""
    accounts = dict(accounts)
    if HEADEND_USER not in accounts:
        accounts[HEADEND_USER] = base64.b16encode(os.urandom(12)).decode().lower()
    return accounts


def start_mosquitto(directory, port=None, accounts=None, extra_conf=(),
                    log_types=("error", "warning", "notice"), start=True, tls=None):
    """Start Mosquitto in ``directory`` (config, log and password files go there).

    ``accounts``: None for anonymous access, or {username: password}; a "headend" account is
    added (random password, see ``broker.accounts``) when missing. Anonymous clients are then
    refused and each device is held to its own topics.
    ``tls``: {"cafile", "certfile", "keyfile"} paths (headend/services/tls.py makes them): the
    listener speaks TLS only, configured as `loaxa headend export-broker-tls` writes it.
    """
    binary = find_mosquitto()
    if binary is None:
        raise BrokerUnavailable("mosquitto is not installed (run `make setup` as root, or "
                                "`apt-get install mosquitto`)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    host = "127.0.0.1"
    port = port or free_port(host)
    log_path = directory / ("mosquitto-%d.log" % port)
    if tls is None:
        conf = ["listener %d %s" % (port, host)]
    else:
        from headend.services.tls import mosquitto_tls_lines

        conf = mosquitto_tls_lines(port, tls["cafile"], tls["certfile"], tls["keyfile"],
                                   bind=host)
    conf += ["persistence false", "log_dest file %s" % log_path]
    conf += ["log_type %s" % t for t in log_types]
    if os.geteuid() == 0:
        conf.append("user root")  # otherwise it drops to user mosquitto, who cannot read tmp_path
    if accounts is None:
        conf.append("allow_anonymous true")
    else:
        accounts = _with_headend_account(accounts)
        passwd, acl = write_mosquitto_accounts(directory, accounts)
        conf += ["allow_anonymous false", "use_username_as_clientid true",
                 "password_file %s" % passwd, "acl_file %s" % acl]
    conf += list(extra_conf)
    conf_path = directory / ("mosquitto-%d.conf" % port)
    conf_path.write_text("\n".join(conf) + "\n")
    broker = BrokerProcess("mosquitto", [binary, "-c", str(conf_path)], host, port,
                           directory / ("mosquitto-%d.out" % port), log_path=log_path)
    broker.accounts = accounts or {}
    broker.conf_path = conf_path
    broker.tls = tls is not None
    return broker.start() if start else broker


# -- embedded broker (amqtt, `loaxa broker`) ---------------------------------------------------

def start_embedded_broker(directory, port=None, accounts=None, config_dir=None, start=True):
    """Start `python -m tools.broker` (amqtt) in a child process on a free port.

    Anonymous (``--allow-anonymous``, tests only) unless given ``accounts`` ({username: password},
    written as Mosquitto files like ``start_mosquitto`` does, "headend" added when missing) or
    ``config_dir`` holding ``passwd`` and ``acl`` already (`loaxa headend export-mosquitto`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    host = "127.0.0.1"
    port = port or free_port(host)
    argv = [sys.executable, "-m", "tools.broker", "--host", host, "--port", str(port)]
    if accounts is not None:
        accounts = _with_headend_account(accounts)
        write_mosquitto_accounts(directory, accounts)
        config_dir = directory
    argv += ["--config-dir", str(config_dir)] if config_dir else ["--allow-anonymous"]
    broker = BrokerProcess("amqtt", argv, host, port, directory / ("amqtt-%d.log" % port),
                           cwd=str(REPO_ROOT))
    broker.accounts = accounts or {}
    return broker.start() if start else broker


def start_broker(kind, directory, port=None):
    """``kind`` is "mosquitto" or "amqtt"."""
    if kind == "mosquitto":
        return start_mosquitto(directory, port=port)
    if kind == "amqtt":
        return start_embedded_broker(directory, port=port)
    raise ValueError("unknown broker kind %r" % kind)
