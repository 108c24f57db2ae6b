"""Issue 12's confirmation and escalation page: an emergency's own page with each receiver's
acked / fetched / playing / played and why not, the receivers that have not confirmed in time
(re-sent by the sweep, bounded, and by the "re-send" button), the cancel; and CAP alerts that
wait for an operator, confirmed from the emergency page with its form token.

The real app on a SQLite file, the receivers' reports through the real ingest (conftest.py);
the CAP alerts through the real route, the speech engine and ffmpeg.
"""

import re
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from headend.models import Broadcast, CapAlert, Delivery
from headend.services import escalation

from .conftest import PASSWORD, form_token

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "headend"))
from cap_messages import SENDER, cap_alert, cap_area, cap_info  # noqa: E402


def row(html: str, device: str) -> str:
    return re.search(r'<tr data-device="%s".*?</tr>' % device, html, re.S).group(0)


def send_emergency(station, operator, tone) -> tuple[str, str]:
    """An emergency to the whole commune from the pages; (broadcast id, media id)."""
    confirm = operator.submit("/emergency", "/emergency", {"title": "Lũ quét", "target": "all"},
                              files={"file": ("lu.wav", tone.read_bytes(), "audio/wav")})
    media_id = re.search(r'name="media_id" value="([^"]+)"', confirm.text).group(1)
    r = operator.client.post("/emergency/send", data={
        "csrf": form_token(confirm.text), "media_id": media_id, "target": "all"},
        follow_redirects=False)
    assert r.status_code == 303, r.text
    return re.fullmatch(r"/emergency/(b[0-9a-f]+)", r.headers["location"]).group(1), media_id


def play_ids(station, device) -> list[str]:
    return [c["id"] for c in station.commands("play").get(device, [])]


def age(app, bid, seconds):
    """Make the emergency and its sends ``seconds`` older (the confirmation time passes)."""
    with app.state.session_factory() as session:
        for delivery in session.query(Delivery).filter(Delivery.broadcast_id == bid):
            if delivery.sent_at is not None:
                delivery.sent_at -= timedelta(seconds=seconds)
        session.get(Broadcast, bid).created_at -= timedelta(seconds=seconds)
        session.commit()


def sweep(app) -> list[str]:
    """The presence sweep's re-sends, published as the MQTT service does."""
    from headend.commands import prepare
    settings = app.state.settings
    with app.state.session_factory() as session:
        commands = escalation.resend_overdue(session, settings=settings)
        out = prepare(session, site_id=settings.site_id, commands=commands,
                      ttl_s=settings.command_ttl_s)
        session.commit()
    app.state.publisher.publish_many(out)
    return sorted(c.device_id for c in commands)


def test_the_page_shows_each_receivers_confirmation_and_resends_the_silent_ones(
        app, station, operator, tone):
    station.online("d1", "d2", "d3", "t1")  # t2 stays offline
    bid, item = send_emergency(station, operator, tone)
    (cmd,) = play_ids(station, "d1")
    station.event("d1", "ack", cmd=cmd, ok=True)
    station.event("d1", "fetched", item=item, sha="0" * 64)
    station.event("d1", "started", bid=bid, item=item)
    station.event("d2", "ack", cmd=play_ids(station, "d2")[0], ok=True)
    station.event("t1", "ack", cmd=play_ids(station, "t1")[0], ok=True)
    station.event("d2", "ended", bid=bid, item=item, reason="failed", detail="not-cached")

    page = operator.get("/emergency/" + bid).text
    assert 'data-refresh="/emergency/%s?fragment=1"' % bid in page
    d1 = row(page, "d1")
    assert 'data-state="playing"' in d1 and "data-acked" in d1 and "Đang phát" in d1
    d2 = row(page, "d2")
    assert "Lỗi" in d2 and "đến giờ phát mà cụm loa chưa tải xong bản tin" in d2
    assert 'data-state="offline"' in row(page, "t2")
    assert "data-unconfirmed" not in page  # not yet: the confirmation time has not passed

    # 10 s later (the default): d3 never acked, t2 is offline; both listed, d3 re-sent.
    assert app.state.settings.emergency_confirm_s == 10
    age(app, bid, 11)
    fragment = operator.get("/emergency/%s?fragment=1" % bid).text
    late = re.findall(r'data-unconfirmed-device="(\w+)"', fragment)
    assert late == ["d3", "t2"]
    assert "2 cụm loa chưa xác nhận sau 10 giây" in fragment
    assert "mất kết nối: sẽ phát khi kết nối lại" in fragment
    assert sweep(app) == ["d3"]
    assert sweep(app) == []  # not again before another 10 s
    for _ in range(5):  # bounded: three re-sends, then only the button
        age(app, bid, 11)
        sweep(app)
    assert len(play_ids(station, "d3")) == 1 + app.state.settings.emergency_resends
    fragment = operator.get("/emergency/%s?fragment=1" % bid).text
    assert "đã tự động gửi lại 3/3 lần" in fragment
    assert re.search(r'data-device="d3".*?data-label="Số lần gửi lại">3<', fragment, re.S)

    # The button sends it once more; the receiver acks the latest: confirmed.
    r = operator.submit("/emergency/" + bid, "/emergency/%s/resend" % bid, {})
    assert r.status_code == 303 and len(play_ids(station, "d3")) == 5
    station.event("d3", "ack", cmd=play_ids(station, "d3")[-1], ok=True)
    fragment = operator.get("/emergency/%s?fragment=1" % bid).text
    assert re.findall(r'data-unconfirmed-device="(\w+)"', fragment) == ["t2"]
    assert "data-resend>" not in fragment  # only an offline one left: nothing to re-send

    # English on the same page.
    operator.client.cookies.set("loaxa_lang", "en")
    english = operator.get("/emergency/" + bid).text
    assert "1 receiver(s) not confirmed after 10 s" in english and "Acked" in english

    # Cancel from the page: stops everywhere, nothing more is re-sent.
    operator.client.cookies.delete("loaxa_lang")
    r = operator.submit("/emergency/" + bid, "/emergency/%s/cancel" % bid, {})
    assert r.status_code == 303
    assert set(station.commands("stop")) == {"d1", "d3", "t1"}  # d2 had failed already
    page = operator.get("/emergency/" + bid).text
    assert "Dừng phát khẩn cấp" not in page and "data-unconfirmed" not in page
    age(app, bid, 11)
    assert sweep(app) == []
    r = operator.submit("/emergency/" + bid, "/emergency/%s/resend" % bid, {})
    assert r.status_code == 409 and "đã hết hiệu lực hoặc đã bị hủy" in r.text


