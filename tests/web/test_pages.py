"""The operator's pages through a browser-like client: what an operator sees and what the
receivers are sent. Receivers' reports go through the real ingest (no broker here)."""

import re
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from audio.tones import ALERT_SECONDS
from headend.i18n.catalog import MESSAGES

from .conftest import PASSWORD, form_token

ZONE = {"thon-dong": ["d1", "d2", "d3"], "thon-tay": ["t1", "t2"]}


def broadcast_id(response, page="broadcasts") -> str:
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/%s/(b[0-9a-f]+)" % page, response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


def row(html: str, device: str) -> str:
    """The table row of one receiver."""
    return re.search(r'<tr data-device="%s".*?</tr>' % device, html, re.S).group(0)


def upload_broadcast(operator, tone, **fields):
    data = {"title": "Bản tin sáng", "target": "zones", "zones": ["thon-dong"], "when": "now",
            "priority": "normal"}
    data.update(fields)
    return operator.submit("/broadcasts/new", "/broadcasts/new", data,
                           files={"file": ("ban-tin.wav", tone.read_bytes(), "audio/wav")})


# -- logging in ----------------------------------------------------------------------------

def test_pages_need_a_login_and_return_to_the_page_asked_for(browser):
    r = browser.get("/playlog?since=2026-11-01", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fplaylog%3Fsince%3D2026-11-01"
    login_page = browser.get(r.headers["location"])
    assert "Đăng nhập" in login_page.text and 'lang="vi"' in login_page.text
    r = browser.client.post("/login", data={"username": "viewer", "password": PASSWORD,
                                            "csrf": form_token(login_page.text),
                                            "next": "/playlog?since=2026-11-01"},
                            follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/playlog?since=2026-11-01"
    assert "Nhật ký phát thanh" in browser.get(r.headers["location"]).text


def test_a_wrong_password_is_refused_in_vietnamese(browser):
    r = browser.login("operator", "not-the-password")
    assert r.status_code == 401
    assert "Sai tên đăng nhập hoặc mật khẩu." in r.text
    assert "loaxa_token" not in browser.client.cookies
    assert browser.get("/receivers", follow_redirects=False).status_code == 303


def test_the_login_cookie_is_the_api_token(operator):
    """The same token works for the API: the pages' scripts and the API share one login."""
    r = operator.get("/api/v1/devices")
    assert r.status_code == 200 and {d["id"] for d in r.json()} == {"d1", "d2", "d3", "t1", "t2"}


def test_a_form_without_its_token_is_refused(browser):
    """CSRF: a post that did not come from our own form changes nothing."""
    r = browser.client.post("/login", data={"username": "operator", "password": PASSWORD},
                            follow_redirects=False)
    assert r.status_code == 403
    assert "Biểu mẫu đã hết hạn" in r.text
    assert "loaxa_token" not in browser.client.cookies
    browser.login("operator")
    r = browser.client.post("/emergency/send", data={"media_id": "m1", "csrf": "forged"},
                            follow_redirects=False)
    assert r.status_code == 403 and "Biểu mẫu đã hết hạn" in r.text


def test_log_out(operator):
    r = operator.submit("/receivers", "/logout", {})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert operator.get("/receivers", follow_redirects=False).status_code == 303


def test_a_login_never_redirects_to_another_site(browser):
    page = browser.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in page.text  # the dashboard, never the other site


# -- receivers -----------------------------------------------------------------------------

def test_receivers_page_shows_state_zone_last_seen_firmware_signal_and_supply(station, operator):
    seen = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)  # 08:02:03 in Hà Nội
    station.online("d1", firmware="1.4.2", at=seen)
    station.online("d2", firmware="1.4.2")
    station.heartbeat("d1", at=seen, rssi=-61, ln="wifi", mains=1, dc=13.6)
    station.heartbeat("d2", rssi=-83, ln="ppp", mains=0, dc=11.9)
    page = operator.get("/receivers")
    assert page.status_code == 200
    assert "2/5 cụm loa trực tuyến" in page.text
    d1 = row(page.text, "d1")
    assert 'data-online="1"' in d1 and "Trực tuyến" in d1 and "Thôn Đông" in d1
    assert "08:02:03 22/11/2026" in d1  # stored UTC, shown in Asia/Ho_Chi_Minh
    assert "1.4.2" in d1 and "-61 dBm, mạnh (Wi-Fi)" in d1 and "Điện lưới · 13,6 V" in d1
    d2 = row(page.text, "d2")
    assert "-83 dBm, yếu (4G)" in d2 and "Đang chạy ắc quy · 11,9 V" in d2
    t1 = row(page.text, "t1")
    assert 'data-online="0"' in t1 and "Mất kết nối" in t1 and "Thôn Tây" in t1


def test_receivers_refresh_fragment_and_zone_filter(station, operator):
    station.online("t1")
    fragment = operator.get("/receivers?fragment=1&zone=thon-tay")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and "1/2 cụm loa trực tuyến" in fragment.text
    assert 'data-device="t1"' in fragment.text and 'data-device="d1"' not in fragment.text
    page = operator.get("/receivers")
    assert 'data-refresh="/receivers?fragment=1"' in page.text


def test_a_refresh_after_the_session_ended_asks_the_script_to_reload(browser):
    r = browser.get("/receivers?fragment=1", follow_redirects=False)
    assert r.status_code == 401


# -- upload and broadcast ------------------------------------------------------------------

def test_upload_and_broadcast_to_a_zone_now(station, operator, tone):
    station.online("d1", "d2", "d3", "t1")
    bid = broadcast_id(upload_broadcast(operator, tone))
    plays = station.commands("play")
    assert set(plays) == {"d1", "d2", "d3"}  # only Thôn Đông; Thôn Tây untouched
    assert all(c["a"]["bid"] == bid and c["a"]["prio"] == 0 for cs in plays.values() for c in cs)
    page = operator.get("/broadcasts/" + bid)
    assert "Bản tin sáng" in page.text and "Thôn Đông" in page.text
    assert all('data-state="pending"' in row(page.text, d) for d in ("d1", "d2", "d3"))
    assert 'data-device="t1"' not in page.text

    station.event("d1", "started", bid=bid, item=plays["d1"][0]["a"]["item"])
    fragment = operator.get("/broadcasts/%s?fragment=1" % bid).text
    d1 = row(fragment, "d1")
    assert 'data-state="playing"' in d1 and "Đang phát" in d1
    assert re.search(r"\d\d:\d\d:\d\d \d\d/\d\d/\d{4}", d1)  # the started time
    assert "data-final" not in fragment


def test_broadcast_at_a_local_time(station, operator, tone):
    station.online("d1", "d2", "d3")
    at_local = datetime.now(UTC).astimezone(station.settings.tz) + timedelta(days=2)
    at_local = at_local.replace(hour=5, minute=30, second=0, microsecond=0)
    bid = broadcast_id(upload_broadcast(operator, tone, when="at",
                                        start_at=at_local.strftime("%Y-%m-%dT%H:%M"),
                                        priority="priority"))
    detail = operator.get("/api/v1/broadcasts/" + bid).json()
    assert datetime.fromisoformat(detail["start_at"]) == at_local  # 05:30 Hà Nội = 22:30 UTC
    assert detail["priority"] == "priority"
    page = operator.get("/broadcasts/" + bid).text
    assert at_local.strftime("05:30:00 %d/%m/%Y") in page and "Ưu tiên" in page


def test_an_existing_recording_can_be_broadcast_again(station, operator, tone):
    station.online("d1", "d2", "d3", "t1", "t2")
    first = broadcast_id(upload_broadcast(operator, tone))
    media_id = operator.get("/api/v1/broadcasts/" + first).json()["media_id"]
    form = operator.get("/broadcasts/new").text
    assert 'value="%s"' % media_id in form and "Bản tin sáng" in form
    r = operator.submit("/broadcasts/new", "/broadcasts/new",
                        {"media_id": media_id, "target": "all", "when": "now",
                         "priority": "normal"})
    second = broadcast_id(r)
    assert operator.get("/api/v1/broadcasts/" + second).json()["media_id"] == media_id
    assert len(operator.get("/api/v1/media").json()) == 1


def test_form_errors_are_clear_vietnamese_messages(station, operator, tone, tmp_path):
    not_audio = tmp_path / "anh.mp3"
    not_audio.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 2000)
    r = operator.submit("/broadcasts/new", "/broadcasts/new",
                        {"target": "all", "when": "now", "priority": "normal"},
                        files={"file": ("anh.mp3", not_audio.read_bytes(), "audio/mpeg")})
    assert r.status_code == 422
    assert "Tệp anh.mp3 không phải là bản ghi âm thanh" in r.text and "Traceback" not in r.text

    past = (datetime.now(UTC) - timedelta(hours=1)).astimezone(station.settings.tz)
    r = upload_broadcast(operator, tone, when="at", start_at=past.strftime("%Y-%m-%dT%H:%M"))
    assert r.status_code == 422 and "Thời điểm phát đã qua" in r.text
    # The recording was kept: the form now offers it, chosen, so the operator need not
    # upload it again.
    assert re.search(r'<option value="m[0-9a-f]+" selected>Bản tin sáng', r.text)

    r = upload_broadcast(operator, tone, zones=[])
    assert r.status_code == 422 and "Cần chọn nơi phát" in r.text
    r = operator.submit("/broadcasts/new", "/broadcasts/new",
                        {"target": "all", "when": "now", "priority": "normal"})
    assert r.status_code == 422 and "Hãy tải tệp ghi âm lên hoặc chọn một bản tin đã có" in r.text
    assert operator.get("/api/v1/broadcasts").json() == []
    assert station.commands("play") == {}


