"""The CAP feeds page (/cap/feeds): each feed's health in Vietnamese (English on request), an
admin adds (a refusal shown with the form as typed), pauses, resumes and removes feeds, an
operator asks for a read now; the others see the list only and are refused the forms."""

import re

import pytest

from headend.models import CapFeed
from headend.services import cap_alerts, cap_feeds


def row(html: str, feed: str) -> str:
    return re.search(r'<tr data-feed="%s".*?</tr>' % feed, html, re.S).group(0)


@pytest.fixture
def source(station):
    with station.app.state.session_factory() as session:
        cap_alerts.add_source(session, source_id="kttv-nb", name="Đài KTTV Ninh Bình",
                              auth="api-key", senders=["kttv-nb@example.vn"])
    return "kttv-nb"


@pytest.fixture
def feed(station, source):
    with station.app.state.session_factory() as session:
        cap_feeds.add_feed(session, feed_id="kttv", url="https://kttv.example/cap.xml",
                           source_id=source, actor="test")
    return "kttv"


def feeds(station):
    with station.app.state.session_factory() as session:
        return {f.id: (f.active, f.interval_s, f.next_poll_at) for f in
                session.query(CapFeed)}


def test_an_admin_adds_pauses_resumes_and_removes_a_feed(station, browser, source):
    assert browser.login("admin").status_code == 303
    page = browser.get("/cap/feeds")
    assert page.status_code == 200 and "Chưa có nguồn tin CAP nào." in page.text
    assert "Đài KTTV Ninh Bình (kttv-nb)" in page.text
    # A refusal names what is wrong, in Vietnamese, and keeps what was typed.
    r = browser.submit("/cap/feeds", "/cap/feeds", {
        "id": "kttv", "url": "ftp://kttv.example/cap.xml", "source": source,
        "interval_s": "60"})
    assert r.status_code == 422 and "phải bắt đầu bằng http://" in r.text
    assert 'value="ftp://kttv.example/cap.xml"' in r.text and feeds(station) == {}
    r = browser.submit("/cap/feeds", "/cap/feeds", {
        "id": "kttv", "url": "https://kttv.example/cap.xml", "source": source,
        "interval_s": "5"})
    assert r.status_code == 422 and "Chu kỳ đọc nguồn tin từ 10 đến 86400 giây" in r.text
    r = browser.submit("/cap/feeds", "/cap/feeds", {
        "id": "kttv", "url": "https://kttv.example/cap.xml", "source": source,
        "interval_s": "120"})
    assert r.status_code == 303 and feeds(station)["kttv"][:2] == (True, 120)
    page = browser.get("/cap/feeds").text
    assert "Chưa đọc lần nào" in row(page, "kttv") and "Đọc mỗi 120 giây" in row(page, "kttv")
    # A failure shows its reason and count.
    with station.app.state.session_factory() as session:
        feed = session.get(CapFeed, "kttv")
        feed.failures, feed.last_error = 3, "HTTP 503 Service Unavailable"
        session.commit()
    page = browser.get("/cap/feeds").text
    assert "Đang lỗi" in row(page, "kttv") and "Lỗi 3 lần liên tiếp" in row(page, "kttv")
    assert "HTTP 503 Service Unavailable" in row(page, "kttv")
    assert browser.submit("/cap/feeds", "/cap/feeds/kttv/pause", {}).status_code == 303
    assert feeds(station)["kttv"][0] is False
    page = browser.get("/cap/feeds").text
    assert "Tạm dừng" in row(page, "kttv") and "data-poll" not in row(page, "kttv")
    assert browser.submit("/cap/feeds", "/cap/feeds/kttv/resume", {}).status_code == 303
    assert feeds(station)["kttv"][0] is True
    browser.get("/lang/en?next=/cap/feeds")
    page = browser.get("/cap/feeds").text
    assert "CAP alert feeds" in page and "Read every 120 s" in row(page, "kttv")
    assert browser.submit("/cap/feeds", "/cap/feeds/kttv/delete", {}).status_code == 303
    assert feeds(station) == {}


def test_an_operator_reads_a_feed_now_and_manages_nothing(station, browser, feed):
    assert browser.login("operator").status_code == 303
    page = browser.get("/emergency").text
    assert 'href="/cap/feeds"' in page
    page = browser.get("/cap/feeds").text
    assert "data-poll" in row(page, "kttv") and "data-pause" not in page
    assert "data-feed-form" not in page
    r = browser.submit("/cap/feeds", "/cap/feeds/kttv/poll", {})
    assert r.status_code == 303 and feeds(station)["kttv"][2] is not None
    assert "trong vòng 5 giây" in browser.get(r.headers["location"]).text
    for action in ("/cap/feeds/kttv/pause", "/cap/feeds/kttv/delete"):
        assert browser.submit("/cap/feeds", action, {}).status_code == 403
    assert browser.submit("/cap/feeds", "/cap/feeds", {
        "id": "x", "url": "https://x.example/", "source": "kttv-nb",
        "interval_s": "60"}).status_code == 403
    assert set(feeds(station)) == {"kttv"} and feeds(station)["kttv"][0] is True


def test_a_viewer_sees_the_list_only(station, browser, feed):
    assert browser.login("viewer").status_code == 303
    page = browser.get("/cap/feeds").text
    assert "kttv.example" in row(page, "kttv") and "<form" not in row(page, "kttv")
    assert browser.submit("/cap/feeds", "/cap/feeds/kttv/poll", {}).status_code == 403
