"""The CAP feeds page in a real Chromium (tests/browser/cap_feeds.mjs): an admin adds a feed
and asks for a read now, at desktop and phone size. Screenshots land in test-artifacts/."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from headend.services import cap_alerts

from .conftest import PASSWORD
from .test_telemetry_pages import CHROMIUM, Server

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCRIPT = REPO / "tests" / "browser" / "cap_feeds.mjs"
SCREENSHOTS = tuple("cap-feeds%s-%s.png" % (name, size) for size in ("desktop", "phone")
                    for name in ("-form", ""))


@pytest.mark.integration
@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("node") is None,
                    reason="needs Debian's chromium and node (make setup installs both)")
def test_an_admin_adds_a_feed_and_reads_it_now_in_chromium(app, station):
    if not (REPO / "node_modules" / "playwright-core").exists():
        pytest.skip("npm package playwright-core missing: run make setup")
    for name in SCREENSHOTS + ("cap-feeds-failure.png",):
        (ARTIFACTS / name).unlink(missing_ok=True)
    with app.state.session_factory() as session:
        cap_alerts.add_source(session, source_id="kttv-nb", name="Đài KTTV Ninh Bình",
                              auth="api-key", senders=["kttv-nb@example.vn"])
    with Server(app) as server:
        env = dict(os.environ, LOAXA_URL=server.url, ADMIN="admin", LOAXA_PASSWORD=PASSWORD,
                   FEED_URL="https://kttv.example/cap", ARTIFACTS_DIR=str(ARTIFACTS),
                   CHROMIUM=CHROMIUM)
        run = subprocess.run(["node", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["requests"] == [] and "error" not in seen, seen
    for size, walk in seen["walks"].items():
        assert "kttv-" + size in walk["row"] and "Chưa đọc lần nào" in walk["row"], walk
        assert "Đọc mỗi 300 giây" in walk["row"] and "kttv-nb" in walk["row"]
        assert "trong vòng 5 giây" in walk["notice"] and not walk["overflow"], walk
    for name in SCREENSHOTS:
        assert (ARTIFACTS / name).stat().st_size > 5_000, name
