"""The library page in a real Chromium (tests/browser/library.mjs): an upload of several
minutes answers at once and its panel shows the conversion's progress until the recording is
in the list; at desktop and phone size. Screenshots land in test-artifacts/."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import PASSWORD
from .test_telemetry_pages import CHROMIUM, Server

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCRIPT = REPO / "tests" / "browser" / "library.mjs"
SCREENSHOTS = tuple("library%s-%s.png" % (name, size) for size in ("desktop", "phone")
                    for name in ("-progress", ""))


def speechlike(path: Path, seconds: int, seed: int) -> Path:
    from audio import ffmpeg

    ffmpeg.run(["-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.3:seed=%d:r=16000,"
                "tremolo=f=4:d=0.9,lowpass=f=3500" % seed, "-t", str(seconds),
                "-c:a", "libmp3lame", "-b:a", "64k", str(path)])
    return path


@pytest.mark.integration
@pytest.mark.slow  # make test-slow: minutes of audio converted while the page watches
@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("node") is None,
                    reason="needs Debian's chromium and node (make setup installs both)")
def test_an_upload_shows_its_progress_and_lands_in_the_library_in_chromium(
        app, station, tmp_path):
    if not (REPO / "node_modules" / "playwright-core").exists():
        pytest.skip("npm package playwright-core missing: run make setup")
    for name in SCREENSHOTS + ("library-failure.png",):
        (ARTIFACTS / name).unlink(missing_ok=True)
    files = {size: speechlike(tmp_path / ("ban-tin-%s.mp3" % size), 600, seed)
             for size, seed in (("desktop", 1), ("phone", 2))}
    with Server(app) as server:
        env = dict(os.environ, LOAXA_URL=server.url, OPERATOR="operator",
                   LOAXA_PASSWORD=PASSWORD, FILE_DESKTOP=str(files["desktop"]),
                   FILE_PHONE=str(files["phone"]), ARTIFACTS_DIR=str(ARTIFACTS),
                   CHROMIUM=CHROMIUM)
        run = subprocess.run(["node", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["requests"] == [] and "error" not in seen, seen
    for size, title in (("desktop", "Bản tin sáng thứ Hai"),
                        ("phone", "Thông báo lịch tiêm chủng")):
        walk = seen["walks"][size]
        assert walk["state"] == "done", walk
        # The bar moved while the page watched it, and only forward.
        shown = walk["progress"]
        assert any(0 < p < 100 for p in shown) and shown == sorted(shown), walk
        assert "Đã xử lý xong" in walk["panel"]
        assert title in walk["row"] and "10:00" in walk["row"] and "operator" in walk["row"]
        assert "chưa dùng" in walk["row"] and not walk["overflow"]
        print("\n%s: answered in %d ms, progress shown %s" % (size, walk["answeredMs"], shown))
    for name in SCREENSHOTS:
        assert (ARTIFACTS / name).stat().st_size > 5_000, name
