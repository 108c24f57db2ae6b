"""The programme pages (Chương trình) through a browser-like client: the week's calendar, the
editor's form (recurrence from simple choices, guard-rail refusals keeping what was typed),
the leader's approvals, skipping and moving one occurrence, proof of play per occurrence, and
who may do what. A real SQLite file; receivers' reports through the real ingest."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from headend.models import AuditEntry, Programme, ProgrammeOccurrence, Zone
from headend.services import broadcasts, media, programmes
from headend.services.users import create_user

from .conftest import PASSWORD, Browser, form_token

SITE_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MON_TO_SAT = ["MO", "TU", "WE", "TH", "FR", "SA"]


@pytest.fixture
def staff(app, station):
    with app.state.session_factory() as session:
        create_user(session, username="editor", password=PASSWORD, role="editor",
                    full_name="Biên tập viên")
        create_user(session, username="leader", password=PASSWORD, role="leader",
                    full_name="Chủ tịch xã")


@pytest.fixture
def recording(app, station, tone):
    with app.state.session_factory() as session:
        item = media.ingest_media(session, settings=app.state.settings, src_path=tone,
                                  filename="ban-tin-sang.wav", title="Bản tin sáng",
                                  actor="test")
        return item.id


@pytest.fixture
def editor(browser, staff):
    assert browser.login("editor").status_code == 303
    return browser


@pytest.fixture
def leader(app, staff):
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        other = Browser(client)
        assert other.login("leader").status_code == 303
        yield other


def weekly_form(media_id: str, **fields) -> dict:
    data = {"title": "Phát thanh buổi sáng", "seg_kind": ["chime", "media", ""],
            "seg_media": ["", media_id, ""], "seg_text": ["", "", ""],
            "seg_voice": ["north", "north", "north"], "seg_chime": ["start", "start", "start"],
            "target": "zones", "zones": ["thon-dong"], "priority": "normal", "when": "weekly",
            "days": MON_TO_SAT, "at_time": "05:30", "first_day": "", "until": "",
            "start_at": "", "rrule": "", "volume": "", "action": "save"}
    data.update(fields)
    return data


def local_in(days: int, hour: int, minute: int = 0) -> datetime:
    day = datetime.now(SITE_TZ).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SITE_TZ)


def programme_id(response) -> str:
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/programmes/(p[0-9a-f]+)", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


def stored(app, pid: str) -> Programme:
    with app.state.session_factory() as session:
        programme = session.get(Programme, pid)
        session.expunge(programme)
        return programme


def create(editor, media_id, **fields):
    return editor.submit("/programmes/new", "/programmes/new", weekly_form(media_id, **fields))


# -- the editor --------------------------------------------------------------------------------

def test_an_editor_makes_a_weekly_programme_from_simple_choices(app, editor, recording):
    form = editor.get("/programmes/new")
    assert form.status_code == 200
    html = form.text
    assert "Soạn chương trình mới" in html and "Thứ Bảy" in html and "Chủ Nhật" in html
    assert "Nhạc hiệu mở đầu" in html and "Văn bản để máy đọc" in html
    assert "Bản tin sáng" in html  # the library's recordings to choose from
    pid = programme_id(create(editor, recording, until=local_in(60, 0).date().isoformat()))
    programme = stored(app, pid)
    assert programme.state == "draft"
    assert programme.rrule.startswith("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5;BYMINUTE=30;"
                                      "UNTIL=")
    start = programme.start_at.replace(tzinfo=UTC).astimezone(SITE_TZ)
    assert (start.hour, start.minute) == (5, 30) and start.weekday() < 6
    assert programme.segments == [{"chime": "start"}, {"media_id": recording}]
    assert programme.targets == {"zones": ["thon-dong"]}
    page = editor.get("/programmes/" + pid).text
    assert "Thứ Hai đến Thứ Bảy, 05:30, đến hết" in page and "Bản nháp" in page
    assert "Thôn Đông" in page and "Nhạc hiệu mở đầu" in page

    r = editor.submit("/programmes/" + pid, "/programmes/%s/submit" % pid, {})
    assert r.status_code == 303 and stored(app, pid).state == "submitted"
    assert "Chờ duyệt" in editor.get("/programmes/" + pid).text


def test_edit_keeps_the_rule_and_an_approved_programme_goes_back_for_approval(
        app, editor, leader, recording):
    pid = programme_id(create(editor, recording, action="submit"))
    leader.submit("/programmes/approvals", "/programmes/%s/approve" % pid, {"back": "approvals"})
    assert stored(app, pid).state == "approved"
    form = editor.get("/programmes/%s/edit" % pid).text
    assert "phải được duyệt lại" in form
    assert re.search(r'name="days" value="MO" checked', form)
    assert not re.search(r'name="days" value="SU" checked', form)
    rule = stored(app, pid).rrule
    # The title alone: same rule, same start, still approved (nothing that airs changed).
    r = editor.submit("/programmes/%s/edit" % pid, "/programmes/%s/edit" % pid, weekly_form(
        recording, title="Phát thanh buổi sáng (sửa tên)",
        first_day=stored(app, pid).start_at.replace(tzinfo=UTC).astimezone(SITE_TZ)
        .date().isoformat()))
    assert programme_id(r) == pid
    after = stored(app, pid)
    assert after.title.endswith("(sửa tên)") and after.rrule == rule
    assert after.state == "approved" and after.revision == 1
    # The time: back in the leader's inbox.
    r = editor.submit("/programmes/%s/edit" % pid, "/programmes/%s/edit" % pid,
                      weekly_form(recording, at_time="06:00"))
    assert programme_id(r) == pid
    after = stored(app, pid)
    assert after.state == "submitted" and after.revision == 2 and "BYHOUR=6" in after.rrule
    assert "Phát thanh buổi sáng" in leader.get("/programmes/approvals").text


def test_a_once_programme_and_a_typed_rule(app, editor, recording):
    at = local_in(3, 17, 15)
    pid = programme_id(create(editor, recording, when="once",
                              start_at=at.strftime("%Y-%m-%dT%H:%M")))
    programme = stored(app, pid)
    assert programme.rrule is None
    assert programme.start_at.replace(tzinfo=UTC) == at.astimezone(UTC)
    assert "Một lần, 17:15 %s" % at.strftime("%d/%m/%Y") in editor.get("/programmes/" + pid).text
    rule = "FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=7;BYMINUTE=0"
    pid = programme_id(create(editor, recording, when="rule", rrule=rule, title="Hằng tháng",
                              start_at=local_in(1, 7).strftime("%Y-%m-%dT%H:%M")))
    assert stored(app, pid).rrule == rule
    form = editor.get("/programmes/%s/edit" % pid).text
    assert re.search(r'name="when" value="rule" checked', form) and rule in form


def test_guard_rail_refusals_are_the_services_vietnamese_and_keep_what_was_typed(
        app, editor, leader, recording):
    typed = "Thông báo lịch tiêm chủng tại trạm y tế xã."
    # Quiet hours: 23:00 on the commune's clocks.
    r = create(editor, recording, at_time="23:00", title="Tin tối muộn",
               seg_kind=["chime", "media", "text"], seg_text=["", "", typed],
               seg_voice=["north", "north", "south"])
    assert r.status_code == 422
    assert "Tin tối muộn sẽ phát lúc 23:00" in r.text and "trong giờ yên tĩnh 22:00–05:00" in r.text
    assert 'value="Tin tối muộn"' in r.text and typed in r.text
    assert re.search(r'<option value="south" selected>Giọng miền Nam', r.text)
    assert re.search(r'name="days" value="SA" checked', r.text)
    assert 'value="23:00"' in r.text
    # An editor asks for it: saved, and the leader confirms it when approving.
    pid = programme_id(create(editor, recording, at_time="23:00", title="Tin tối muộn",
                              confirm_quiet="1", action="submit"))
    assert stored(app, pid).quiet_requested_by == "editor"
    inbox = leader.get("/programmes/approvals").text
    assert "editor xin phát trong giờ yên tĩnh" in inbox
    assert "Xác nhận cho phát trong giờ yên tĩnh" in inbox  # asked only where it is needed
    r = leader.submit("/programmes/approvals", "/programmes/%s/approve" % pid,
                      {"back": "approvals"})
    assert r.status_code == 422 and "cần xác nhận phát trong giờ yên tĩnh" in r.text
    assert stored(app, pid).state == "submitted"
    r = leader.submit("/programmes/approvals", "/programmes/%s/approve" % pid,
                      {"back": "approvals", "confirm_quiet": "1"})
    assert r.status_code == 303 and stored(app, pid).state == "approved"

    # Overlap with the approved one, same class, same receivers.
    r = create(editor, recording, at_time="23:00", title="Tin trùng giờ", confirm_quiet="1",
               action="submit")
    assert r.status_code == 409
    assert "Trùng giờ với chương trình thông thường «Tin tối muộn»" in r.text
    assert "lúc 23:00" in r.text
    assert "Tin trùng giờ" not in programmes_titles(app)

    # A volume above the village's limit.
    with app.state.session_factory() as session:
        session.get(Zone, "thon-dong").volume_limit = 60
        session.commit()
    r = create(editor, recording, at_time="07:00", title="Tin to", volume="80")
    assert r.status_code == 422
    assert "Âm lượng 80 vượt giới hạn 60 của Thôn Đông" in r.text and 'value="80"' in r.text
    # Nothing the guard rails refused was saved.
    assert "Tin to" not in programmes_titles(app)


def programmes_titles(app) -> list[str]:
    with app.state.session_factory() as session:
        return list(session.scalars(select(Programme.title)))


def test_bad_choices_are_clear_messages(editor, recording):
    r = create(editor, recording, days=[])
    assert r.status_code == 422 and "Hãy chọn ít nhất một ngày trong tuần" in r.text
    r = create(editor, recording, seg_kind=["", "", ""])
    assert r.status_code == 422 and "Chương trình cần ít nhất một phần" in r.text
    r = create(editor, recording, seg_media=["", "", ""])
    assert r.status_code == 422 and "Phần 2" in r.text
    r = create(editor, recording, when="rule", rrule="FREQ=SECONDLY",
               start_at=local_in(1, 7).strftime("%Y-%m-%dT%H:%M"))
    assert r.status_code == 422 and "Quy tắc lặp lại không hợp lệ" in r.text
    r = create(editor, recording, until=local_in(-3, 0).date().isoformat(),
               first_day=local_in(1, 0).date().isoformat())
    assert r.status_code == 422 and "Ngày kết thúc trước ngày bắt đầu" in r.text


# -- the leader --------------------------------------------------------------------------------

def test_the_leader_approves_or_rejects_with_a_comment_and_it_is_audited(
        app, editor, leader, recording):
    first = programme_id(create(editor, recording, action="submit"))
    second = programme_id(create(editor, recording, action="submit", title="Tin chiều",
                                 at_time="17:00"))
    inbox = leader.get("/programmes/approvals")
    assert inbox.status_code == 200
    assert "Duyệt chương trình" in inbox.text
    assert "Phát thanh buổi sáng" in inbox.text and "Tin chiều" in inbox.text
    assert "Thứ Hai đến Thứ Bảy, 17:00" in inbox.text
    assert "giờ yên tĩnh" not in inbox.text  # neither airs in the quiet hours
    r = leader.submit("/programmes/approvals", "/programmes/%s/reject" % second,
                      {"back": "approvals", "comment": " "})
    assert r.status_code == 422 and "Cần ghi lý do từ chối" in r.text
    r = leader.submit("/programmes/approvals", "/programmes/%s/reject" % second,
                      {"back": "approvals", "comment": "Sai giờ, đề nghị 17:30"})
    assert r.status_code == 303 and stored(app, second).state == "rejected"
    r = leader.submit("/programmes/" + first, "/programmes/%s/approve" % first,
                      {"comment": "Đồng ý"})
    assert r.status_code == 303 and r.headers["location"] == "/programmes/" + first
    assert stored(app, first).state == "approved"
    assert "Không có chương trình nào chờ duyệt" in leader.get("/programmes/approvals").text
    page = editor.get("/programmes/" + second).text
    assert "Bị từ chối" in page and "Sai giờ, đề nghị 17:30" in page and "leader" in page
    with app.state.session_factory() as session:
        actions = [(a.action, a.username) for a in session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("programme.%"))
            .order_by(AuditEntry.id))]
    assert ("programme.reject", "leader") in actions and ("programme.approve", "leader") in actions
    assert actions.count(("programme.submit", "editor")) == 2


# -- the week ----------------------------------------------------------------------------------

def test_the_week_by_day_with_state_class_and_targets(app, editor, leader, recording):
    pid = programme_id(create(editor, recording, action="submit", days=programme_days(),
                              at_time="06:15"))
    leader.submit("/programmes/approvals", "/programmes/%s/approve" % pid, {"back": "approvals"})
    programme_id(create(editor, recording, title="Tin ưu tiên", priority="priority",
                        target="all", days=programme_days(), at_time="11:00"))
    page = editor.get("/programmes")
    assert page.status_code == 200
    html = page.text
    days = re.findall(r'<section class="panel day( today)?" data-day="([0-9-]+)"', html)
    assert len(days) == 7 and days[0][0] == " today"  # today first, a phone sees it on top
    assert days[0][1] == datetime.now(SITE_TZ).date().isoformat()
    entries = re.findall(r'<li data-programme="(p[0-9a-f]+)" data-state="(\w+)"', html)
    assert entries.count((pid, "approved")) == 7 - html.count('<p class="muted">Không có')
    morning = html.split('data-programme="%s"' % pid)[1].split("</li>")[0]
    assert "06:15" in morning and "Đã duyệt" in morning and "Thôn Đông" in morning
    assert "Ưu tiên" in html and "Toàn xã" in html and "Bản nháp" in html
    assert 'href="/programmes" aria-current="page"' in html
    # The previous week (nothing then) and English.
    before = editor.get("/programmes?start=%s" % local_in(-14, 0).date().isoformat()).text
    assert html.count("06:15") > before.count("06:15")
    editor.get("/lang/en?next=/programmes")
    english = editor.get("/programmes").text
    assert 'lang="en"' in english and "Today" in english and "Approved" in english
    assert "Every day, 06:15" in english or "Monday" in english


def programme_days() -> list[str]:
    return ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


# -- one occurrence ----------------------------------------------------------------------------

def test_skip_or_move_one_occurrence_from_the_programmes_page(app, editor, leader, recording):
    pid = programme_id(create(editor, recording, action="submit", days=programme_days(),
                              at_time="08:00"))
    leader.submit("/programmes/approvals", "/programmes/%s/approve" % pid, {"back": "approvals"})
    page = editor.get("/programmes/" + pid).text
    slots = re.findall(r'<li data-slot="([^"]+)"', page)
    assert len(slots) >= 13
    r = editor.submit("/programmes/" + pid, "/programmes/%s/skip" % pid, {"slot": slots[1]})
    assert r.status_code == 303
    page = editor.get("/programmes/" + pid).text
    skipped = page.split('data-slot="%s"' % slots[1])[1].split("</li>")[0]
    assert "Bỏ lần này" in skipped
    to = datetime.fromisoformat(slots[2]).astimezone(SITE_TZ) + timedelta(hours=2)
    r = leader.submit("/programmes/" + pid, "/programmes/%s/move" % pid,
                      {"slot": slots[2], "to": to.strftime("%Y-%m-%dT%H:%M")})
    assert r.status_code == 303
    page = editor.get("/programmes/" + pid).text
    moved = page.split('data-slot="%s"' % slots[2])[1].split("</li>")[0]
    assert "10:00" in moved and "Dời từ 08:00" in moved
    assert stored(app, pid).state == "approved"  # a leader's move keeps the approval
    with app.state.session_factory() as session:
        rows = {r.state for r in session.scalars(select(ProgrammeOccurrence).where(
            ProgrammeOccurrence.programme_id == pid))}
    assert rows == {"skipped", "moved"}
    # A move into the quiet hours is refused with the service's message, on the page.
    r = editor.submit("/programmes/" + pid, "/programmes/%s/move" % pid,
                      {"slot": slots[3], "to": datetime.fromisoformat(slots[3])
                       .astimezone(SITE_TZ).strftime("%Y-%m-%dT23:30")})
    assert r.status_code == 422 and "trong giờ yên tĩnh" in r.text


# -- proof of play -----------------------------------------------------------------------------

def approved_now(session, settings, now: datetime, title: str, segments: list) -> Programme:
    """A programme on Thôn Đông airing at ``now``, made, submitted and approved by admin."""
    programme = programmes.create_programme(session, settings=settings, fields={
        "title": title, "segments": segments, "targets": {"zones": ["thon-dong"]},
        "start": now, "confirm_quiet": True}, actor="admin", now=now)
    programmes.submit_programme(session, settings=settings, programme_id=programme.id,
                                actor="admin", now=now)
    programmes.approve_programme(session, settings=settings, programme_id=programme.id,
                                 actor="admin", confirm_quiet=True, now=now)
    return programme


def seed_aired(app, station, media_id: str) -> tuple[str, str]:
    """An approved programme whose occurrence aired just now on Thôn Đông: d1 played it to
    the end, d2 was preempted after 1.5 s, d3's audio output failed. (programme, broadcast)"""
    settings = app.state.settings
    station.online("d1", "d2", "d3")
    now = datetime.now(UTC)
    with app.state.session_factory() as session:
        programme = approved_now(session, settings, now, "Tin trưa", [{"media_id": media_id}])
        # The scheduler's part (headend/services/programmes_scheduler.py), made by hand: the
        # occurrence's broadcast and the row that links them.
        broadcast = broadcasts.create_broadcast(
            session, settings=settings, publisher=app.state.publisher, media_id=media_id,
            targets=programme.targets, start_at=now, actor="programme:" + programme.id,
            now=now)
        session.add(ProgrammeOccurrence(programme_id=programme.id, slot=now, start_at=now,
                                        state="aired", broadcast_id=broadcast.id,
                                        revision=programme.approved_revision))
        session.commit()
        pid, bid = programme.id, broadcast.id
    item = station.commands("play")["d1"][0]["a"]["item"]
    station.event("d1", "started", bid=bid, item=item)
    station.event("d1", "ended", bid=bid, item=item, reason="finished", played=2000)
    station.event("d2", "started", bid=bid, item=item)
    station.event("d2", "ended", bid=bid, item=item, reason="preempted", played=1500)
    station.event("d3", "ended", bid=bid, item=item, reason="failed",
                  detail="vs1053: DREQ stuck low")
    return pid, bid


