"""Issue 14, acceptance 3 (the dashboard and a remote action): a real Chromium
(tests/browser/dashboard.mjs) on the real system. Real Mosquitto, the head-end as its own
process, simulated receivers running the real firmware; one on battery, one never started.
The dashboard updates itself when a broadcast starts and shows an emergency first; a technician identifies a receiver and
sets its volume from its page, and each is shown confirmed by that receiver's own ack.
Screenshots in test-artifacts/ (gitignored)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from polling import wait_for

from headend.process import HeadendProcess

from .conftest import write_tone_wav
from .test_browser import ARTIFACTS, CHROMIUM, PASSWORD, REPO, ZONES, FleetThread, provision

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

SCRIPT = REPO / "tests" / "browser" / "dashboard.mjs"
SITE = "xa-dashboard"
SCREENSHOTS = ("dashboard.png", "dashboard-phone.png", "dashboard-emergency.png",
               "dashboard-emergency-phone.png", "dashboard-en.png", "receiver-actions.png",
               "receiver-actions-phone.png")


@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("node") is None,
                    reason="needs Debian's chromium and node (make setup installs both)")
def test_the_dashboard_and_a_remote_action_confirmed_by_a_receiver_in_chromium(
        mosquitto_broker, tmp_path):
    if not (REPO / "node_modules" / "playwright-core").exists():
        pytest.skip("npm package playwright-core missing: run make setup")
    data = tmp_path / "headend"
    specs = provision(data, mosquitto_broker, site=SITE, receivers=4,
                      users=(("canbo", "operator", "Cán bộ Đài"),
                             ("kythuat", "technician", "Kỹ thuật viên Hà")))
    zone_of = {s.id: s.zone for s in specs}
    dong, tay = ZONES[0][0], ZONES[1][0]
    started = specs[:3]                       # the last one never comes online
    on_battery = next(s.id for s in started if s.zone == tay)
    acted_on = next(s.id for s in started if s.zone == dong)
    for name in SCREENSHOTS + ("dashboard-failure.png",):
        (ARTIFACTS / name).unlink(missing_ok=True)

    server = HeadendProcess(data, mqtt=(mosquitto_broker.host, mosquitto_broker.port),
                            env={"LOAXA_SITE_ID": SITE})
    server.start()
    try:
        with FleetThread(started, SITE, (mosquitto_broker.host, mosquitto_broker.port),
                         tmp_path / "boards", config_overrides={"heartbeat_s": 5}) as sim:
            sim.fleet[on_battery].platform.mains = 0
            sim.fleet[on_battery].platform.dc_volts = 11.7
            token = httpx.post(server.url + "/api/v1/auth/token",
                               data={"username": "canbo", "password": PASSWORD}
                               ).json()["access_token"]
            auth = {"Authorization": "Bearer " + token}

            def fleet_state():
                return httpx.get(server.url + "/api/v1/dashboard", headers=auth).json()["totals"]

            wait_for(lambda: fleet_state() == {"online": 2, "fault": 1, "offline": 1,
                                               "total": 4},
                     30, "three receivers online, one on battery, at the head-end", interval=0.3)
            tone = write_tone_wav(tmp_path / "ban-tin.wav", seconds=40, freq=523.0)
            r = httpx.post(server.url + "/api/v1/media", headers=auth, timeout=60,
                           files={"file": ("ban-tin.wav", tone.read_bytes(), "audio/wav")})
            assert r.status_code == 201, r.text
            env = dict(os.environ, LOAXA_URL=server.url, LOAXA_USER="kythuat",
                       LOAXA_PASSWORD=PASSWORD, DEVICE=acted_on, OPERATOR_TOKEN=token,
                       MEDIA_ID=r.json()["id"], ZONE_ID=dong, ARTIFACTS_DIR=str(ARTIFACTS),
                       CHROMIUM=CHROMIUM)
            run = subprocess.run(["node", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                                 text=True, timeout=150)
            output = run.stdout + run.stderr
            assert run.returncode == 0, output + "\nhead-end log:\n" + server.log_text()[-3000:]
            seen = json.loads(run.stdout.strip().splitlines()[-1])
            board = sim.fleet[acted_on].platform
            led = [p for _, p in board.led_changes]
            # its default volume (the emergency since plays at the emergency volume)
            volume = sim.fleet[acted_on].receiver.core.export_state()["vol"]
    finally:
        server.stop()
    assert seen["requests"] == [] and "error" not in seen, seen
    before, after = seen["before"], seen["after"]
    assert before["h1"] == "Tổng quan" and before["playing"] == []
    assert before["counts"] == {"online": 2, "fault": 1, "offline": 1, "total": 4}
    in_dong = sum(1 for s in specs if s.zone == dong)
    playing_dong = sum(1 for s in started if s.zone == dong)
    assert before["villages"][dong] == {"online": playing_dong, "fault": 0,
                                        "offline": in_dong - playing_dong}
    assert before["villages"][tay]["fault"] == 1 and zone_of[on_battery] == tay
    (playing,) = after["playing"]
    assert "/%d cụm loa đang phát" % in_dong in playing, playing
    assert not seen["phoneOverflow"] and not seen["actionsPhoneOverflow"]
    assert [(c["kind"], c["state"]) for c in seen["commands"]] == [("volume", "done"),
                                                                   ("identify", "done")]
    assert all("Cụm loa đã xác nhận" in c["text"] and "kythuat" in c["text"]
               for c in seen["commands"])
    during = seen["during"]
    assert during["playing"][0].startswith("Khẩn cấp"), during  # the emergency, first
    assert "/4 cụm loa đang phát" in during["playing"][0]  # sent to all, the 4th offline
    assert seen["english"]["h1"] == "Overview"
    # What the receiver itself did: its LED blinked fast, its default volume is 40.
    assert "fast" in led and volume == 40
    for name in SCREENSHOTS:
        assert (ARTIFACTS / name).stat().st_size > 5_000, name
