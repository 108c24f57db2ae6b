"""The programme pages in a real Chromium (tests/browser/programmes.mjs): an editor creates and
submits a weekly programme, a leader approves it, the week shows it; at desktop and phone
size. The app is served in-process on 127.0.0.1; screenshots land in test-artifacts/."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from headend.models import AuditEntry, Programme

from .conftest import PASSWORD
from .test_programme_pages import recording, seed_aired, staff  # noqa: F401 (fixtures)
from .test_telemetry_pages import CHROMIUM, Server

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCRIPT = REPO / "tests" / "browser" / "programmes.mjs"
SCREENSHOTS = tuple("%s-%s.png" % (name, size) for size in ("desktop", "phone") for name in (
    "programme-new", "programme-submitted", "programme-approvals", "programme-approved",
    "programmes-week", "programme-proof"))


@pytest.mark.integration
@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("node") is None,
                    reason="needs Debian's chromium and node (make setup installs both)")
def test_editor_creates_and_submits_and_leader_approves_in_chromium(
        app, station, staff, recording):  # noqa: F811 (fixtures)
    if not (REPO / "node_modules" / "playwright-core").exists():
        pytest.skip("npm package playwright-core missing: run make setup")
    for name in SCREENSHOTS + ("programmes-failure.png",):
        (ARTIFACTS / name).unlink(missing_ok=True)
    # A programme that aired at noon, for the proof of play (its page, at both sizes).
    aired, _ = seed_aired(app, station, recording)
    with Server(app) as server:
        env = dict(os.environ, LOAXA_URL=server.url, EDITOR="editor", LEADER="leader",
                   PROOF_ID=aired,
                   LOAXA_PASSWORD=PASSWORD, MEDIA_ID=recording, ZONE_ID="thon-dong",
                   ARTIFACTS_DIR=str(ARTIFACTS), CHROMIUM=CHROMIUM)
        run = subprocess.run(["node", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["requests"] == [] and "error" not in seen, seen
    with app.state.session_factory() as session:
        made = {p.id: p for p in session.scalars(select(Programme).where(
            Programme.id != aired))}
        approvals = {a.target: a.username for a in session.scalars(
            select(AuditEntry).where(AuditEntry.action == "programme.approve"))}
    for size, hour in (("desktop", 5), ("phone", 17)):
        walk = seen["walks"][size]
        assert walk["proof"] == "1/3 đã phát" and walk["misses"] == 2
        assert walk["stateAfterSubmit"] == "submitted" and walk["stateAfterApproval"] == "approved"
        assert walk["when"] == "Thứ Hai đến Thứ Bảy, %02d:30" % hour
        assert walk["textFieldsOnly"] == ["text", "text"]  # the text and its voice
        assert (walk["rowsShown"], walk["rowsAfterAdd"]) == (2, 3)  # unused rows hidden
        assert "leader" in walk["review"] and "Đồng ý phát." in walk["review"]
        assert walk["calendarEntries"] >= 5 and walk["firstDayIsToday"]
        assert not (walk["formOverflow"] or walk["inboxOverflow"] or walk["calendarOverflow"]
                    or walk["proofOverflow"])
        programme = made[walk["id"]]
        assert programme.state == "approved" and approvals[programme.id] == "leader"
        assert programme.segments[0] == {"chime": "start"}
        assert programme.segments[1] == {"media_id": recording}
        assert programme.segments[2]["voice"] == "south"
        assert programme.rrule == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=%d;BYMINUTE=30" % hour
        assert programme.targets == {"zones": ["thon-dong"]}
    for name in SCREENSHOTS:
        assert (ARTIFACTS / name).stat().st_size > 5_000, name