def test_past_occurrences_show_played_over_targeted_and_each_misss_reason(
        app, station, editor, recording):
    pid, bid = seed_aired(app, station, recording)
    page = editor.get("/programmes/" + pid)
    assert page.status_code == 200
    proof = page.text.split('<ul class="proofs">')[1].split("</ul>\n  {% endif %}")[0]
    assert 'data-played="1/3"' in proof and "1/3 đã phát" in proof
    d2 = re.search(r'<li data-device="d2".*?</li>', proof, re.S).group(0)
    assert "Loa D2" in d2 and "tin ưu tiên hơn chen vào" in d2 and "đã phát 0:02" in d2
    d3 = re.search(r'<li data-device="d3".*?</li>', proof, re.S).group(0)
    assert "lỗi phần cứng âm thanh" in d3 and "vs1053: DREQ stuck low" in d3
    assert 'data-device="d1"' not in proof
    assert 'href="/broadcasts/%s"' % bid in proof
    editor.get("/lang/en?next=/")
    english = editor.get("/programmes/" + pid).text
    assert "1/3 played" in english and "a higher class took over" in english


def test_an_occurrence_that_did_not_air_says_why(app, editor, recording):
    settings = app.state.settings
    now = datetime.now(UTC)
    with app.state.session_factory() as session:
        # A draft first: drafts are not plans, so the approved one may overlap it.
        draft = programmes.create_programme(session, settings=settings, fields={
            "title": "Nháp", "segments": [{"media_id": recording}], "targets": {"all": True},
            "start": now, "confirm_quiet": True}, actor="admin", now=now)
        approved = programmes.create_programme(session, settings=settings, fields={
            "title": "Tin lỡ", "segments": [{"media_id": recording}], "targets": {"all": True},
            "start": now, "confirm_quiet": True}, actor="admin", now=now)
        programmes.submit_programme(session, settings=settings, programme_id=approved.id,
                                    actor="admin", now=now)
        programmes.approve_programme(session, settings=settings, programme_id=approved.id,
                                     actor="admin", confirm_quiet=True, now=now)
        start = programmes.occurrences(session, settings=settings, programme=approved,
                                       start=now, end=now + timedelta(seconds=1))[0].start
        # What the scheduler writes when an occurrence cannot air.
        session.add(AuditEntry(username="programme:" + approved.id,
                               action="programme.air-failed", target=approved.id,
                               detail={"start": start.isoformat(), "code": "tts-failed",
                                       "reason": "the text could not be read aloud"}))
        session.commit()
        ids = approved.id, draft.id
    page = editor.get("/programmes/" + ids[0]).text
    assert "Không phát: máy chủ không tạo được lượt phát" in page
    assert "the text could not be read aloud" in page.split("data-not-aired")[1]
    assert "Không phát: chưa được duyệt" in editor.get("/programmes/" + ids[1]).text


