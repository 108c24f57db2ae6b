"""Issue 12 acceptance 5: in a real Chromium an operator confirms a queued CAP alert, watches
the per-receiver states and cancels it.

Real Mosquitto, the head-end as its own process (the speech engine and ffmpeg make the alert's
audio), simulated receivers running the real firmware, tests/browser/cap_escalation.mjs
(playwright-core + Debian's Chromium). A warning source posts a Severe, Expected flood warning
for Thôn Đông: the default policy queues it for an operator. One receiver of the village has
its link black-holed before the confirmation (the head-end still thinks it online): the page
lists it as not confirmed and the sweep re-sends it; once that shows, its link comes back and
it plays. Screenshots land in test-artifacts/ (gitignored).
"""

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from polling import wait_for

from headend.process import HeadendProcess
from headend.services import cap_alerts

from .test_browser import ARTIFACTS, CHROMIUM, REPO, SITE, ZONES, FleetThread, provision

sys.path.insert(0, str(REPO / "tests" / "headend"))
from cap_messages import SENDER, cap_alert, cap_area, cap_info  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

SCRIPT = REPO / "tests" / "browser" / "cap_escalation.mjs"
PASSWORD = "browser-pass-1"  # test_browser.provision's operator "canbo"
GEOCODE = ("vn-thon", "thon-dong")
HEADLINE = "Cảnh báo lũ trên sông Hoàng Long"
# Long enough to still play when the silent receiver comes back and the operator stops it.
DESCRIPTION = ("Hồi 16 giờ, mực nước sông Hoàng Long tại trạm Bến Đế lên nhanh, vượt báo động "
               "ba. Mưa lớn còn kéo dài đến hết đêm nay. Các hộ dân ven sông, vùng trũng thấp "
               "của thôn Đông cần chủ động di chuyển người già, trẻ em và tài sản lên nơi cao.")
INSTRUCTION = ("Không đi qua ngầm tràn, không đánh bắt cá trên sông. Khi cần cứu hộ, gọi ngay "
               "số 0912 345 678 hoặc báo trưởng thôn. Theo dõi loa truyền thanh để nhận tin mới.")
SCREENSHOTS = tuple("%s%s.png" % (name, phone) for name in
                    ("cap-queued", "cap-unconfirmed", "cap-playing", "cap-cancelled")
                    for phone in ("", "-phone"))


def cap_time(at):
    return (at + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M:%S+07:00")


def queued_alert():
    now = datetime.now(UTC).replace(microsecond=0)
    info = cap_info(severity="Severe", urgency="Expected", certainty="Likely",
                    expires=cap_time(now + timedelta(hours=3)), headline=HEADLINE,
                    description=DESCRIPTION, instruction=INSTRUCTION,
                    areas=(cap_area("Thôn Đông", geocodes=(GEOCODE,)),))
    return cap_alert(identifier="KTTV-NB-2026-0412", sent=cap_time(now - timedelta(minutes=2)),
                     infos=(info,))


def add_source_and_geocode(data_dir, zone_id):
    """A warning source (its API key, returned) and the village's geocode, as the demo's
    villages carry theirs."""
    from headend.db import make_engine, make_session_factory
    from headend.services.sites import update_zone
    from headend.settings import Settings
    engine = make_engine(Settings(data_dir=data_dir, site_id=SITE).resolved_database_url)
    with make_session_factory(engine)() as session:
        _, key = cap_alerts.add_source(session, source_id="kttv-nb", name="KTTV Ninh Bình",
                                       auth="api-key", senders=[SENDER])
        update_zone(session, zone_id=zone_id, area={"geocodes": [list(GEOCODE)]})
        session.commit()
    engine.dispose()
    return key


@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("node") is None
                    or shutil.which("espeak-ng") is None,
                    reason="needs Debian's chromium, node and espeak-ng (make setup)")