def test_viewers_see_but_cannot_broadcast(station, browser):
    browser.login("viewer")
    page = browser.get("/receivers")
    assert page.status_code == 200 and "Phát khẩn cấp" not in page.text
    for path in ("/broadcasts/new", "/emergency"):
        r = browser.get(path)
        assert r.status_code == 403 and "không có quyền" in r.text


# -- emergency -----------------------------------------------------------------------------

def test_emergency_asks_for_confirmation_then_plays_everywhere_and_can_be_stopped(
        station, operator, tone):
    station.online("d1", "d2", "d3", "t1")  # t2 stays offline
    assert "Phát khẩn cấp" in operator.get("/receivers").text
    form = operator.get("/emergency")
    assert form.status_code == 200 and "NGAY" in form.text
    confirm = operator.submit("/emergency", "/emergency",
                              {"title": "Bão số 9", "target": "all"},
                              files={"file": ("bao.wav", tone.read_bytes(), "audio/wav")})
    assert confirm.status_code == 200
    assert "Xác nhận phát khẩn cấp" in confirm.text
    listen = re.search(r'<audio controls preload="none" src="(/media/[0-9a-f]{64}\.mp3)"',
                       confirm.text).group(1)  # hear it before it airs
    assert operator.get(listen).headers["content-type"] == "audio/mpeg"
    assert "sẽ phát NGAY trên 5 cụm loa: Toàn xã" in confirm.text
    assert "4 cụm loa đang trực tuyến sẽ phát ngay." in confirm.text
    assert "1 cụm loa đang mất kết nối sẽ phát khi kết nối lại" in confirm.text
    assert station.sent == [] and operator.get("/api/v1/broadcasts").json() == []

    media_id = re.search(r'name="media_id" value="([^"]+)"', confirm.text).group(1)
    r = operator.client.post("/emergency/send", data={
        "csrf": form_token(confirm.text), "media_id": media_id, "target": "all"},
        follow_redirects=False)
    bid = broadcast_id(r, "emergency")  # the emergency's own page follows it
    plays = station.commands("play")
    assert set(plays) == {"d1", "d2", "d3", "t1"}
    assert all(c["a"]["prio"] == 3 for cs in plays.values() for c in cs)
    page = operator.get("/emergency/" + bid).text
    assert "Dừng phát khẩn cấp" in page and 'data-state="offline"' in row(page, "t2")
    assert "Tin khẩn cấp đang hiệu lực" in operator.get("/emergency").text
    assert 'href="/emergency/%s"' % bid in operator.get("/broadcasts/" + bid).text

    for device in ("d1", "d2"):
        station.event(device, "started", bid=bid, item=media_id)
    r = operator.submit("/emergency/" + bid, "/emergency/%s/cancel" % bid, {})
    assert r.status_code == 303
    assert set(station.commands("stop")) == {"d1", "d2", "d3", "t1"}
    page = operator.get("/emergency/" + bid).text
    assert "Đã hủy" in page and "Dừng phát khẩn cấp" not in page