# -- who may do what ---------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["viewer", "operator", "technician"])
def test_readers_see_the_calendar_but_cannot_draft_approve_or_change(
        app, browser, staff, recording, role):
    pid = submitted_programme(app, recording)
    assert browser.login(role).status_code == 303
    assert browser.get("/programmes").status_code == 200
    page = browser.get("/programmes/" + pid)
    assert page.status_code == 200 and "data-approve" not in page.text
    assert "data-skip" not in page.text and "/edit" not in page.text
    for path in ("/programmes/new", "/programmes/%s/edit" % pid, "/programmes/approvals"):
        r = browser.get(path)
        assert r.status_code == 403 and "không có quyền" in r.text, path
    token = form_token(page.text)
    for action in ("approve", "reject", "submit", "skip", "move", "delete", "edit"):
        r = browser.client.post("/programmes/%s/%s" % (pid, action),
                                data={"csrf": token, "comment": "x"}, follow_redirects=False)
        assert r.status_code == 403, action
    assert stored(app, pid).state == "submitted"


def submitted_programme(app, media_id: str) -> str:
    settings = app.state.settings
    with app.state.session_factory() as session:
        programme = programmes.create_programme(session, settings=settings, fields={
            "title": "Tin sáng", "segments": [{"media_id": media_id}],
            "targets": {"all": True}, "start": local_in(2, 9)}, actor="admin")
        programmes.submit_programme(session, settings=settings, programme_id=programme.id,
                                    actor="admin")
        return programme.id


