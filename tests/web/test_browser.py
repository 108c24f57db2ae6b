"""Acceptance 5 of issue 3: a real Chromium drives the pages of the real system.

Real Mosquitto, the head-end as its own process (`python -m headend.cli serve`, temp SQLite
file), four simulated receivers running the real firmware (provisioned by the head-end's
provisioning service), and tests/browser/operator.mjs (playwright-core + Debian's Chromium).
Screenshots land in test-artifacts/ (gitignored).
"""

import asyncio
import os
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from polling import wait_for
from site_setup import provision_site

from headend.process import HeadendProcess
from simulator.fleet import Fleet

from .conftest import write_tone_wav

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCRIPT = REPO / "tests" / "browser" / "operator.mjs"
CHROMIUM = "/usr/bin/chromium"
SITE = "xa-browser"
ZONES = [("thon-dong", "Thôn Đông"), ("thon-tay", "Thôn Tây")]
RECEIVERS = 4
PASSWORD = "browser-pass-1"
# Written by operator.mjs: the receivers page (desktop, phone, during the emergency), the
# broadcast form on a phone, a bulletin playing, and the emergency page, its confirmation and
# the emergency playing.
SCREENSHOTS = ("receivers.png", "receivers-phone.png", "receivers-emergency.png",
               "broadcast-new-phone.png", "broadcast-playing.png", "emergency.png",
               "emergency-confirm.png", "emergency-playing.png")


class FleetThread:
    """Simulated receivers on their own event loop in a thread (the test itself is sync)."""

    def __init__(self, specs, site, broker, workdir, **options):
        self.loop = asyncio.new_event_loop()
        self.fleet = Fleet(specs, site=site, broker=broker, workdir=str(workdir), **options)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self):
        self.thread.start()
        self.run(self.fleet.start())
        return self

    def __exit__(self, *exc):
        try:
            self.run(self.fleet.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def provision(data_dir, broker, *, site=SITE, receivers=RECEIVERS, zones=ZONES,
              users=(("canbo", "operator", "Cán bộ Đài"),)):
    """The head-end's database with ``receivers`` over ``zones`` and ``users`` (password
    PASSWORD); the simulator's specs of the receivers."""
    return provision_site(data_dir, broker, site=site, receivers=receivers, zones=zones,
                          users=users, password=PASSWORD)


@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("node") is None,
                    reason="needs Debian's chromium and node (make setup installs both)")
def test_operator_broadcasts_to_a_village_and_sends_an_emergency_in_chromium(
        mosquitto_broker, tmp_path):
    if not (REPO / "node_modules" / "playwright-core").exists():
        pytest.skip("npm package playwright-core missing: run make setup")
    data = tmp_path / "headend"
    specs = provision(data, mosquitto_broker)
    zone_id = ZONES[0][0]
    in_zone = [s.id for s in specs if s.zone == zone_id]
    bulletin = write_tone_wav(tmp_path / "ban-tin.wav", seconds=6, freq=523.0)
    alarm = write_tone_wav(tmp_path / "canh-bao.wav", seconds=40, freq=880.0)
    shots = ARTIFACTS
    for name in SCREENSHOTS + ("failure.png",):  # only ours: other tests may write here too
        (shots / name).unlink(missing_ok=True)

    server = HeadendProcess(data, mqtt=(mosquitto_broker.host, mosquitto_broker.port),
                            env={"LOAXA_SITE_ID": SITE})
    server.start()
    try:
        with FleetThread(specs, SITE, (mosquitto_broker.host, mosquitto_broker.port),
                         tmp_path / "boards") as sim:
            def all_online():
                devices = httpx.get(server.url + "/api/v1/devices", cookies=cookies).json()
                return len(devices) == RECEIVERS and all(d["online"] for d in devices)

            token = httpx.post(server.url + "/api/v1/auth/token",
                               data={"username": "canbo", "password": PASSWORD}).json()
            cookies = {"loaxa_token": token["access_token"]}
            wait_for(all_online, 30, "every receiver online at the head-end", interval=0.2)

            env = dict(os.environ, LOAXA_URL=server.url, LOAXA_USER="canbo",
                       LOAXA_PASSWORD=PASSWORD, BULLETIN_WAV=str(bulletin),
                       EMERGENCY_WAV=str(alarm), ZONE_ID=zone_id, ZONE_SIZE=str(len(in_zone)),
                       TOTAL=str(RECEIVERS), ARTIFACTS_DIR=str(shots), CHROMIUM=CHROMIUM)
            run = subprocess.run(["node", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                                 text=True, timeout=120)
            output = run.stdout + run.stderr
            assert run.returncode == 0, output + "\nhead-end log:\n" + server.log_text()[-3000:]

            # What the loudspeakers actually did, from the receivers' own sinks.
            sent = httpx.get(server.url + "/api/v1/broadcasts", cookies=cookies).json()
            by_class = {b["priority"]: b["id"] for b in sent}
            assert set(by_class) == {"normal", "emergency"}, sent
            fleet = sim.fleet
            bulletin_heard = {d for d in fleet.ids()
                              if fleet[d].sink.playbacks_of(bid=by_class["normal"])}
            assert bulletin_heard == set(in_zone), output
            for device in fleet.ids():
                played = fleet[device].sink.playbacks_of(bid=by_class["emergency"])
                assert played and played[-1].how == "stopped", (device, output)
    finally:
        server.stop()
    for name in SCREENSHOTS:
        assert (shots / name).stat().st_size > 10_000, name
