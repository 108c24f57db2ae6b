"""`loaxa demo` as an operator runs it: it comes up, the receivers are online at the head-end,
Ctrl-C stops it with nothing left running, and a second run reuses what the first set up."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from headend.process import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

REPO = Path(__file__).resolve().parents[2]
RECEIVERS = 3
START_TIMEOUT_S = 90


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class DemoRun:
    def __init__(self, directory: Path, port: int, env: dict[str, str]):
        self.port = port
        self.lines: list[str] = []
        argv = [sys.executable, "-m", "tools.cli", "demo", "--dir", str(directory)]
        base = {k: v for k, v in os.environ.items() if k != "LOAXA_ADMIN_PASSWORD"}
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env=dict(base, LOAXA_PORT=str(port),
                                              LOAXA_RECEIVERS=str(RECEIVERS), **env))

    def wait_for_banner(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip())
            if line.startswith("Ctrl-C stops everything"):
                return self.output
        self.stop()
        raise AssertionError("the demo did not come up:\n" + self.output)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def value(self, pattern: str) -> str:
        return re.search(pattern, self.output, re.M).group(1)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            rest, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate()
        self.lines += rest.splitlines()
        return self.proc.returncode


def api(port: int, password: str) -> httpx.Client:
    client = httpx.Client(base_url="http://127.0.0.1:%d" % port, timeout=10)
    token = client.post("/api/v1/auth/token", data={"username": "admin", "password": password})
    assert token.status_code == 200, token.text
    client.headers["Authorization"] = "Bearer " + token.json()["access_token"]
    return client


def run_once(directory: Path, env: dict[str, str], port: int | None = None):
    demo = DemoRun(directory, port or free_port(), env)
    client = None
    try:
        demo.wait_for_banner()
        assert demo.value(r"^Open (http://\S+)$") == "http://127.0.0.1:%d" % demo.port
        password = env.get("LOAXA_ADMIN_PASSWORD") or demo.value(r"^Password:\s+(\S+)$")
        client = api(demo.port, password)
        devices = client.get("/api/v1/devices").json()
        media = client.get("/api/v1/media").json()
        children = descendants(demo.proc.pid)
        assert len(children) >= 2, demo.output  # the broker and the head-end
    except BaseException:
        demo.stop()
        raise
    # Ctrl-C with the client's keep-alive connection still open, as a browser tab leaves it:
    # the head-end closes it first, so its port keeps a TIME_WAIT socket for a minute.
    code = demo.stop()
    if client is not None:
        client.close()
    assert code == 0, demo.output
    assert "Stopped." in demo.output
    leftover = [pid for pid in children if alive(pid)]
    assert leftover == [], demo.output
    return password, devices, media, demo.output


def test_demo_starts_stops_cleanly_and_reuses_its_setup(tmp_path):
    directory = tmp_path / "demo"
    first_port = free_port()
    password, devices, media, first = run_once(directory, {}, port=first_port)
    assert len(devices) == RECEIVERS and all(d["online"] for d in devices), first
    assert {d["zone"] for d in devices} == {"thon-dong", "thon-doai", "xom-chua"}
    # The sample bulletin, and the pinned set every receiver keeps ahead of need (the alert
    # tone and a standard evacuation message): nothing else, nothing twice.
    bulletins = [m for m in media if not m.get("pinned")]
    assert len(bulletins) == 1 and "Provisioned 3 receivers" in first
    assert len([m for m in media if m.get("pinned")]) == 2

    # `make demo`, Ctrl-C, `make demo` again at once, on the same port.
    again, devices2, media2, second = run_once(directory, {}, port=first_port)
    assert again == password, second  # the admin password is kept in the demo's directory
    assert "Reusing 3 receivers" in second and "Reusing the sample bulletin" in second
    assert {d["id"] for d in devices2} == {d["id"] for d in devices}
    assert all(d["online"] for d in devices2), second
    assert [m["id"] for m in media2] == [m["id"] for m in media]

    chosen, _, _, third = run_once(directory, {"LOAXA_ADMIN_PASSWORD": "chon-mat-khau-1"})
    assert chosen == "chon-mat-khau-1", third
    assert "chon-mat-khau-1" not in third, third  # a chosen password is not printed
    assert "Password:  (given by LOAXA_ADMIN_PASSWORD)" in third


def test_demo_with_micropython_receivers(tmp_path):
    """LOAXA_RUNTIME=micropython: each receiver is its own ESP32-model MicroPython process;
    they come online at the head-end, and Ctrl-C leaves none of them running."""
    from tools import mpbuild

    if mpbuild.esp32_model() is None:
        pytest.skip("no ESP32-model MicroPython: %s" % mpbuild.skip_reason())
    _, devices, _, output = run_once(tmp_path / "demo", {"LOAXA_RUNTIME": "micropython"})
    assert len(devices) == RECEIVERS and all(d["online"] for d in devices), output
    assert "each an ESP32-model MicroPython process" in output