def test_an_editor_cannot_approve_and_a_leader_cannot_draft(app, editor, leader, recording):
    pid = programme_id(create(editor, recording, action="submit"))
    page = editor.get("/programmes/" + pid).text
    assert "data-approve" not in page
    assert editor.get("/programmes/approvals").status_code == 403
    r = editor.submit("/programmes/" + pid, "/programmes/%s/approve" % pid, {})
    assert r.status_code == 403 and stored(app, pid).state == "submitted"
    assert leader.get("/programmes/new").status_code == 403
    assert leader.submit("/programmes", "/programmes/new",
                         weekly_form(recording)).status_code == 403
    assert "data-approve" in leader.get("/programmes/" + pid).text


def test_programme_forms_need_their_token(app, editor, recording):
    r = editor.client.post("/programmes/new", data=dict(weekly_form(recording), csrf="forged"),
                           follow_redirects=False)
    assert r.status_code == 403 and "Biểu mẫu đã hết hạn" in r.text
    assert programmes_titles(app) == []


# -- .ics import -------------------------------------------------------------------------------

def import_ics(editor, data: bytes, media_id: str, **fields):
    form = {"media_id": media_id, "target": "zones", "zones": ["thon-tay"]}
    form.update(fields)
    return editor.submit("/programmes/import", "/programmes/import", form,
                         files={"file": ("lich.ics", data, "text/calendar")})


