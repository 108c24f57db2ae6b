"""The /live page ("Phát trực tiếp"): in Vietnamese first, English one link away, only for
those who may broadcast; and, in a real Chromium with a fake microphone speaking a WAV with
clicks, the whole path to the receivers of one village (the integration test below)."""

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import httpx
import numpy as np
import pytest
from polling import wait_for

from audio.decode import decode_to_pcm
from headend.process import HeadendProcess

from .conftest import COMMUNE
from .test_browser import CHROMIUM, SITE, ZONES, FleetThread, provision

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCRIPT = REPO / "tests" / "browser" / "live.mjs"
SCREENSHOTS = ("live.png", "live-phone.png", "live-on-air.png", "live-ended.png")


def test_the_live_page_in_vietnamese_with_villages_a_meter_and_the_big_button(station,
                                                                              operator):
    page = operator.get("/live")
    assert page.status_code == 200
    html = page.text
    assert "<title>Phát trực tiếp" in html and 'href="/live" aria-current="page"' in html
    for _zone_id, (name, _devices) in COMMUNE.items():
        assert name in html
    assert 'role="meter"' in html and "Mức tiếng micrô" in html
    assert re.search(r"<button[^>]*data-start[^>]*>Phát trực tiếp</button>", html)
    assert re.search(r"<button[^>]*data-stop[^>]*>Dừng</button>", html)
    assert '<script src="/static/live.js"' in html
    strings = json.loads(unescape(re.search(r'data-strings="([^"]+)"', html).group(1)))
    assert strings["live.on_air"] == "ĐANG PHÁT TRỰC TIẾP"
    assert strings["reason.socket-closed"] and strings["state.playing"] == "Đang phát"
    # The script and its worklet are served.
    assert operator.get("/static/live.js").status_code == 200
    assert "registerProcessor" in operator.get("/static/live-worklet.js").text


def test_the_live_page_in_english(station, operator):
    operator.get("/lang/en?next=/live")
    html = operator.get("/live").text
    assert 'lang="en"' in html and "<title>Live" in html and ">Go live</button>" in html
    strings = json.loads(unescape(re.search(r'data-strings="([^"]+)"', html).group(1)))
    assert strings["live.on_air"] == "ON AIR"


def test_viewers_and_technicians_do_not_get_the_live_page(station, browser):
    assert browser.login("viewer").status_code == 303
    assert 'href="/live"' not in browser.get("/receivers").text
    r = browser.get("/live")
    assert r.status_code == 403 and "không có quyền" in r.text


def test_the_live_page_needs_a_login(browser):
    r = browser.get("/live", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


# -- in a real browser ---------------------------------------------------------------------

def clicks_wav(path, seconds=6.0, rate=48000):
    """A fake microphone's file: a quiet tone with clicks at irregular times (Chromium plays
    it in a loop as the microphone's input)."""
    import wave

    rng = np.random.default_rng(11)
    t = np.arange(int(seconds * rate)) / rate
    pcm = 1500 * np.sin(2 * np.pi * 300 * t)
    at = 0.3
    while at < seconds - 0.3:
        start = int(at * rate)
        pcm[start:start + 120] += 20000 * np.hanning(120)
        at += rng.uniform(0.2, 0.5)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(pcm, -32000, 32000).astype("<i2").tobytes())
    return path


