"""Programmes through the API as an editor and a leader use them: recurrence in the commune's
zone, approval, guard rails, and the scheduler turning approved occurrences into broadcasts
(no broker: commands are recorded at the publisher boundary). A real SQLite file."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import PASSWORD, login

from headend.models import AuditEntry, Broadcast, Delivery, Zone
from headend.services.programmes_scheduler import air_due
from headend.services.users import create_user

SITE = ZoneInfo("Asia/Ho_Chi_Minh")
# About two minutes (every case builds a programme's media with ffmpeg and the TTS).
pytestmark = pytest.mark.slow  # make test-slow


@pytest.fixture
def database_url():
    return ""  # the SQLite file: the programme rules do not depend on the database


@pytest.fixture
def staff(session, users):
    create_user(session, username="editor", password=PASSWORD, role="editor")
    create_user(session, username="leader", password=PASSWORD, role="leader")


@pytest.fixture
def as_editor(client, staff):
    return login(client, "editor")


@pytest.fixture
def as_leader(client, staff):
    return login(client, "leader")


@pytest.fixture
def any_hour(app):
    """No quiet hours, for tests that air a programme minutes from now, whatever the hour."""
    settings = app.state.settings
    settings.quiet_hours_end = settings.quiet_hours_start


def local(days: int, hour: int, minute: int = 0) -> datetime:
    """``days`` from today on the commune's clocks, at hour:minute there."""
    today = datetime.now(SITE).date() + timedelta(days=days)
    return datetime(today.year, today.month, today.day, hour, minute, tzinfo=SITE)


def next_monday() -> datetime:
    today = datetime.now(SITE).date()
    days = 7 - today.weekday() + 7  # the Monday after next, well ahead
    return local(days, 5, 30)


def body(media_id, **fields):
    out = {"title": "Bản tin sáng", "segments": [{"chime": "start"}, {"media_id": media_id}],
           "targets": {"zones": ["thon-1"]}, "start": local(1, 10).isoformat()}
    out.update(fields)
    return out