def test_the_stations_own_calendar_reimports_to_the_same_occurrences(
        app, editor, leader, recording):
    pid = programme_id(create(editor, recording, action="submit"))
    leader.submit("/programmes/approvals", "/programmes/%s/approve" % pid, {"back": "approvals"})
    slots = re.findall(r'<li data-slot="([^"]+)"', editor.get("/programmes/" + pid).text)
    editor.submit("/programmes/" + pid, "/programmes/%s/skip" % pid, {"slot": slots[1]})
    to = datetime.fromisoformat(slots[2]).astimezone(SITE_TZ) + timedelta(hours=3)
    editor.submit("/programmes/" + pid, "/programmes/%s/move" % pid,
                  {"slot": slots[2], "to": to.strftime("%Y-%m-%dT%H:%M")})
    ics = editor.get("/api/v1/calendar.ics?state=approved&state=submitted").content
    assert b"RECURRENCE-ID" in ics and b"EXDATE" in ics
    form = editor.get("/programmes/import")
    assert form.status_code == 200 and "Nhập lịch .ics" in form.text
    # Onto the other village (the same one would overlap the original, as it should).
    r = import_ics(editor, ics, recording)
    assert r.status_code == 200, r.text
    assert "Đã tạo 1 bản nháp" in r.text and "data-refused" not in r.text
    made = re.search(r'<li data-programme="(p[0-9a-f]+)">', r.text).group(1)
    original, copy = stored(app, pid), stored(app, made)
    assert copy.state == "draft" and copy.title == original.title
    assert copy.targets == {"zones": ["thon-tay"]} and copy.segments == [{"media_id": recording}]
    assert starts_of(app, made) == starts_of(app, pid) and len(starts_of(app, pid)) >= 20
    assert to.astimezone(UTC) in starts_of(app, made)