def click_times(pcm, rate, block_ms=2, ratio=3.0):
    """Onsets (s) of the clicks in ``pcm``: a 2 ms block louder than ``ratio`` times the
    median of the 200 ms before it, at least 100 ms after the last onset. Relative to what
    came before, because the browser's automatic gain control changes the level as it goes."""
    size = rate * block_ms // 1000
    level = np.abs(pcm[:len(pcm) // size * size].astype(np.float64)).reshape(-1, size).max(1)
    history = 200 // block_ms
    onsets = []
    for i in range(history, len(level)):
        floor = np.median(level[i - history:i]) + 100  # + a little: digital silence is 0
        if level[i] > ratio * floor and (not onsets or i * block_ms / 1000 - onsets[-1] > 0.1):
            onsets.append(i * block_ms / 1000)
    return np.array(onsets)


@pytest.mark.integration
@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("node") is None,
                    reason="needs Debian's chromium and node (make setup installs both)")
def test_an_operator_speaks_to_one_village_from_chromium_and_stops(mosquitto_broker, tmp_path):
    if not (REPO / "node_modules" / "playwright-core").exists():
        pytest.skip("npm package playwright-core missing: run make setup")
    data = tmp_path / "headend"
    specs = provision(data, mosquitto_broker)
    zone_id = ZONES[0][0]
    in_zone = [s.id for s in specs if s.zone == zone_id]
    others = [s.id for s in specs if s.zone != zone_id]
    wav = clicks_wav(tmp_path / "micro.wav")
    for name in SCREENSHOTS + ("live-failure.png",):
        (ARTIFACTS / name).unlink(missing_ok=True)
    server = HeadendProcess(data, mqtt=(mosquitto_broker.host, mosquitto_broker.port),
                            env={"LOAXA_SITE_ID": SITE})
    server.start()
    try:
        with FleetThread(specs, SITE, (mosquitto_broker.host, mosquitto_broker.port),
                         tmp_path / "boards") as sim:
            for device in sim.fleet.ids():  # keep what they play, to decode it
                sim.fleet[device].sink.keep_bytes = True
            token = httpx.post(server.url + "/api/v1/auth/token",
                               data={"username": "canbo", "password": "browser-pass-1"}).json()
            cookies = {"loaxa_token": token["access_token"]}
            wait_for(lambda: all(d["online"] for d in httpx.get(
                server.url + "/api/v1/devices", cookies=cookies).json()), 30,
                "every receiver online", interval=0.2)
            env = dict(os.environ, LOAXA_URL=server.url, LOAXA_USER="canbo",
                       LOAXA_PASSWORD="browser-pass-1", MIC_WAV=str(wav), ZONE_ID=zone_id,
                       ZONE_SIZE=str(len(in_zone)), ARTIFACTS_DIR=str(ARTIFACTS),
                       CHROMIUM=CHROMIUM)
            run = subprocess.run(["node", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                                 text=True, timeout=120)
            output = run.stdout + run.stderr
            assert run.returncode == 0, output + "\nhead-end log:\n" + server.log_text()[-3000:]
            print(output)  # the steps, with how long each took (pytest -s)
            sessions = httpx.get(server.url + "/api/v1/live", cookies=cookies).json()
            assert [(s["state"], s["reason"]) for s in sessions] == [
                ("ended", "socket-closed"), ("ended", "stopped")], sessions
            closed, bid = sessions[0]["id"], sessions[1]["id"]
            fleet = sim.fleet
            for device in in_zone:  # the closed tab's session, stopped on every pole
                wait_for(lambda d=device: fleet[d].sink.playbacks_of(bid=closed) and
                         fleet[d].sink.playbacks_of(bid=closed)[0].finished, 10,
                         "the closed tab's session to stop on " + device)
            for device in in_zone:
                (played,) = fleet[device].sink.playbacks_of(bid=bid)
                assert played.how == "stopped", (device, output)
                pcm = decode_to_pcm(played.codec, bytes(played.data), 16000)
                # The fake microphone's clicks, heard: irregular gaps, so a run of them
                # matching the file's gaps means the receiver played that file.
                heard = np.diff(click_times(pcm, 16000))
                assert len(heard) >= 5, (device, played.codec, len(heard))
                expected = np.diff(click_times(np.frombuffer(
                    wav.read_bytes()[44:], dtype="<i2"), 48000))
                assert _contains_run(expected, heard), (device, heard, expected)
            for device in others:
                assert not fleet[device].sink.playbacks, device
    finally:
        server.stop()
    for name in SCREENSHOTS:
        assert (ARTIFACTS / name).stat().st_size > 5_000, name


def _contains_run(expected, heard, run=4, tolerance_s=0.02):
    """Whether ``run`` consecutive gaps of ``heard`` equal consecutive gaps of ``expected``
    (the file loops, so look in it twice over)."""
    cycle = np.concatenate([expected, expected])
    for i in range(len(heard) - run + 1):
        part = heard[i:i + run]
        for j in range(len(cycle) - run + 1):
            if np.all(np.abs(cycle[j:j + run] - part) < tolerance_s):
                return True
    return False
