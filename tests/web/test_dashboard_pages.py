"""The dashboard (the home page) and the receiver page's remote actions, through the pages as
an operator's or technician's browser sees them. Receivers report through the real ingest;
commands are kept by the RecordingPublisher and opened with each receiver's key."""

import re
from datetime import UTC, datetime, timedelta

from headend.models import PROGRAMME_APPROVED, PROGRAMME_DRAFT, Programme
from headend.services.broadcasts import send_emergency
from headend.services.dashboard import overview, villages_of
from headend.services.devices import recent_commands

from .conftest import form_token
from .test_pages import broadcast_id, upload_broadcast


def village(html: str, zone: str) -> dict[str, str]:
    """One village's counts by state, from the dashboard's table."""
    found = re.search(r'<tr data-village="%s">.*?</tr>' % zone, html, re.S).group(0)
    return dict(re.findall(r'data-state="(\w+)"[^>]*>(\d+)<', found))


def counts(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-count="(\w+)">(\d+)<', html))


def add_programme(app, title, start, state=PROGRAMME_APPROVED, rrule=None):
    """A programme row as the programmes service leaves an approved one (its media is not
    read by the dashboard)."""
    with app.state.session_factory() as session:
        session.add(Programme(id="p-" + title[-1], title=title, segments=[],
                              targets={"all": True}, priority="normal", start_at=start,
                              rrule=rrule, state=state))
        session.commit()


# -- dashboard -----------------------------------------------------------------------------

def test_the_home_page_is_the_dashboard_after_login(browser):
    r = browser.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
    page = browser.get("/login")
    r = browser.client.post("/login", data={"username": "viewer", "password": "mat-khau-thu",
                                            "csrf": form_token(page.text)},
                            follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    html = browser.get("/").text
    assert "<h1>Tổng quan</h1>" in html and 'aria-current="page">Tổng quan' in html


def test_the_dashboard_counts_receivers_by_state_per_village(station, operator):
    station.online("d1", "d2", "t1")
    station.heartbeat("d1", mains=1)
    station.heartbeat("d2", mains=0, dc=11.8)   # on battery: a fault
    station.heartbeat("t1", mains=1, af=1)      # amplifier fault
    html = operator.get("/").text
    assert counts(html) == {"online": "1", "fault": "2", "offline": "2", "total": "5"}
    assert village(html, "thon-dong") == {"online": "1", "fault": "1", "offline": "1"}
    assert village(html, "thon-tay") == {"online": "0", "fault": "1", "offline": "1"}
    assert "Thôn Đông" in html and "Cụm loa theo thôn/xóm" in html
    assert "Hiện không phát gì." in html
    assert "Không có chương trình đã duyệt nào trong 7 ngày tới." in html
    # The live part alone, as the page's script re-fetches it: the same figures.
    station.heartbeat("d2", mains=1)
    fragment = operator.get("/?fragment=1").text
    assert "<html" not in fragment and counts(fragment)["fault"] == "1"
    assert 'data-refresh="/?fragment=1"' in html


def test_the_dashboard_shows_what_plays_emergencies_and_the_next_programmes(
        app, station, operator, tone):
    station.online("d1", "d2", "d3", "t1")
    bid = broadcast_id(upload_broadcast(operator, tone, title="Bản tin chiều"))
    item = station.commands("play")["d1"][0]["a"]["item"]
    for device in ("d1", "d2"):
        station.event(device, "started", bid=bid, item=item)
    now = datetime.now(UTC)
    add_programme(app, "Chương trình 1", now + timedelta(hours=30))
    add_programme(app, "Chương trình 2", now - timedelta(days=3), rrule="FREQ=DAILY")
    add_programme(app, "Bản nháp 3", now + timedelta(hours=2), state=PROGRAMME_DRAFT)
    html = operator.get("/").text
    playing = re.search(r'<li data-playing="%s">.*?</li>' % bid, html, re.S).group(0)
    assert "Bản tin chiều" in playing and "2/3 cụm loa đang phát" in playing
    upcoming = re.findall(r'<li data-programme="([^"]+)">', html)
    assert upcoming == ["p-2", "p-1"]  # the daily one airs within a day, the other in 30 h
    assert "Bản nháp" not in html
    assert "Tin khẩn cấp đang hiệu lực" not in html

    with app.state.session_factory() as session:
        emergency = send_emergency(session, settings=app.state.settings,
                                   publisher=app.state.publisher, media_id=item, actor="test")
        board = overview(session, settings=app.state.settings)
    assert [e.id for e in board.emergencies] == [emergency.id]
    station.event("d3", "started", bid=emergency.id, item=item)
    html = operator.get("/").text
    assert "Tin khẩn cấp đang hiệu lực" in html and 'data-emergency="%s"' % emergency.id in html
    # One click from the dashboard to who has and has not confirmed it.
    assert 'href="/emergency/%s"' % emergency.id in html
    # What is heard first comes first: the emergency, then the bulletin d1 and d2 still play.
    assert re.findall(r'<li data-playing="([^"]+)">', html) == [emergency.id, bid]

    operator.get("/lang/en?next=/")
    html = operator.get("/").text
    assert "<h1>Overview</h1>" in html and "Emergencies in force" in html
    assert "Next programmes" in html


def test_live_sessions_on_air_are_shown_after_an_emergency_before_the_rest(app, station):
    from types import SimpleNamespace

    from headend.live.session import ENDED, LIVE

    def live(sid, state):
        return SimpleNamespace(id=sid, state=state, sent={"d1": "c1", "d2": "c2"},
                               receivers=[1, 2, 3], started_at=None,
                               created_at=datetime.now(UTC), created_by="canbo")

    with app.state.session_factory() as session:
        board = overview(session, settings=app.state.settings,
                         live_sessions=[live("L1", LIVE), live("L2", ENDED)])
    assert [(p.id, p.kind, p.playing, p.targeted) for p in board.playing] == [
        ("L1", "live", 2, 3)]


def test_the_dashboard_api_gives_the_same_figures(station, operator):
    station.online("d1")
    station.heartbeat("d1", mains=0)
    body = operator.get("/api/v1/dashboard").json()
    assert body["totals"] == {"online": 0, "fault": 1, "offline": 4, "total": 5}
    assert [(v["id"], v["fault"], v["offline"]) for v in body["villages"]] == [
        ("thon-dong", 1, 2), ("thon-tay", 0, 2)]  # by name, as read: Đông before Tây
    assert body["playing"] == [] and body["emergencies"] == [] and body["upcoming"] == []


# -- remote actions on the receiver page ---------------------------------------------------

def act(browser, device, **data):
    return browser.submit("/receivers/" + device, "/receivers/%s/actions" % device, data)


def test_a_technician_identifies_a_receiver_and_sees_it_confirm(station, browser):
    assert browser.login("technician").status_code == 303
    station.online("d1")
    station.heartbeat("d1", vol=55)
    page = browser.get("/receivers/d1").text
    assert "Điều khiển từ xa" in page and 'data-action="reboot"' in page
    assert "Chưa gửi lệnh nào tới cụm loa này." in page and "(hiện tại 55)" in page
    r = act(browser, "d1", kind="identify")
    assert r.status_code == 303 and r.headers["location"] == "/receivers/d1#actions"
    (cmd,) = station.commands("identify")["d1"]
    assert cmd["a"] == {"secs": 30}
    fragment = browser.get("/receivers/d1/actions?fragment=1").text
    assert 'data-state="waiting"' in fragment and "Đã gửi, chờ cụm loa xác nhận" in fragment
    assert "data-final" not in fragment  # the page keeps asking
    station.event("d1", "ack", cmd=cmd["id"], ok=True)
    fragment = browser.get("/receivers/d1/actions?fragment=1").text
    assert 'data-state="done"' in fragment and "Cụm loa đã xác nhận" in fragment
    assert "data-final" in fragment and "technician" in fragment

    r = act(browser, "d1", kind="volume", vol="40")
    (cmd,) = station.commands("volume")["d1"]
    assert r.status_code == 303 and cmd["a"] == {"vol": 40}
    station.event("d1", "ack", cmd=cmd["id"], ok=False, reason="expired")
    api = browser.get("/api/v1/devices/d1/commands").json()
    assert [(c["kind"], c["state"], c["reason"]) for c in api] == [
        ("volume", "refused", "expired"), ("identify", "done", None)]


def test_reboot_needs_its_box_ticked_and_bad_volumes_are_refused_in_words(station, browser):
    browser.login("technician")
    station.online("d1")
    r = act(browser, "d1", kind="reboot")
    assert r.status_code == 422 and "Hãy đánh dấu ô xác nhận để khởi động lại" in r.text
    for vol in ("abc", "101"):
        r = act(browser, "d1", kind="volume", vol=vol)
        assert r.status_code == 422, vol
    assert "Tham số lệnh volume không hợp lệ" in r.text
    r = act(browser, "d1", kind="play")
    assert r.status_code == 422 and "Lệnh phải là một trong" in r.text
    assert station.sent == []
    r = act(browser, "d1", kind="reboot", confirm="yes")
    assert r.status_code == 303 and list(station.commands("reboot")) == ["d1"]


def test_who_may_act_on_a_receiver(station, browser, app):
    station.online("d1")
    browser.login("viewer")
    page = browser.get("/receivers/d1").text
    assert 'data-action="' not in page  # a viewer sees the answers, no buttons
    r = act(browser, "d1", kind="identify")
    assert r.status_code == 403 and "Bạn không có quyền gửi lệnh này tới cụm loa" in r.text
    browser.login("operator")  # may stop what plays, not identify, set the volume or reboot
    page = browser.get("/receivers/d1").text
    assert 'data-action="stop"' in page and 'data-action="identify"' not in page
    assert act(browser, "d1", kind="stop").status_code == 303
    assert act(browser, "d1", kind="reboot", confirm="yes").status_code == 403
    r = browser.client.post("/api/v1/devices/d1/commands", json={"kind": "volume",
                                                                  "args": {"vol": 3}},
                            headers={"X-CSRF-Token": form_token(page)})
    assert r.status_code == 403
    assert list(station.commands("stop")) == ["d1"] and station.commands("volume") == {}
    # A forged form changes nothing.
    r = browser.client.post("/receivers/d1/actions", data={"kind": "stop", "csrf": "forged"},
                            follow_redirects=False)
    assert r.status_code == 403 and len(station.sent) == 1
    assert act(browser, "nope", kind="stop").status_code == 404


def test_villages_are_ordered_as_read_and_receivers_in_none_come_last():
    from types import SimpleNamespace

    def device(zone, name):
        return SimpleNamespace(zone=zone, zone_name=name, online=False, telemetry=None)

    found = villages_of([device("t", "Thôn Tây"), device(None, None), device("d", "Thôn Đông"),
                         device("a", "Ấp An")])
    assert [v.id for v in found] == ["a", "d", "t", ""]
    assert found[-1].offline == 1 and found[-1].total == 1


def test_a_command_without_an_answer_is_shown_as_such_once_it_expired(station, browser, app):
    browser.login("admin")
    act(browser, "d3", kind="identify")  # d3 is offline: nothing will answer
    page = browser.get("/receivers/d3").text
    assert "Cụm loa đang mất kết nối: lệnh chỉ còn hiệu lực 60 giây" in page
    later = datetime.now(UTC) + timedelta(seconds=app.state.settings.command_ttl_s + 1)
    with app.state.session_factory() as session:
        (command,) = recent_commands(session, settings=app.state.settings, device_id="d3",
                                     now=later)
    assert command.state == "no-answer" and command.kind == "identify"