def starts_of(app, pid: str) -> list[datetime]:
    settings = app.state.settings
    now = datetime.now(UTC)
    with app.state.session_factory() as session:
        programme = session.get(Programme, pid)
        return [o.start for o in programmes.occurrences(
            session, settings=settings, programme=programme, start=now,
            end=now + timedelta(days=28), include_skipped=False)]


def test_an_ics_import_refuses_what_it_cannot_map_and_keeps_the_rest(app, editor, recording):
    day = local_in(5, 0).strftime("%Y%m%d")
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//VI\r\n"
           "BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Họp dân thôn Tây\r\nDTSTART:%sT071500\r\n"
           "END:VEVENT\r\n"
           "BEGIN:VEVENT\r\nUID:2\r\nSUMMARY:Ngày hội\r\nDTSTART;VALUE=DATE:%s\r\nEND:VEVENT\r\n"
           "BEGIN:VEVENT\r\nUID:3\r\nSUMMARY:Thêm ngày\r\nDTSTART:%sT090000Z\r\n"
           "RRULE:FREQ=DAILY;COUNT=3\r\nRDATE:%sT100000Z\r\nEND:VEVENT\r\n"
           "BEGIN:VEVENT\r\nUID:4\r\nSUMMARY:Mỗi giây\r\nDTSTART:%sT090000Z\r\n"
           "RRULE:FREQ=SECONDLY\r\nEND:VEVENT\r\n"
           "END:VCALENDAR\r\n" % (day, day, day, day, day)).encode()
    r = import_ics(editor, ics, recording)
    assert r.status_code == 200, r.text
    assert "Đã tạo 1 bản nháp" in r.text and "3 sự kiện không nhập được" in r.text
    assert "«Ngày hội»: sự kiện cả ngày không có giờ phát" in r.text
    assert "«Thêm ngày»: chưa hỗ trợ ngày phát thêm (RDATE)" in r.text
    assert "«Mỗi giây»: Quy tắc lặp lại không hợp lệ" in r.text
    made = stored(app, re.search(r'<li data-programme="(p[0-9a-f]+)">', r.text).group(1))
    local = made.start_at.replace(tzinfo=UTC).astimezone(SITE_TZ)
    assert made.title == "Họp dân thôn Tây" and (local.hour, local.minute) == (7, 15)  # floating
    r = import_ics(editor, b"not a calendar", recording)
    assert r.status_code == 422 and "Tệp không phải là lịch iCalendar (.ics)" in r.text
    r = import_ics(editor, ics, "")
    assert r.status_code == 422 and "Hãy chọn bản tin làm nội dung" in r.text
    editor.get("/lang/en?next=/")
    r = import_ics(editor, ics, recording)
    assert "«Ngày hội»: an all-day event has no air time" in r.text


