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