def test_emergency_to_one_village_counts_only_its_receivers(station, operator, tone):
    station.online("t1", "t2")
    operator.submit("/broadcasts/new", "/broadcasts/new", {"target": "all"},
                    files={"file": ("x.wav", tone.read_bytes(), "audio/wav")})
    media_id = operator.get("/api/v1/media").json()[0]["id"]
    confirm = operator.submit("/emergency", "/emergency",
                              {"media_id": media_id, "target": "zones", "zones": ["thon-tay"]})
    assert "sẽ phát NGAY trên 2 cụm loa: Thôn Tây" in confirm.text
    assert "mất kết nối" not in confirm.text.split("data-confirm-summary")[1].split("</ul>")[0]
    r = operator.client.post("/emergency/send", data={
        "csrf": form_token(confirm.text), "media_id": media_id, "target": "zones",
        "zones": ["thon-tay"]}, follow_redirects=False)
    broadcast_id(r, "emergency")
    assert set(station.commands("play")) == {"t1", "t2"}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (make setup)")
def test_a_typed_emergency_is_read_aloud_after_the_alert_tone(station, operator):
    station.online("d1")
    text = "Bão số 9 đổ bộ lúc 17h30 hôm nay. Bà con không ra đồng."
    confirm = operator.submit("/emergency", "/emergency",
                              {"text": text, "voice": "south", "target": "all"})
    assert confirm.status_code == 200, confirm.text
    assert "Bản tin «Bão số 9 đổ bộ lúc 17h30 hôm nay." in confirm.text
    media = operator.get("/api/v1/media").json()
    assert len(media) == 1 and media[0]["duration_s"] > ALERT_SECONDS + 2  # alert, then speech
    form = operator.get("/broadcasts/new").text
    assert "hoặc gõ nội dung để máy đọc thành tiếng" in form and "Giọng miền Nam" in form


