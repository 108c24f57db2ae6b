"""Cập nhật phần mềm: a rollout in waves as a technician sees it, paused by a canary that went
back to its old version, and resumed from the page; what other roles see."""

from ota_bundles import bundle_tar, make_bundle

from headend.services import firmware
from protocol import messages

from .conftest import form_token


def advance(app):
    with app.state.session_factory() as session:
        firmware.advance(session, settings=app.state.settings, publisher=app.state.publisher)


def test_a_paused_rollout_shows_why_and_a_technician_resumes_it(station, browser, tmp_path):
    app = station.app
    make_bundle(tmp_path / "www", "0.3.0")
    station.online("d1", "d2", "d3", "t1", "t2", firmware="0.2.0")
    with app.state.session_factory() as session:
        firmware.store_bundle(session, settings=station.settings,
                              data=bundle_tar(tmp_path / "www", "0.3.0"), actor="technician")
        firmware.start_waves(session, settings=station.settings, publisher=app.state.publisher,
                             version="0.3.0", waves=firmware.default_waves(session, canary="d2"),
                             actor="technician")
    assert sorted(station.commands(messages.UPDATE)) == ["d2"]
    station.report("d2", "status", messages.birth(
        "d2", 3, 1, "0.2.0", {"codecs": ["mp3"]}, "wifi",
        {"ota": "rolled-back", "ota_ver": "0.3.0", "ota_why": "crash-loop"}))
    advance(app)

    assert browser.login("technician").status_code == 303
    page = browser.get("/firmware")
    assert page.status_code == 200
    html = page.text
    assert "Cập nhật phần mềm cụm loa" in html and 'href="/firmware"' in html
    assert "Phiên bản 0.3.0" in html and 'data-plan-state="paused"' in html
    assert "Tạm dừng" in html and "d2: rolled-back (crash-loop)" in html
    assert 'data-device="d2" data-state="rolled-back"' in html
    assert "Đã tự quay về bản cũ" in html and "data-resume" in html
    r = browser.client.post("/firmware/waves/1/resume", data={"csrf": form_token(html)},
                            follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/firmware"
    assert sorted(station.commands(messages.UPDATE)) == ["d1", "d2", "d3"]
    html = browser.get("/firmware").text
    assert 'data-plan-state="running"' in html and "đợt 2/3" in html
    assert 'data-device="d1" data-state="sent"' in html
    # English on request (the language cookie the pages' switch sets).
    browser.client.cookies.set("loaxa_lang", "en")
    english = browser.get("/firmware").text
    assert "Receiver firmware updates" in english and "wave 2 of 3" in english


def test_viewers_see_the_rollout_but_cannot_resume_it(station, browser, tmp_path):
    app = station.app
    make_bundle(tmp_path / "www", "0.3.0")
    with app.state.session_factory() as session:
        firmware.store_bundle(session, settings=station.settings,
                              data=bundle_tar(tmp_path / "www", "0.3.0"))
        firmware.start_waves(session, settings=station.settings, publisher=app.state.publisher,
                             version="0.3.0", waves=[["d1"], ["d2"]])
    station.event("d1", messages.EV_UPDATE, ver="0.3.0", ok=False, reason="no-space")
    advance(app)
    assert browser.login("viewer").status_code == 303
    html = browser.get("/firmware").text
    assert "d1: failed (no-space)" in html and "data-resume" not in html
    assert 'href="/firmware"' not in html  # not in the viewer's menu
    r = browser.client.post("/firmware/waves/1/resume", data={"csrf": form_token(
        browser.get("/playlog").text)}, follow_redirects=False)
    assert r.status_code == 403
    assert sorted(station.commands(messages.UPDATE)) == ["d1"]