def create(client, headers, data):
    r = client.post("/api/v1/programmes", json=data, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def approve(client, programme, as_editor, as_leader, **approval):
    r = client.post("/api/v1/programmes/%s/submit" % programme["id"], headers=as_editor)
    assert r.status_code == 200, r.text
    r = client.post("/api/v1/programmes/%s/approve" % programme["id"], json=approval or None,
                    headers=as_leader)
    assert r.status_code == 200, r.text
    return r.json()


def occurrences(client, headers, programme, start, end):
    r = client.get("/api/v1/programmes/%s/occurrences" % programme["id"], headers=headers,
                   params={"from": start.isoformat(), "to": end.isoformat()})
    assert r.status_code == 200, r.text
    return r.json()


def utc(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def air(app):
    with app.state.session_factory() as session:
        return air_due(session, settings=app.state.settings, publisher=app.state.publisher)


def programme_broadcasts(app, programme):
    with app.state.session_factory() as session:
        return session.query(Broadcast).filter(
            Broadcast.created_by == "programme:%s" % programme["id"]
        ).order_by(Broadcast.start_at).all()


# -- recurrence -------------------------------------------------------------------------------

def test_weekly_rule_is_read_on_the_communes_clocks_and_stored_in_utc(client, commune,
                                                                       as_editor):
    media = commune.upload()
    monday = next_monday()
    made = create(client, as_editor, body(
        media["id"], start=monday.isoformat(),
        rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5;BYMINUTE=30"))
    assert made["state"] == "draft" and made["revision"] == 1
    assert utc(made["start"]) == monday.astimezone(UTC)
    got = occurrences(client, as_editor, made, monday - timedelta(hours=1),
                      monday + timedelta(days=8))
    starts = [utc(o["start"]) for o in got]
    # 05:30 in Asia/Ho_Chi_Minh is 22:30 UTC the day before; no Sunday.
    assert all((s.hour, s.minute) == (22, 30) for s in starts)
    assert starts[0] == datetime(monday.year, monday.month, monday.day, tzinfo=UTC) \
        - timedelta(hours=1, minutes=30)
    local_days = [s.astimezone(SITE).strftime("%a") for s in starts]
    assert local_days == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Mon"]
    assert {o["state"] for o in got} == {"unapproved"} and all(o["devices"] == [] for o in got)


def test_exdate_and_a_skipped_occurrence_leave_the_rest_untouched(client, commune, as_editor):
    media = commune.upload()
    monday = next_monday()
    tuesday = monday + timedelta(days=1)
    made = create(client, as_editor, body(
        media["id"], start=monday.isoformat(), rrule="FREQ=DAILY;COUNT=4",
        exdates=[tuesday.isoformat()]))
    wednesday = (monday + timedelta(days=2)).astimezone(UTC)
    r = client.post("/api/v1/programmes/%s/occurrences/%s/skip"
                    % (made["id"], wednesday.isoformat()), headers=as_editor)
    assert r.status_code == 204, r.text
    got = occurrences(client, as_editor, made, monday - timedelta(hours=1),
                      monday + timedelta(days=7))
    assert [(utc(o["start"]), o["state"]) for o in got] == [
        (monday.astimezone(UTC), "unapproved"), (wednesday, "skipped"),
        ((monday + timedelta(days=3)).astimezone(UTC), "unapproved")]
    # Not an occurrence at all: a clear 404.
    r = client.post("/api/v1/programmes/%s/occurrences/%s/skip"
                    % (made["id"], tuesday.isoformat()), headers=as_editor)
    assert r.status_code == 404 and r.json()["code"] == "unknown-occurrence"


def test_a_rule_that_is_not_one_rrule_is_refused_clearly(client, commune, as_editor):
    media = commune.upload()
    for rule in ("FREQ=SOMETIMES", "FREQ=SECONDLY", "DTSTART:20260101T000000Z\nFREQ=DAILY"):
        r = client.post("/api/v1/programmes", json=body(media["id"], rrule=rule),
                        headers=as_editor)
        assert r.status_code == 422 and r.json()["code"] == "bad-rrule", r.text
        assert "Quy tắc lặp lại" in r.json()["message_vi"]


# -- roles ------------------------------------------------------------------------------------

ROLES = ("editor", "leader", "operator", "technician", "viewer", "admin")
# endpoint -> the roles let through (the others get 403)
MAY = {
    "create": {"editor", "admin"},
    "list": set(ROLES),
    "get": set(ROLES),
    "patch": {"editor", "admin"},
    "submit": {"editor", "admin"},
    "approve": {"leader", "admin"},
    "reject": {"leader", "admin"},
    "occurrences": set(ROLES),
    "skip": {"editor", "leader", "admin"},
    "move": {"editor", "leader", "admin"},
    "delete": {"editor", "admin"},
}


def test_every_endpoint_lets_through_exactly_the_roles_it_should(client, commune, staff):
    media = commune.upload()
    admin = login(client, "admin")
    for index, role in enumerate(ROLES):
        headers = login(client, role)
        # A fresh programme per role, in the state each step needs, made by the admin.
        made = {}
        for step in ("patch", "submit", "approve", "reject", "skip", "move", "delete"):
            made[step] = create(client, admin, body(
                media["id"], start=local(2 + len(made), 7 + index).isoformat(),
                title="%s %s" % (role, step)))
        for step in ("approve", "reject"):
            r = client.post("/api/v1/programmes/%s/submit" % made[step]["id"], headers=admin)
            assert r.status_code == 200, r.text
        slot = utc(made["skip"]["start"]).isoformat()
        calls = {
            "create": ("post", "/api/v1/programmes", body(media["id"], start=local(
                30 + index, 9).isoformat(), title="new by %s" % role)),
            "list": ("get", "/api/v1/programmes", None),
            "get": ("get", "/api/v1/programmes/%s" % made["patch"]["id"], None),
            "patch": ("patch", "/api/v1/programmes/%s" % made["patch"]["id"],
                      {"title": "renamed"}),
            "submit": ("post", "/api/v1/programmes/%s/submit" % made["submit"]["id"], None),
            "approve": ("post", "/api/v1/programmes/%s/approve" % made["approve"]["id"], None),
            "reject": ("post", "/api/v1/programmes/%s/reject" % made["reject"]["id"],
                       {"comment": "không rõ"}),
            "occurrences": ("get", "/api/v1/programmes/%s/occurrences" % made["patch"]["id"],
                            None),
            "skip": ("post", "/api/v1/programmes/%s/occurrences/%s/skip"
                     % (made["skip"]["id"], slot), None),
            "move": ("post", "/api/v1/programmes/%s/occurrences/%s/move"
                     % (made["move"]["id"], utc(made["move"]["start"]).isoformat()),
                     {"to": local(40 + index, 9).isoformat()}),
            "delete": ("delete", "/api/v1/programmes/%s" % made["delete"]["id"], None),
        }
        for name, (method, url, payload) in calls.items():
            kwargs = {"headers": headers}
            if payload is not None:
                kwargs["json"] = payload
            r = getattr(client, method)(url, **kwargs)
            if role in MAY[name]:
                assert r.status_code < 300, (role, name, r.status_code, r.text)
            else:
                assert r.status_code == 403, (role, name, r.status_code, r.text)


def test_every_approval_step_is_in_the_audit_log(client, app, commune, as_editor, as_leader):
    media = commune.upload()
    made = create(client, as_editor, body(media["id"]))
    approve(client, made, as_editor, as_leader, comment="đồng ý")
    r = client.patch("/api/v1/programmes/%s" % made["id"], headers=as_editor,
                     json={"segments": [{"media_id": media["id"]}]})
    assert r.status_code == 200
    r = client.post("/api/v1/programmes/%s/reject" % made["id"], headers=as_leader,
                    json={"comment": "thiếu nhạc hiệu"})
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    assert r.json()["review_comment"] == "thiếu nhạc hiệu" and r.json()["reviewed_by"] == "leader"
    with app.state.session_factory() as session:
        steps = [(e.username, e.action) for e in session.query(AuditEntry).filter(
            AuditEntry.target == made["id"]).order_by(AuditEntry.id)]
    assert steps == [("editor", "programme.create"), ("editor", "programme.submit"),
                     ("leader", "programme.approve"), ("editor", "programme.update"),
                     ("leader", "programme.reject")]


def test_an_illegal_step_is_a_named_conflict(client, commune, as_editor, as_leader):
    media = commune.upload()
    made = create(client, as_editor, body(media["id"]))
    r = client.post("/api/v1/programmes/%s/approve" % made["id"], headers=as_leader)
    assert r.status_code == 409 and r.json()["code"] == "illegal-transition"
    assert "bản nháp" in r.json()["message_vi"]
    r = client.post("/api/v1/programmes/%s/reject" % made["id"], headers=as_leader,
                    json={"comment": ""})
    assert r.status_code == 422 and r.json()["code"] == "missing-comment"


# -- approval gates airing --------------------------------------------------------------------

def test_drafts_and_rejected_programmes_never_air(client, app, commune, as_editor, as_leader, any_hour):
    media = commune.upload()
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    draft = create(client, as_editor, body(media["id"], start=soon, title="nháp"))
    rejected = create(client, as_editor, body(media["id"], start=soon, title="bị từ chối",
                                              targets={"zones": ["thon-2"]}))
    client.post("/api/v1/programmes/%s/submit" % rejected["id"], headers=as_editor)
    r = client.post("/api/v1/programmes/%s/reject" % rejected["id"], headers=as_leader,
                    json={"comment": "sai nội dung"})
    assert r.status_code == 200
    assert air(app) == []
    assert programme_broadcasts(app, draft) == programme_broadcasts(app, rejected) == []
    assert app.state.publisher.sent == []


def test_editing_an_approved_programme_sends_it_back_and_withdraws_its_broadcast(
        client, app, commune, as_editor, as_leader, any_hour):
    media = commune.upload()
    start = datetime.now(UTC) + timedelta(minutes=5)
    made = create(client, as_editor, body(media["id"], start=start.isoformat()))
    approve(client, made, as_editor, as_leader)
    [first] = air(app)
    # A title is not what airs: the approval stays.
    r = client.patch("/api/v1/programmes/%s" % made["id"], headers=as_editor,
                     json={"title": "Bản tin sáng (sửa tên)"})
    assert r.json()["state"] == "approved" and r.json()["revision"] == 1
    r = client.patch("/api/v1/programmes/%s" % made["id"], headers=as_editor,
                     json={"targets": {"zones": ["thon-1", "thon-2"]}})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "submitted" and r.json()["revision"] == 2
    assert r.json()["approved_revision"] is None
    with app.state.session_factory() as session:
        assert session.get(Broadcast, first).cancelled_at is not None
    assert air(app) == []  # waits for the leader
    r = client.post("/api/v1/programmes/%s/approve" % made["id"], headers=as_leader)
    assert r.json()["state"] == "approved" and r.json()["approved_revision"] == 2
    [second] = air(app)
    assert second != first
    with app.state.session_factory() as session:
        devices = {d.device_id for d in session.query(Delivery).filter(
            Delivery.broadcast_id == second)}
    assert devices == {"a1", "a2", "a3", "b1", "b2"}


# -- guard rails ------------------------------------------------------------------------------

def test_two_programmes_of_one_class_may_not_overlap_on_a_receiver(client, commune, as_editor):
    media = commune.upload(seconds=3.0)
    at = local(3, 6)
    first = create(client, as_editor, body(media["id"], title="Thời sự", start=at.isoformat(),
                                           rrule="FREQ=DAILY;COUNT=5"))
    client.post("/api/v1/programmes/%s/submit" % first["id"], headers=as_editor)
    # Two days later, a second into the first's air time, on a receiver of thon-1.
    clash = at + timedelta(days=2, seconds=1)
    r = client.post("/api/v1/programmes", headers=as_editor, json=body(
        media["id"], title="Nông nghiệp", start=clash.isoformat(),
        targets={"devices": ["a2", "b1"]}))
    assert r.status_code == 409, r.text
    answer = r.json()
    assert answer["code"] == "programme-overlap"
    when = (at + timedelta(days=2, seconds=1)).strftime("%H:%M %d/%m/%Y")
    assert "Thời sự" in answer["detail"] and when in answer["detail"]
    assert "Trùng giờ" in answer["message_vi"] and "Thời sự" in answer["message_vi"]
    assert when in answer["message_vi"] and "1 cụm loa" in answer["message_vi"]
    # Another village, or the other class, or just after it ends: allowed.
    for other in ({"targets": {"zones": ["thon-2"]}}, {"priority": "priority"},
                  {"start": (at + timedelta(days=2, minutes=1)).isoformat()}):
        create(client, as_editor, body(media["id"], title="ok", **dict(
            {"start": clash.isoformat()}, **other)))


def test_a_normal_programme_in_the_quiet_hours_needs_a_leaders_confirmation(
        client, commune, as_editor, as_leader):
    media = commune.upload()
    night = local(2, 23, 15)
    r = client.post("/api/v1/programmes", headers=as_editor,
                    json=body(media["id"], start=night.isoformat()))
    assert r.status_code == 422 and r.json()["code"] == "quiet-hours"
    assert "22:00–05:00" in r.json()["detail"] and "23:15" in r.json()["detail"]
    assert "giờ yên tĩnh" in r.json()["message_vi"] and "23:15" in r.json()["message_vi"]
    # A priority programme may air then; a normal one ending at 05:00 too.
    create(client, as_editor, body(media["id"], start=night.isoformat(), priority="priority"))
    # The editor asks; the leader's approval must confirm it.
    asked = create(client, as_editor, body(media["id"], start=night.isoformat(),
                                           confirm_quiet=True))
    assert asked["quiet_requested_by"] == "editor" and asked["quiet_confirmed_by"] is None
    client.post("/api/v1/programmes/%s/submit" % asked["id"], headers=as_editor)
    r = client.post("/api/v1/programmes/%s/approve" % asked["id"], headers=as_leader)
    assert r.status_code == 422 and r.json()["code"] == "quiet-hours-unconfirmed"
    r = client.post("/api/v1/programmes/%s/approve" % asked["id"], headers=as_leader,
                    json={"confirm_quiet": True})
    assert r.status_code == 200 and r.json()["quiet_confirmed_by"] == "leader"
    # Moved out of the night by the editor: the confirmation does not carry over.
    r = client.patch("/api/v1/programmes/%s" % asked["id"], headers=as_editor,
                     json={"start": local(2, 23, 30).isoformat()})
    assert r.status_code == 422 and r.json()["code"] == "quiet-hours"


def test_a_volume_above_a_zones_limit_is_refused(client, app, commune, as_editor):
    media = commune.upload()
    with app.state.session_factory() as session:
        session.get(Zone, "thon-2").volume_limit = 60
        session.commit()
    r = client.post("/api/v1/programmes", headers=as_editor,
                    json=body(media["id"], volume=80, targets={"all": True}))
    assert r.status_code == 422 and r.json()["code"] == "volume-above-limit"
    assert "60" in r.json()["detail"] and "thon-2" in r.json()["detail"]
    assert "vượt giới hạn" in r.json()["message_vi"]
    assert create(client, as_editor, body(media["id"], volume=60, targets={"all": True}))
    assert create(client, as_editor, body(media["id"], volume=95, title="thôn 1",
                                          start=local(1, 11).isoformat()))


# -- airing -----------------------------------------------------------------------------------

def test_the_scheduler_airs_an_approved_occurrence_once_with_its_targets_and_time(
        client, app, commune, as_editor, as_leader, any_hour):
    media = commune.upload()
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    made = create(client, as_editor, body(media["id"], start=start.isoformat()))
    approve(client, made, as_editor, as_leader)
    first = air(app)
    again = air(app)  # a second pass, as after a restart: nothing more
    assert len(first) == 1 and again == []
    [broadcast] = programme_broadcasts(app, made)
    assert broadcast.start_at == start and broadcast.targets == {"zones": ["thon-1"]}
    assert broadcast.priority == "normal"
    # The joined media: a chime, a pause and the 1.5 s recording.
    assert 2800 < broadcast.media.duration_ms < 3600
    got = occurrences(client, as_editor, made, start - timedelta(minutes=1),
                      start + timedelta(minutes=1))
    assert len(got) == 1 and got[0]["state"] == "scheduled"
    assert [(d["id"], d["state"]) for d in got[0]["devices"]] == [
        ("a1", "offline"), ("a2", "offline"), ("a3", "offline")]


def test_a_minutely_rule_of_three_makes_three_broadcasts_of_one_media(
        client, app, commune, as_editor, as_leader, any_hour):
    media = commune.upload()
    start = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0) \
        + timedelta(minutes=1)
    made = create(client, as_editor, body(
        media["id"], start=start.isoformat(), rrule="FREQ=MINUTELY;INTERVAL=1;COUNT=3",
        segments=[{"media_id": media["id"]}, {"text": "Kính thưa bà con", "voice": "north"},
                  {"chime": "end"}]))
    approve(client, made, as_editor, as_leader)
    assert len(air(app)) == 3 and air(app) == []
    made_broadcasts = programme_broadcasts(app, made)
    assert [b.start_at for b in made_broadcasts] == [start + timedelta(minutes=i)
                                                     for i in range(3)]
    assert len({b.media_id for b in made_broadcasts}) == 1  # built once


# -- calendar export --------------------------------------------------------------------------

def test_the_ics_export_parses_and_expands_to_the_same_occurrences(
        client, commune, as_editor, as_leader):
    from dateutil.rrule import rrulestr
    from icalendar import Calendar

    media = commune.upload()
    monday = next_monday()
    made = create(client, as_editor, body(
        media["id"], title="Thời sự sáng", start=monday.isoformat(),
        rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5;BYMINUTE=30;COUNT=12",
        exdates=[(monday + timedelta(days=1)).isoformat()]))
    approve(client, made, as_editor, as_leader)
    wednesday = (monday + timedelta(days=2)).astimezone(UTC).isoformat()
    thursday = (monday + timedelta(days=3)).astimezone(UTC).isoformat()
    assert client.post("/api/v1/programmes/%s/occurrences/%s/skip" % (made["id"], wednesday),
                       headers=as_leader).status_code == 204
    assert client.post("/api/v1/programmes/%s/occurrences/%s/move" % (made["id"], thursday),
                       headers=as_leader,
                       json={"to": (monday + timedelta(days=3, hours=1)).isoformat()}
                       ).status_code == 204
    r = client.get("/api/v1/calendar.ics", headers=login(client, "viewer"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    events = Calendar.from_ical(r.content).walk("VEVENT")
    main = next(e for e in events if "RECURRENCE-ID" not in e)
    [moved] = [e for e in events if "RECURRENCE-ID" in e]
    assert str(main["summary"]) == "Thời sự sáng"
    assert main.decoded("dtstart") == monday and "Asia/Ho_Chi_Minh" in r.text
    # Expanded by bare dateutil from what the file says: the same occurrences as the API's.
    slots = set(rrulestr(main["rrule"].to_ical().decode(), dtstart=main.decoded("dtstart")))
    slots -= {x.dt for x in main["exdate"].dts} if not isinstance(main["exdate"], list) \
        else {x.dt for group in main["exdate"] for x in group.dts}
    slots.discard(moved.decoded("recurrence-id"))
    slots.add(moved.decoded("dtstart"))
    from_file = sorted(s.astimezone(UTC) for s in slots)
    from_api = [utc(o["start"]) for o in occurrences(
        client, as_editor, made, monday - timedelta(hours=1), monday + timedelta(days=30))
        if o["state"] != "skipped"]
    assert from_file == from_api and len(from_api) == 10


def test_a_broadcast_whose_link_was_lost_in_a_crash_is_adopted_not_made_twice(
        client, app, commune, as_editor, as_leader, any_hour):
    from headend.models import ProgrammeOccurrence

    media = commune.upload()
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    made = create(client, as_editor, body(media["id"], start=start.isoformat()))
    approve(client, made, as_editor, as_leader)
    [first] = air(app)
    with app.state.session_factory() as session:  # as if it died before linking it
        session.query(ProgrammeOccurrence).delete()
        session.commit()
    assert air(app) == [first]
    assert len(programme_broadcasts(app, made)) == 1 and air(app) == []


def test_deleting_a_programme_cancels_its_coming_broadcast(client, app, commune, as_editor,
                                                          as_leader, any_hour):
    media = commune.upload()
    start = datetime.now(UTC) + timedelta(minutes=5)
    made = create(client, as_editor, body(media["id"], start=start.isoformat()))
    approve(client, made, as_editor, as_leader)
    [bid] = air(app)
    assert client.delete("/api/v1/programmes/%s" % made["id"], headers=as_editor
                         ).status_code == 204
    assert client.get("/api/v1/programmes/%s" % made["id"], headers=as_editor
                      ).status_code == 404
    with app.state.session_factory() as session:
        assert session.get(Broadcast, bid).state == "cancelled"


def test_users_of_the_new_roles_can_be_made_through_the_api(client, as_admin):
    for role in ("editor", "leader"):
        r = client.post("/api/v1/users", headers=as_admin, json={
            "username": "nguoi-" + role, "password": PASSWORD, "role": role})
        assert r.status_code == 201 and r.json()["role"] == role, r.text
    assert client.get("/api/v1/devices", headers=login(client, "nguoi-leader")
                      ).status_code == 200


def test_a_moved_occurrence_goes_with_its_slot_when_the_rule_changes(client, commune,
                                                                     as_editor):
    media = commune.upload()
    monday = next_monday()
    made = create(client, as_editor, body(media["id"], start=monday.isoformat(),
                                          rrule="FREQ=DAILY;COUNT=3"))
    tuesday = (monday + timedelta(days=1)).astimezone(UTC)
    later = tuesday + timedelta(hours=2)
    r = client.post("/api/v1/programmes/%s/occurrences/%s/move" % (made["id"],
                                                                   tuesday.isoformat()),
                    headers=as_editor, json={"to": later.isoformat()})
    assert r.status_code == 204, r.text
    window = (monday - timedelta(hours=1), monday + timedelta(days=5))
    got = occurrences(client, as_editor, made, *window)
    assert [(utc(o["start"]), o["moved"]) for o in got] == [
        (monday.astimezone(UTC), False), (later, True),
        ((monday + timedelta(days=2)).astimezone(UTC), False)]
    # Half an hour later every day: Tuesday's old slot is gone, and its move with it.
    r = client.patch("/api/v1/programmes/%s" % made["id"], headers=as_editor,
                     json={"start": (monday + timedelta(minutes=30)).isoformat()})
    assert r.status_code == 200, r.text
    got = occurrences(client, as_editor, made, *window)
    assert [utc(o["start"]) for o in got] == [
        (monday + timedelta(days=d, minutes=30)).astimezone(UTC) for d in range(3)]


def test_every_role_has_its_name_on_the_pages():
    """The pages' header shows the user's role by the catalog: a role without an entry
    would break every page for its users."""
    from headend.i18n.catalog import MESSAGES
    from headend.models import ROLES as ALL_ROLES

    assert MESSAGES["role.editor"][0] == "biên tập" and MESSAGES["role.leader"][0] == "lãnh đạo"
    assert all("role." + role in MESSAGES for role in ALL_ROLES)


def test_an_occurrence_that_cannot_air_is_audited_once_and_tried_again(
        client, app, commune, as_editor, as_leader, any_hour):
    media = commune.upload()
    start = datetime.now(UTC) + timedelta(minutes=5)
    made = create(client, as_editor, body(media["id"], start=start.isoformat(),
                                          targets={"zones": ["thon-2"]}))
    approve(client, made, as_editor, as_leader)
    with app.state.session_factory() as session:  # its village's receivers were removed
        from headend.models import Receiver

        for receiver in session.query(Receiver).filter(Receiver.zone_id == "thon-2"):
            receiver.zone_id = "thon-1"
        session.commit()
    assert air(app) == [] and air(app) == []
    with app.state.session_factory() as session:
        failures = session.query(AuditEntry).filter(
            AuditEntry.action == "programme.air-failed").all()
    assert len(failures) == 1 and failures[0].detail["code"] == "no-receivers"
