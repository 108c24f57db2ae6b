"""The alerts page: open alerts with their reason first, then those over, in Vietnamese (or
English); reports go through the real ingest and the alert engine as the MQTT service runs it."""

import re
from datetime import UTC, datetime

from headend.services import alerts


def judge(station, *devices):
    with station.app.state.session_factory() as session:
        alerts.evaluate(session, settings=station.settings, device_ids=devices,
                        now=datetime.now(UTC))
        session.commit()


def test_alerts_page_lists_open_then_over(browser, station):
    station.online("d1", "d2")
    station.heartbeat("d1", mains=0, dc=12.4)
    station.heartbeat("d2", af=1)
    judge(station, "d1", "d2")
    station.heartbeat("d2")  # the amplifier is fine again
    judge(station, "d2")
    station.report("d1", "status", {"v": 1, "k": "death", "dev": "d1", "boot": 1, "conn": 1})
    judge(station, "d1")
    assert browser.login("viewer").status_code == 303
    page = browser.get("/alerts")
    assert page.status_code == 200
    html = page.text
    opened, over = html.split("Đã hết gần đây")
    assert re.findall(r'data-kind="([^"]+)" data-reason="([^"]*)"', opened) == [
        ("offline", "link-lost"), ("on-battery", "")]
    assert "Mất kết nối: mất đường truyền khi vẫn có điện" in opened
    assert "Loa D1" in opened and "dc 12.4" in opened
    assert re.findall(r'data-kind="([^"]+)"', over) == ["amp-fault"]
    assert "Lỗi bộ khuếch đại" in over
    browser.get("/lang/en?next=/alerts")
    english = browser.get("/alerts").text
    assert 'lang="en"' in english and "Offline: link lost while powered" in english
    assert "Recently over" in english and "Amplifier fault" in english


def test_alerts_page_without_alerts(browser, station):
    assert browser.login("viewer").status_code == 303
    html = browser.get("/alerts").text
    assert "Không có cảnh báo nào" in html and 'href="/alerts"' in html


def test_the_dashboard_shows_the_open_alerts_worst_first(browser, station):
    station.online("d1", "d2", "t1")
    station.heartbeat("d1", mains=0, dc=12.4)
    station.heartbeat("d2")
    station.heartbeat("t1", af=1)
    judge(station, "d1", "d2", "t1")
    station.report("d2", "status", {"v": 1, "k": "death", "dev": "d2", "boot": 1, "conn": 1})
    judge(station, "d2")
    assert browser.login("viewer").status_code == 303
    html = browser.get("/").text
    panel = re.search(r'<section class="panel dash-alerts".*?</section>', html, re.S).group(0)
    # Critical first, newest first among them (the pole gone offline, the amplifier), then
    # the warning.
    assert re.findall(r'data-kind="([^"]+)"', panel) == ["offline", "amp-fault", "on-battery"]
    assert "Cảnh báo đang có" in panel and "(3)" in panel
    assert "Mất kết nối: mất đường truyền khi vẫn có điện" in panel and "Loa D2" in panel
    board = browser.get("/api/v1/dashboard").json()
    assert board["alerts_open"] == 3
    assert {(a["device_id"], a["kind"], a["severity"]) for a in board["alerts"]} == {
        ("d2", "offline", "critical"), ("t1", "amp-fault", "critical"),
        ("d1", "on-battery", "warning")}
    assert board["alerts"][-1]["title_en"] == "On battery"