def test_operator_confirms_a_queued_cap_alert_watches_and_cancels_it_in_chromium(
        mosquitto_broker, tmp_path):
    if not (REPO / "node_modules" / "playwright-core").exists():
        pytest.skip("npm package playwright-core missing: run make setup")
    data = tmp_path / "headend"
    specs = provision(data, mosquitto_broker)
    zone_id = ZONES[0][0]
    key = add_source_and_geocode(data, zone_id)
    village = sorted(s.id for s in specs if s.zone == zone_id)
    silent = village[-1]
    for name in SCREENSHOTS + ("cap-failure.png",):
        (ARTIFACTS / name).unlink(missing_ok=True)

    server = HeadendProcess(data, mqtt=(mosquitto_broker.host, mosquitto_broker.port),
                            env={"LOAXA_SITE_ID": SITE})
    server.start()
    try:
        with FleetThread(specs, SITE, (mosquitto_broker.host, mosquitto_broker.port),
                         tmp_path / "boards") as sim:
            token = httpx.post(server.url + "/api/v1/auth/token",
                               data={"username": "canbo", "password": PASSWORD}).json()
            auth = {"Authorization": "Bearer " + token["access_token"]}

            def api(path):
                return httpx.get(server.url + path, headers=auth).json()

            wait_for(lambda: all(d["online"] for d in api("/api/v1/devices")), 30,
                     "every receiver online at the head-end", interval=0.2)
            with httpx.Client(base_url=server.url) as client:
                r = client.post("/api/v1/cap", content=queued_alert(), timeout=60, headers={
                    cap_alerts.SOURCE_KEY_HEADER: key, "Content-Type": "application/xml"})
            assert r.status_code == 200 and r.json()["outcome"] == "queued", r.text
            assert r.json()["zones"] == [zone_id]

            sim.fleet.cut(silent, mode="blackhole")
            env = dict(os.environ, LOAXA_URL=server.url, LOAXA_USER="canbo",
                       LOAXA_PASSWORD=PASSWORD, ZONE_SIZE=str(len(village)), SILENT=silent,
                       HEADLINE=HEADLINE, ARTIFACTS_DIR=str(ARTIFACTS), CHROMIUM=CHROMIUM)
            run = subprocess.Popen(["node", str(SCRIPT)], cwd=REPO, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                def resent():
                    alerts = [b for b in api("/api/v1/broadcasts")
                              if b["priority"] == "emergency"]
                    if not alerts:
                        return False
                    detail = api("/api/v1/broadcasts/" + alerts[0]["id"])
                    return any(d["id"] == silent and d["resends"] >= 1
                               for d in detail["devices"])

                wait_for(resent, 60, "the silent receiver re-sent", interval=0.5)
                # The page has had a refresh or two to show it (the script waits for it).
                wait_for(lambda: (ARTIFACTS / "cap-unconfirmed-phone.png").exists()
                         or run.poll() is not None, 30, "the unconfirmed screenshot")
                sim.fleet.restore(silent)
                output, _ = run.communicate(timeout=120)
            finally:
                if run.poll() is None:
                    run.kill()
            assert run.returncode == 0, output + "\nhead-end log:\n" + server.log_text()[-3000:]

            (alert,) = [b for b in api("/api/v1/broadcasts") if b["priority"] == "emergency"]
            detail = api("/api/v1/broadcasts/" + alert["id"])
            assert detail["state"] == "cancelled" and detail["cancelled_by"] == "canbo"
            fleet = sim.fleet
            for device in fleet.ids():
                played = fleet[device].sink.playbacks_of(bid=alert["id"])
                if device in village:
                    assert played and played[-1].how == "stopped", (device, output)
                else:
                    assert not played, (device, output)
            (cap,) = [a for a in api("/api/v1/cap") if a["outcome"] == "queued"]
            assert (cap["confirmed_by"], cap["state"]) == ("canbo", "ended")
    finally:
        server.stop()
    for name in SCREENSHOTS:
        assert (ARTIFACTS / name).stat().st_size > 10_000, name