def test_only_editors_import(browser, staff):
    browser.login("leader")
    assert browser.get("/programmes/import").status_code == 403


def test_the_import_api_answers_created_and_refused_for_editors_only(app, browser, staff,
                                                                      recording):
    day = local_in(5, 0).strftime("%Y%m%d")
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//VI\r\n"
           "BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Tin sáng\r\nDTSTART;TZID=Asia/Ho_Chi_Minh:"
           "%sT061500\r\nRRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR\r\nCATEGORIES:priority\r\n"
           "END:VEVENT\r\n"
           "BEGIN:VEVENT\r\nUID:2\r\nSUMMARY:Cả ngày\r\nDTSTART;VALUE=DATE:%s\r\nEND:VEVENT\r\n"
           "END:VCALENDAR\r\n" % (day, day)).encode()

    def post(role):
        token = browser.client.post("/api/v1/auth/token", data={
            "username": role, "password": PASSWORD}).json()["access_token"]
        return browser.client.post(
            "/api/v1/calendar/import", headers={"Authorization": "Bearer " + token},
            data={"media_id": recording, "targets": '{"zones": ["thon-dong"]}'},
            files={"file": ("lich.ics", ics, "text/calendar")})

    for role in ("viewer", "operator", "technician", "leader"):
        assert post(role).status_code == 403, role
    r = post("editor")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["title"] for p in body["created"]] == ["Tin sáng"]
    made = body["created"][0]
    assert made["state"] == "draft" and made["priority"] == "priority"
    assert made["rrule"] == "FREQ=WEEKLY;BYDAY=MO,WE,FR"
    assert made["targets"] == {"zones": ["thon-dong"]}
    assert [r["summary"] for r in body["refused"]] == ["«Cả ngày»"]
    assert "sự kiện cả ngày" in body["refused"][0]["message_vi"]


def test_an_admin_does_what_editors_and_leaders_do_and_english_is_one_link_away(
        app, browser, staff, recording):
    assert browser.login("admin").status_code == 303
    pid = programme_id(create(browser, recording, action="submit"))
    assert browser.get("/programmes/approvals").status_code == 200
    r = browser.submit("/programmes/approvals", "/programmes/%s/approve" % pid,
                       {"back": "approvals"})
    assert r.status_code == 303 and stored(app, pid).state == "approved"
    browser.get("/lang/en?next=/programmes/new")
    form = browser.get("/programmes/new").text
    assert 'lang="en"' in form and "New programme" in form and "Every week" in form
    assert "Monday" in form and "Opening chime" in form and "Save and submit" in form
    page = browser.get("/programmes/" + pid).text
    assert "Monday to Saturday, 05:30" in page and "Approved" in page


