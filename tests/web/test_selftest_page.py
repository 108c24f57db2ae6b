"""The periodic test's page (/selftest): the receivers that failed or did not answer, with the
reason in Vietnamese (English on request), and "Kiểm tra ngay" for a technician only."""

import re

from headend.services import selftests
from protocol import messages


def row(html: str, device: str) -> str:
    return re.search(r'<tr data-device="%s".*?</tr>' % device, html, re.S).group(0)


def test_the_page_lists_the_failed_and_silent_receivers_first_in_vietnamese(station, browser):
    assert browser.login("technician").status_code == 303
    page = browser.get("/selftest")
    assert page.status_code == 200 and "Chưa có lần kiểm tra nào." in page.text
    assert "Lần kiểm tra tự động tiếp theo:" in page.text and "10:00" in page.text
    station.online("d1", "d2", "d3")  # t1, t2 offline
    r = browser.submit("/selftest", "/selftest", {})
    assert r.status_code == 303 and r.headers["location"] == "/selftest"
    sent = station.commands(messages.SELFTEST)
    assert sorted(sent) == ["d1", "d2", "d3"]
    run = sent["d1"][0]["a"]["run"]
    station.event("d1", messages.EV_SELFTEST, run=run, ok=True, sink=True, relay=True,
                  fault=False, flash=400000, synced=True)
    station.event("d2", messages.EV_SELFTEST, run=run, ok=False, reason="amp-fault",
                  sink=True, relay=True, fault=True)
    station.event("d3", messages.EV_SELFTEST, run=run, ok=False, reason="sink", sink=False,
                  detail="vs1053: DREQ stuck low")
    page = browser.get("/selftest").text
    assert "Cụm loa lỗi hoặc không trả lời (4)" in page
    assert "Ampli báo lỗi" in row(page, "d2") and "Thôn Đông" in row(page, "d2")
    assert "Bộ phát âm thanh không chạy" in row(page, "d3")
    assert "vs1053: DREQ stuck low" in row(page, "d3")
    assert "Mất kết nối khi gửi lệnh" in row(page, "t1") and "Không trả lời" in row(page, "t1")
    assert 'data-device="d1"' not in page  # passed: counted, not listed
    assert "1 đạt · 0 đang chờ trả lời" in page
    browser.get("/lang/en?next=/selftest")
    page = browser.get("/selftest").text
    assert "The amplifier reports a fault" in row(page, "d2")
    assert "Receivers that failed or did not answer (4)" in page


def test_only_a_technician_or_admin_may_run_it(station, browser):
    assert browser.login("operator").status_code == 303
    page = browser.get("/selftest")
    assert page.status_code == 200 and "data-run-selftest" not in page.text
    r = browser.submit("/receivers", "/selftest", {})
    assert r.status_code == 403
    assert not station.commands(messages.SELFTEST)
    with station.app.state.session_factory() as session:
        assert session.query(selftests.SelftestRun).count() == 0