def bearer(browser, username):
    token = browser.client.post("/api/v1/auth/token",
                                data={"username": username, "password": PASSWORD}).json()
    return {"Authorization": "Bearer " + token["access_token"]}


def test_resend_and_cancel_through_the_api(app, station, browser, operator, tone):
    station.online("d1")
    bid, _ = send_emergency(station, operator, tone)
    url = "/api/v1/broadcasts/%s/resend" % bid
    r = browser.client.post(url, headers=bearer(browser, "operator"))
    assert r.status_code == 200 and r.json() == {"resent": 1}
    detail = operator.get("/api/v1/broadcasts/" + bid).json()
    d1 = next(d for d in detail["devices"] if d["id"] == "d1")
    assert d1["resends"] == 1 and d1["acked_at"] is None and detail["valid_until"]
    assert browser.client.post(url, headers=bearer(browser, "viewer")).status_code == 403
    r = browser.client.delete("/api/v1/broadcasts/" + bid, headers=bearer(browser, "operator"))
    assert r.status_code == 200 and r.json()["cancelled_by"] == "operator"
    assert browser.client.post(url, headers=bearer(browser, "operator")).status_code == 409


def queued_alert(identifier="KTTV-NB-0042"):
    """A Severe, Expected flood warning for Thôn Đông: the default policy queues it."""
    now = datetime.now(UTC).replace(microsecond=0)
    vietnam = timedelta(hours=7)

    def cap_time(at):
        return (at + vietnam).strftime("%Y-%m-%dT%H:%M:%S+07:00")

    info = cap_info(severity="Severe", urgency="Expected", certainty="Likely",
                    expires=cap_time(now + timedelta(hours=2)),
                    headline="Cảnh báo lũ trên sông Hoàng Long",
                    description="Mực nước lên nhanh.", instruction="Di chuyển lên vùng cao.",
                    areas=(cap_area("Thôn Đông", geocodes=(("thon", "dong"),)),))
    return cap_alert(identifier=identifier, sent=cap_time(now - timedelta(minutes=1)),
                     infos=(info,))


@pytest.fixture
def admin_token(browser):
    headers = bearer(browser, "admin")
    r = browser.client.patch("/api/v1/zones/thon-dong", headers=headers,
                             json={"area": {"geocodes": [["thon", "dong"]]}})
    assert r.status_code == 200, r.text
    return headers


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (make setup)")
def test_a_queued_cap_alert_is_confirmed_from_the_page_and_cancelled(
        app, station, operator, admin_token):
    station.online("d1", "d2", "d3", "t1")
    r = operator.client.post("/api/v1/cap", content=queued_alert(),
                             headers=dict(admin_token, **{"Content-Type": "application/xml"}))
    assert r.status_code == 200 and r.json()["outcome"] == "queued", r.text
    alert_id = r.json()["alert_id"]
    form = operator.get("/emergency").text
    assert "Cảnh báo CAP chờ xác nhận" in form and "Cảnh báo lũ trên sông Hoàng Long" in form
    assert "Xác nhận: phát ngay tại 1 thôn/xóm" in form and "Thôn Đông" in form
    assert 'data-refresh="/emergency?fragment=1"' in form  # a new alert shows by itself
    live = operator.get("/emergency?fragment=1").text
    assert "data-cap-alert" in live and 'name="csrf"' in live and "<form method" in live
    assert 'action="/emergency"' not in live  # only the live part, not the form below
    assert station.commands("play") == {}

    # Without the form's token: refused, nothing airs.
    r = operator.client.post("/emergency/cap/%s/confirm" % alert_id, data={"csrf": "forged"},
                             follow_redirects=False)
    assert r.status_code == 403 and station.commands("play") == {}
    r = operator.submit("/emergency", "/emergency/cap/%s/confirm" % alert_id, {})
    assert r.status_code == 303, r.text
    bid = re.fullmatch(r"/emergency/(b[0-9a-f]+)", r.headers["location"]).group(1)
    assert set(station.commands("play")) == {"d1", "d2", "d3"}
    page = operator.get("/emergency/" + bid).text
    assert "Cảnh báo CAP" in page and SENDER in page and "xác nhận bởi operator" in page
    assert "Cảnh báo CAP chờ xác nhận" not in operator.get("/emergency").text
    r = operator.submit("/emergency", "/emergency/cap/%s/confirm" % alert_id, {})
    assert r.status_code == 409  # confirmed once only

    r = operator.submit("/emergency/" + bid, "/emergency/%s/cancel" % bid, {})
    assert r.status_code == 303 and set(station.commands("stop")) == {"d1", "d2", "d3"}
    with app.state.session_factory() as session:
        row = session.get(CapAlert, alert_id)
        assert (row.state, row.ended_by) == ("ended", "operator")
    listed = operator.get("/api/v1/cap").json()
    assert listed[0]["current"] is False