def test_conflicts_are_checked_before_saving(app, editor, leader, recording):
    pid = programme_id(create(editor, recording, action="submit", at_time="06:00"))
    leader.submit("/programmes/approvals", "/programmes/%s/approve" % pid, {"back": "approvals"})
    r = create(editor, recording, action="check", title="Tin chen giờ", at_time="06:00")
    assert r.status_code == 409
    assert "Trùng giờ với chương trình thông thường «Phát thanh buổi sáng»" in r.text
    assert 'value="Tin chen giờ"' in r.text
    r = create(editor, recording, action="check", title="Tin chen giờ", at_time="07:00")
    assert r.status_code == 200 and "data-check-ok" in r.text and "Không trùng giờ" in r.text
    assert 'value="07:00"' in r.text
    assert "Tin chen giờ" not in programmes_titles(app)  # a check saves nothing
    # Checking an edit of the approved one against itself is no conflict, and changes nothing.
    r = editor.submit("/programmes/%s/edit" % pid, "/programmes/%s/edit" % pid,
                      weekly_form(recording, action="check", at_time="06:30"))
    assert r.status_code == 200 and "data-check-ok" in r.text
    after = stored(app, pid)
    assert after.state == "approved" and "BYHOUR=6;BYMINUTE=0" in after.rrule


# -- a relay segment (tiếp sóng) ---------------------------------------------------------------

RADIO = "http://radio.example/vov1.mp3"


def test_an_editor_adds_a_relay_in_minutes_and_the_page_describes_it(app, editor, recording):
    assert "Tiếp sóng" in editor.get("/programmes/new").text
    relay_form = dict(seg_kind=["chime", "relay", ""], seg_relay_url=["", RADIO, ""],
                      seg_relay_minutes=["", "30", ""])
    pid = programme_id(create(editor, recording, **relay_form))
    assert stored(app, pid).segments == [{"chime": "start"},
                                         {"relay": {"url": RADIO, "seconds": 1800}}]
    page = editor.get("/programmes/" + pid).text
    assert "Tiếp sóng trong 30:00" in page and RADIO in page
    edit = editor.get("/programmes/%s/edit" % pid).text
    assert 'value="%s"' % RADIO in edit and 'name="seg_relay_minutes" value="30"' in edit
    # Part of a minute is kept in seconds; a bad address is the service's words, as typed.
    r = editor.submit("/programmes/new", "/programmes/new", weekly_form(
        recording, title="Nửa phút", at_time="06:30", seg_kind=["relay"],
        seg_relay_url=[RADIO], seg_relay_minutes=["0,5"]))
    assert stored(app, programme_id(r)).segments == [{"relay": {"url": RADIO, "seconds": 30}}]
    r = editor.submit("/programmes/new", "/programmes/new", weekly_form(
        recording, title="Sai", at_time="07:30", seg_kind=["relay"],
        seg_relay_url=["rtsp://radio.example/x"], seg_relay_minutes=["10"]))
    assert r.status_code == 422
    assert "Chỉ tiếp sóng được từ địa chỉ http://" in r.text and "rtsp://radio.example/x" in r.text
    editor.get("/lang/en?next=/")
    assert "Relay for 30:00" in editor.get("/programmes/" + pid).text


def test_a_relays_proof_of_play_is_its_live_sessions_receivers(app, station, editor):
    from headend.live.session import ENDED, LiveSession, LiveTarget
    from headend.live.store import save

    settings = app.state.settings
    now = datetime.now(UTC)
    with app.state.session_factory() as session:
        programme = approved_now(session, settings, now, "Tiếp sóng VOV",
                                 [{"relay": {"url": RADIO, "minutes": 1}}])
        # What the scheduler's relay left (headend/services/programme_relays.py).
        save(session, LiveSession(
            id="live-0123456789", targets=programme.targets, created_at=now,
            created_by="programme:" + programme.id, until_ms=None, jitter_ms=50, url=RADIO,
            receivers=[LiveTarget("d1", "mp3", True, "sim"), LiveTarget("d2", "mp3", False,
                                                                      "sim")],
            state=ENDED, reason="until", sent={"d1": "c1"}))
        session.add(ProgrammeOccurrence(programme_id=programme.id, slot=now, start_at=now,
                                        state="aired", live_id="live-0123456789",
                                        revision=programme.approved_revision))
        session.commit()
        pid = programme.id
    station.online("d1")
    station.event("d1", "started", bid="live-0123456789")
    station.event("d1", "ended", bid="live-0123456789", reason="finished", played=60000)
    page = editor.get("/programmes/" + pid).text
    proof = page.split('<ul class="proofs">')[1]
    assert 'data-live="live-0123456789"' in proof and 'data-relay-played="1/2"' in proof
    assert "1/2 đã phát" in proof and "đã đến giờ kết thúc" in proof
    d2 = re.search(r'<li data-device="d2".*?</li>', proof, re.S).group(0)
    assert "Mất kết nối" in d2
