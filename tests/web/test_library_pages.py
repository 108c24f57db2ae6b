"""Thư viện bản tin: upload from the page (answered at once, its job's panel refreshes to
done), refusals shown in Vietnamese naming the file, where each recording is used, deletion
refused while a broadcast uses it, roles."""

import re
import time

from headend.services.media import ingest_media
from tools.testaudio import tone_wav, write_tone_wav

from .conftest import form_token


def wait_job(browser, job_id, limit_s=120):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        panel = browser.get("/library/jobs/%s?fragment=1" % job_id)
        assert panel.status_code == 200
        if "data-final" in panel.text:
            return panel.text
        time.sleep(0.1)
    raise AssertionError("job %s not over" % job_id)


def test_an_upload_from_the_page_answers_at_once_and_its_panel_follows_it_to_the_library(
        operator):
    r = operator.submit("/library", "/library/uploads", {"title": "Thông báo tiêm chủng"},
                        files={"file": ("tiem-chung.wav", tone_wav(3.0), "audio/wav")})
    assert r.status_code == 303, r.text
    job_id = re.fullmatch(r"/library\?job=(j[0-9a-f]+)", r.headers["location"]).group(1)
    page = operator.get(r.headers["location"]).text
    assert 'data-refresh="/library/jobs/%s?fragment=1"' % job_id in page
    panel = wait_job(operator, job_id)
    assert 'data-state="done"' in panel and "Đã xử lý xong" in panel

    page = operator.get("/library").text
    assert "Thông báo tiêm chủng" in page and "tiem-chung.wav" in page
    assert "0:03" in page and "LUFS" in page and "chưa dùng" in page
    assert ">operator <" in page  # who uploaded it


def test_an_expiry_day_typed_on_the_page_is_shown_in_the_list(operator):
    r = operator.submit("/library", "/library/uploads", {"title": "Lịch họp", "expires":
                                                         "2099-12-31"},
                        files={"file": ("lich-hop.wav", tone_wav(2.0), "audio/wav")})
    assert r.status_code == 303, r.text
    wait_job(operator, r.headers["location"].split("=")[1])
    assert "phát đến hết ngày 31/12/2099" in operator.get("/library").text
    r = operator.submit("/library", "/library/uploads", {"title": "Cũ", "expires": "2001-01-01"},
                        files={"file": ("cu.wav", tone_wav(2.0), "audio/wav")})
    assert r.status_code == 422 and "Ngày hết hạn đã qua" in r.text


def test_a_refused_upload_says_why_in_vietnamese_naming_the_file(operator, tmp_path):
    silent = tmp_path / "silent.wav"
    write_tone_wav(silent, seconds=3.0, freq=0.0)  # sin(0) everywhere: digital silence
    r = operator.submit("/library", "/library/uploads", {"title": ""},
                        files={"file": ("loa-im.wav", silent.read_bytes(), "audio/wav")})
    panel = wait_job(operator, r.headers["location"].split("=")[1])
    assert 'data-refused="silent"' in panel
    assert "Tệp loa-im.wav hoàn toàn im lặng" in panel
    r = operator.submit("/library", "/library/uploads", {"title": "Tên giữ lại"})
    assert r.status_code == 422 and "Hãy chọn tệp ghi âm" in r.text
    assert 'value="Tên giữ lại"' in r.text


def test_the_list_shows_where_a_recording_is_used_and_refuses_to_delete_it(
        app, operator, station, tone):
    with app.state.session_factory() as session:
        used = ingest_media(session, settings=app.state.settings, src_path=tone,
                            filename="dang-dung.wav", title="Đang dùng", actor="operator")
        free = ingest_media(session, settings=app.state.settings,
                            src_path=write_tone_wav(tone.with_name("b.wav"), 2.0, freq=660),
                            filename="tu-do.wav", title="Tự do", actor="operator")
        used_id, free_id = used.id, free.id
    r = operator.client.post("/api/v1/broadcasts", json={"media_id": used_id,
                                                         "targets": {"all": True}},
                             headers={"X-CSRF-Token": form_token(operator.get("/library").text)})
    assert r.status_code in (201, 202), r.text
    page = operator.get("/library").text
    row = page[page.index('data-media="%s"' % used_id):]
    row = row[:row.index("</tr>")]
    assert "1 lượt phát" in row and "/library/%s/delete" % used_id not in row
    r = operator.submit("/library", "/library/%s/delete" % used_id, {})
    assert r.status_code == 409 and "không xoá được" in r.text
    r = operator.submit("/library", "/library/%s/delete" % free_id, {})
    assert r.status_code == 303
    assert 'data-media="%s"' % free_id not in operator.get("/library").text


def test_viewers_read_the_library_but_may_not_upload_or_delete(browser, station):
    assert browser.login("viewer").status_code == 303
    page = browser.get("/library")
    assert page.status_code == 200 and "Thư viện bản tin" in page.text
    assert 'action="/library/uploads"' not in page.text
    r = browser.submit("/library", "/library/uploads", {},
                       files={"file": ("x.wav", tone_wav(2.0), "audio/wav")})
    assert r.status_code == 403
    # The page without a CSRF token is refused even for an operator.
    assert browser.client.post("/library/uploads", follow_redirects=False).status_code in (
        403, 422)
