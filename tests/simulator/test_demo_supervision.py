"""`loaxa demo` keeps the operator's password to itself and keeps its parts up: a password
given in LOAXA_ADMIN_PASSWORD is neither printed nor handed to child processes, and a killed
head-end comes back on the same port while the receivers keep running."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC
from pathlib import Path

import httpx
import pytest

from headend.process import free_port
from simulator import demo as demo_module
from simulator.supervise import Restarter

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "mat-khau-cua-van-hanh-7"
RECEIVERS = 2
START_TIMEOUT_S = 60
RESTART_TIMEOUT_S = 30


def children_of(pid: int) -> dict[int, str]:
    """Every live process below ``pid``, with its command line (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            try:
                cmdline = Path("/proc/%d/cmdline" % child).read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            found[child] = cmdline.decode(errors="replace")
            todo.append(child)
    return found


def pids(children: dict[int, str], marker: str) -> set[int]:
    return {pid for pid, cmdline in children.items() if marker in cmdline}


class Demo:
    """The demo in a child process; its output is read by a thread, so waits stay bounded."""

    def __init__(self, directory: Path, runtime: str):
        self.port = free_port()
        self.lines: list[str] = []
        env = dict(os.environ, LOAXA_PORT=str(self.port), LOAXA_RECEIVERS=str(RECEIVERS),
                   LOAXA_RUNTIME=runtime, LOAXA_ADMIN_PASSWORD=PASSWORD)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "demo", "--dir", str(directory)], cwd=REPO,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.1)
        return any(text in line for line in self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(5)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo for the tests of this file (MicroPython receivers, each its own process, when
    that MicroPython is built here; else receivers inside the demo's process)."""
    from tools import mpbuild

    runtime = "micropython" if mpbuild.esp32_model() is not None else "cpython"
    run = Demo(tmp_path_factory.mktemp("demo"), runtime)
    run.runtime = runtime
    try:
        assert run.wait_for("Ctrl-C stops everything", START_TIMEOUT_S), run.output
        yield run
    finally:
        run.stop()


@pytest.mark.integration
def test_a_given_admin_password_is_not_printed_nor_passed_to_child_processes(demo):
    assert PASSWORD not in demo.output
    assert "Password:  (given by LOAXA_ADMIN_PASSWORD)" in demo.output
    children = children_of(demo.proc.pid)
    assert pids(children, "headend.cli") and pids(children, "tools.broker"), children
    for pid in children:
        environ = Path("/proc/%d/environ" % pid).read_bytes()
        assert b"LOAXA_ADMIN_PASSWORD" not in environ, children[pid]
        assert PASSWORD.encode() not in environ, children[pid]
    # The password still works: it is the admin's.
    r = httpx.post("http://127.0.0.1:%d/api/v1/auth/token" % demo.port,
                   data={"username": "admin", "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    # ... and it is not written into the demo's directory either.
    directory = Path(demo.proc.args[demo.proc.args.index("--dir") + 1])
    assert not (directory / "admin-password").exists()


@pytest.mark.integration
def test_a_killed_headend_is_restarted_and_the_receivers_keep_running(demo):
    before = children_of(demo.proc.pid)
    receivers = pids(before, "mp_receiver.py") if demo.runtime == "micropython" else set()
    assert len(receivers) == (RECEIVERS if demo.runtime == "micropython" else 0), before
    (headend,) = pids(before, "headend.cli")
    os.kill(headend, signal.SIGKILL)

    assert demo.wait_for("head-end is back", RESTART_TIMEOUT_S), demo.output
    assert demo.proc.poll() is None, demo.output
    assert "head-end is down; restarting it" in demo.output
    health = httpx.get("http://127.0.0.1:%d/api/v1/health" % demo.port, timeout=10)
    assert health.status_code == 200, health.text
    after = children_of(demo.proc.pid)
    assert pids(after, "headend.cli") - {headend}, after
    assert headend not in after
    assert receivers <= set(after), after  # the same receiver processes, none restarted



@pytest.mark.integration
def test_a_killed_broker_is_restarted_and_the_headend_reconnects(demo):
    (broker,) = pids(children_of(demo.proc.pid), "tools.broker")
    os.kill(broker, signal.SIGKILL)
    assert demo.wait_for("broker is back", RESTART_TIMEOUT_S), demo.output
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    health = {}
    while time.monotonic() < deadline and not health.get("mqtt_connected"):
        time.sleep(0.5)
        health = httpx.get("http://127.0.0.1:%d/api/v1/health" % demo.port, timeout=10).json()
    assert health.get("mqtt_connected"), health
    assert demo.proc.poll() is None, demo.output

# -- the restart budget, with a clock the test moves -----------------------------------------


class FakePart:
    def __init__(self, fails=False):
        self.running = False
        self.starts = 0
        self.fails = fails

    def start(self):
        self.starts += 1
        if self.fails:
            raise RuntimeError("head-end exited at start (1):\ntraceback...")
        self.running = True


def test_restarts_are_bounded_per_window_and_logged():
    now = [0.0]
    log: list[str] = []
    part = FakePart(fails=True)
    keeper = Restarter("head-end", part, log.append, limit=5, window_s=60, clock=lambda: now[0])
    for _ in range(20):
        assert keeper.check() is False
        now[0] += 1
    assert part.starts == 5
    assert sum("trying again later" in line for line in log) == 1
    assert sum(line == "head-end did not come back: head-end exited at start (1):" for line in log) == 5
    now[0] = 61  # the first attempts leave the window
    part.fails = False
    assert keeper.check() is True and part.starts == 6
    assert log[-1] == "head-end is back"
    assert keeper.check() is True and part.starts == 6  # running: nothing to do


def test_an_api_error_while_polling_is_logged_and_the_demo_keeps_running(monkeypatch, tmp_path):

    answers = [httpx.Response(500, text="boom"), httpx.Response(200, json=[{"online": True}])]
    said: list[str] = []

    def devices(request):
        return answers.pop(0) if answers else httpx.Response(200, json=[{"online": True}])

    async def run():
        demo = demo_module.Demo(tmp_path, 0, 1, None)
        running = FakePart()
        running.running = True
        demo.broker = demo.headend = running
        demo.http = httpx.AsyncClient(base_url="http://demo", transport=httpx.MockTransport(devices))
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        await demo.supervise(stop, UTC)
        await demo.http.aclose()

    monkeypatch.setattr(demo_module, "STATUS_EVERY_S", 0.1)
    monkeypatch.setattr(demo_module, "SUPERVISE_EVERY_S", 0.05)
    monkeypatch.setattr(demo_module, "say", said.append)
    asyncio.run(asyncio.wait_for(run(), 10))
    assert any("head-end API error" in line for line in said), said
    assert any("1/1 receivers online" in line for line in said), said  # asked again, answered
