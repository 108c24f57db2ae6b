"""The head-end as a child process (`python -m headend.cli serve`): for the demo, the
integration tests and the benchmark. It can be killed (SIGKILL, as on a power cut) and started
again on the same port and database.

    server = HeadendProcess(data_dir, mqtt=("127.0.0.1", 1883), env={"LOAXA_SITE_ID": "xa"})
    server.start(); server.url; server.kill(); server.start(); server.stop()
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class HeadendProcess:
    def __init__(self, data_dir, *, mqtt: tuple[str, int], port: int | None = None,
                 host: str = "127.0.0.1", env: dict[str, str] | None = None,
                 log_level: str = "warning"):
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.mqtt = mqtt
        self.env = dict(env or {})
        self.log_level = log_level
        self.log_path = self.data_dir / ("headend-%d.log" % self.port)
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0, need_mqtt: bool = True) -> "HeadendProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, LOAXA_DATA_DIR=str(self.data_dir), **self.env)
        argv = [sys.executable, "-m", "headend.cli", "--log-level", self.log_level, "serve",
                "--host", self.host, "--port", str(self.port), "--mqtt-host", self.mqtt[0],
                "--mqtt-port", str(self.mqtt[1])]
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(argv, cwd=str(REPO_ROOT), env=env, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError("head-end exited at start (%s):\n%s"
                                   % (self._proc.returncode, self.log_text()[-3000:]))
            try:
                health = httpx.get(self.url + "/api/v1/health", timeout=1).json()
                if health["mqtt_connected"] or not need_mqtt:
                    return self
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("head-end not ready within %.0f s:\n%s"
                           % (timeout, self.log_text()[-3000:]))

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful: SIGINT, as Ctrl-C."""
        self._end(signal.SIGINT, timeout)

    def kill(self) -> None:
        """SIGKILL: nothing gets to finish or flush."""
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig, timeout: float) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