# -- broadcast log -------------------------------------------------------------------------

def test_broadcast_log_page_and_csv_export(station, operator, tone):
    station.online("d1", "d2", "d3")
    bid = broadcast_id(upload_broadcast(operator, tone))
    item = station.commands("play")["d1"][0]["a"]["item"]
    station.event("d1", "started", bid=bid, item=item)
    station.event("d1", "ended", bid=bid, item=item, reason="finished", played=1500)
    page = operator.get("/playlog")
    assert page.status_code == 200
    entry = re.search(r'<tr data-outcome="played">.*?</tr>', page.text, re.S).group(0)
    assert "Loa D1" in entry and "Bản tin sáng" in entry and "Đã phát" in entry
    assert "0:02" in entry  # 1.5 s heard
    csv = operator.get("/playlog.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "nhat-ky-phat-thanh-" in csv.headers["content-disposition"]
    lines = csv.text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("device_id,broadcast_id")
    assert lines[1].startswith("d1,%s," % bid) and "+07:00" in lines[1] and "played" in lines[1]
    other_day = operator.get("/playlog.csv?since=2020-01-01&until=2020-01-02").text
    assert len(other_day.lstrip("\ufeff").splitlines()) == 1  # only the header


# -- language, errors ----------------------------------------------------------------------

def test_english_is_one_link_away(station, operator):
    page = operator.get("/receivers")
    assert 'href="/lang/en?next=/receivers"' in page.text
    r = operator.get("/lang/en?next=/receivers", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/receivers"
    page = operator.get("/receivers").text
    assert 'lang="en"' in page and "0/5 receivers online" in page and "Emergency" in page
    operator.get("/lang/vi?next=/receivers")
    assert "0/5 cụm loa trực tuyến" in operator.get("/receivers").text


def test_an_unknown_broadcast_is_a_clear_404(operator):
    r = operator.get("/broadcasts/b000000000000")
    assert r.status_code == 404 and "Không có lượt phát" in r.text


def test_an_unexpected_failure_shows_an_apology_not_a_stack_trace(operator, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("headend.web.pages.receivers.list_devices", broken)
    r = operator.get("/receivers")
    assert r.status_code == 500
    assert "Đã có lỗi ngoài dự kiến" in r.text
    assert "database on fire" not in r.text and "Traceback" not in r.text


def test_every_message_has_both_languages_with_the_same_placeholders():
    for key, (vi, en) in MESSAGES.items():
        assert vi.strip() and en.strip(), key
        assert set(re.findall(r"{(\w+)}", vi)) == set(re.findall(r"{(\w+)}", en)), key


def test_the_emergency_page_lists_the_pinned_set_first_and_says_it_plays_at_once(
        station, operator, tone):
    token = operator.client.post("/api/v1/auth/token", data={
        "username": "operator", "password": PASSWORD}).json()["access_token"]
    api = {"Authorization": "Bearer " + token}
    uploaded = []
    for title in ("Tin sơ tán mẫu", "Bản tin mới"):
        r = operator.client.post("/api/v1/media", data={"title": title}, headers=api,
                                 files={"file": ("a.wav", tone.read_bytes(), "audio/wav")})
        assert r.status_code == 201, r.text
        uploaded.append(r.json()["id"])
    r = operator.client.put("/api/v1/media/%s/pinned" % uploaded[0], json={"pinned": True},
                            headers=api)
    assert r.status_code == 200
    page = operator.get("/emergency").text
    options = re.findall(r'<option value="(m[0-9a-f]+)"[^>]*>([^<]*)</option>', page)
    assert [o[0] for o in options] == uploaded  # the older, pinned one first
    assert "có sẵn trên mọi cụm loa, phát ngay" in options[0][1]
    assert "có sẵn" not in options[1][1]
