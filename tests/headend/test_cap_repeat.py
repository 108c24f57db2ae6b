"""What a CAP alert airs is aired again every 15 minutes (the site's ``repeat_minutes``) until
it expires or is cancelled; an Update replaces it without a double play and goes on being
repeated in its place. Real route, real SQLite file, real speech engine and ffmpeg; the
repetition is driven by hand with the time as an argument, as the scheduler's pass calls it."""

from datetime import UTC, datetime, timedelta

import pytest
import test_cap_api
from test_cap_api import NOW, alert, cap_time, plays, post, reference, stops

from headend.cap.policy import SitePolicy
from headend.errors import Invalid
from headend.models import Broadcast, CapAlert, Receiver
from headend.services import broadcasts
from headend.services.cap_repeat import airing_times, repeat_due, window_end
from headend.services.programmes_scheduler import ProgrammeScheduler

village = test_cap_api.village
source_key = test_cap_api.source_key
T0 = datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


@pytest.fixture
def database_url():
    return ""  # the SQLite file only


# -- times -----------------------------------------------------------------------------------

def test_the_airing_times_are_every_interval_until_the_expiry():
    assert airing_times(T0, T0 + timedelta(minutes=40), QUARTER) == [
        T0, T0 + QUARTER, T0 + 2 * QUARTER]
    assert airing_times(T0, T0 + timedelta(minutes=45), QUARTER) == [
        T0, T0 + QUARTER, T0 + 2 * QUARTER]  # the one at the expiry itself does not air
    assert airing_times(T0, T0 + timedelta(hours=6), None) == [T0]
    # Each airing is current until the next, the last until the expiry.
    assert window_end(T0, T0 + timedelta(minutes=40), QUARTER) == T0 + QUARTER
    assert window_end(T0 + 2 * QUARTER, T0 + timedelta(minutes=40), QUARTER) == (
        T0 + timedelta(minutes=40))
    assert window_end(T0, T0 + timedelta(hours=1), None) == T0 + timedelta(hours=1)


def test_the_interval_is_the_sites_policy():
    assert SitePolicy.from_dict({}).repeat_interval == QUARTER
    assert SitePolicy.from_dict({"repeat_minutes": 30}).repeat_interval == 2 * QUARTER
    assert SitePolicy.from_dict({"repeat_minutes": 0}).repeat_interval is None
    for bad in (-1, 1441, "15", True, 7.5):
        with pytest.raises(Invalid) as refused:
            SitePolicy.from_dict({"repeat_minutes": bad})
        assert "repeat_minutes" in refused.value.message


# -- on the air ------------------------------------------------------------------------------

def repeat(village, session, at):
    session.expire_all()
    return repeat_due(session, settings=village.app.state.settings,
                      publisher=village.publisher, now=at)


def current(session, identifier):
    session.expire_all()
    row = session.query(CapAlert).filter_by(identifier=identifier).one()
    return row, session.get(Broadcast, row.broadcast_id)


SECOND = timedelta(seconds=1)


def test_an_alert_airs_again_every_quarter_hour_until_it_expires(village, source_key, session):
    expires = NOW + timedelta(minutes=40)
    first = post(village.client, alert(expires=cap_time(expires)), source_key).json()
    row, b1 = current(session, "KTTV-NB-0001")
    assert b1.id == first["broadcast_id"] and b1.valid_until == b1.created_at + QUARTER
    assert repeat(village, session, b1.valid_until - SECOND) == []  # still current

    (b2_id,) = repeat(village, session, b1.valid_until + SECOND)
    row, b2 = current(session, "KTTV-NB-0001")
    assert row.broadcast_id == b2_id
    assert (b2.media_id, b2.targets, b2.priority) == (b1.media_id, b1.targets, "emergency")
    assert b2.valid_until == b2.created_at + QUARTER
    assert plays(village, "a1") == plays(village, "a2") == [b1.id, b2_id]
    assert plays(village, "b1") == []  # another village
    assert repeat(village, session, b1.valid_until + SECOND) == []  # once per airing

    (b3_id,) = repeat(village, session, b2.valid_until + SECOND)
    _, b3 = current(session, "KTTV-NB-0001")
    assert b3.valid_until == expires  # the last one ends at the expiry
    assert repeat(village, session, expires + SECOND) == []
    assert plays(village, "a1") == [b1.id, b2_id, b3_id]
    # a3 was offline throughout: back during the third airing, it is sent that one only,
    # not a backlog of the three.
    receiver = session.get(Receiver, "a3")
    commands, _ = broadcasts.commands_for_returning(
        session, settings=village.app.state.settings, receiver=receiver,
        now=b2.valid_until + 2 * SECOND)
    assert [(c.kind, c.args["bid"]) for c in commands] == [("play", b3_id)]
    session.rollback()
    events = [e["event"] for e in village.client.get(
        "/api/v1/emergency/ledger", headers=village.headers).json()]
    assert events.count("cap.repeat") == 2


def test_an_update_replaces_the_repetition_without_a_double_play(village, source_key,
                                                                 session):
    post(village.client, alert(), source_key)
    _, b1 = current(session, "KTTV-NB-0001")
    (b2_id,) = repeat(village, session, b1.valid_until + SECOND)
    update = post(village.client, alert("KTTV-NB-0002", msg_type="Update",
                                        references=reference(),
                                        headline="Cập nhật: lũ quét lan rộng"), source_key).json()
    bu = update["broadcast_id"]
    # The current airing stops before the update plays; the update then repeats alone.
    assert [(c["k"], c["a"]["bid"]) for c in village.commands_to("a1")] == [
        ("play", b1.id), ("play", b2_id), ("stop", b2_id), ("play", bu)]
    _, b_update = current(session, "KTTV-NB-0002")
    (again,) = repeat(village, session, b_update.valid_until + SECOND)
    assert session.get(Broadcast, again).media_id == b_update.media_id != b1.media_id
    assert plays(village, "a1") == [b1.id, b2_id, bu, again]


def test_a_cancel_stops_the_repetition(village, source_key, session):
    post(village.client, alert(), source_key)
    _, b1 = current(session, "KTTV-NB-0001")
    (b2_id,) = repeat(village, session, b1.valid_until + SECOND)
    post(village.client, alert("KTTV-NB-0003", msg_type="Cancel", references=reference()),
         source_key)
    assert stops(village, "a1") == [b2_id]  # the current airing
    assert repeat(village, session, b1.valid_until + 3 * QUARTER) == []
    assert plays(village, "a1") == [b1.id, b2_id]


def test_a_policy_without_repetition_airs_once_until_the_expiry(village, source_key, session):
    village.app.state.settings.cap_policy = {"repeat_minutes": 0}
    post(village.client, alert(), source_key)
    _, b1 = current(session, "KTTV-NB-0001")
    assert b1.valid_until == NOW + timedelta(hours=6)
    assert repeat(village, session, b1.created_at + 2 * QUARTER) == []


def test_the_programme_schedulers_pass_repeats_the_alerts(village, source_key, session):
    scheduler = ProgrammeScheduler(settings=village.app.state.settings,
                                   session_factory=village.app.state.session_factory,
                                   publisher=village.publisher)
    assert [job.__name__ for job in scheduler.jobs()] == ["run_once", "repeat_cap_alerts",
                                                         "run_selftests"]
    post(village.client, alert(), source_key)
    assert scheduler.repeat_cap_alerts() == []  # the first airing is current for 15 minutes
