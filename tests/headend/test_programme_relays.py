"""A programme's relay segment (tiếp sóng) through the API: what is accepted and how it is
refused, the guard rails counting the relay's window, and the scheduler handing the relay of
an approved occurrence over with its window and class (no broker, no loop: the relays are
recorded at the hand-over; tests/integration/test_programme_relay.py airs one for real).
A real SQLite file."""

import asyncio
import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from test_programmes import (  # noqa: F401 - fixtures
    any_hour,
    approve,
    as_editor,
    as_leader,
    body,
    create,
    database_url,
    local,
    occurrences,
    programme_broadcasts,
    staff,
)

from audio import tones
from headend.live.planning import stream_commands
from headend.live.session import ENDED, LiveSession, LiveTarget, new_stream
from headend.live.store import save
from headend.models import ProgrammeOccurrence
from headend.services.programme_relays import ProgrammeRelays
from headend.services.programmes_scheduler import air_due
from protocol import messages

pytestmark = pytest.mark.slow  # make test-slow (every case builds media with ffmpeg)

URL = "http://radio.example/vov1.mp3"


def relay(minutes=None, url=URL, **more):
    out = {"url": url}
    if minutes is not None:
        out["minutes"] = minutes
    out.update(more)
    return {"relay": out}


class Handed:
    """Stands in for ProgrammeRelays: what the scheduler hands over."""

    def __init__(self):
        self.plans = []

    def schedule(self, plan):
        self.plans.append(plan)
        return True


class LiveSessions:
    """Stands in for the live service at its door: sessions made and ended, by reason."""

    def __init__(self):
        self.sessions = {}
        self.ended = []

    async def create(self, *, live_id, **_):
        self.sessions[live_id] = SimpleNamespace(id=live_id, over=False)
        return self.sessions[live_id]

    async def end(self, live_id, reason):
        self.sessions[live_id].over = True
        self.ended.append((live_id, reason))


@pytest.fixture
def loop_thread():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def air(app, relays):
    with app.state.session_factory() as session:
        return air_due(session, settings=app.state.settings, publisher=app.state.publisher,
                       relays=relays)


def refused(client, headers, segments, code):
    r = client.post("/api/v1/programmes", headers=headers,
                    json=body("unused", segments=segments))
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["code"] == code, answer
    return answer


def test_a_relay_segment_is_kept_in_seconds_and_shown_as_sent(client, commune, as_editor):  # noqa: F811
    made = create(client, as_editor, body("unused", segments=[{"chime": "start"},
                                                              relay(30)]))
    assert made["segments"] == [{"chime": "start"},
                                {"relay": {"url": URL, "seconds": 1800}}]
    alone = create(client, as_editor, body("unused", segments=[relay(seconds=45)],
                                           start=local(1, 15).isoformat()))
    assert alone["segments"] == [{"relay": {"url": URL, "seconds": 45}}]
    r = client.patch("/api/v1/programmes/%s" % alone["id"], headers=as_editor,
                     json={"segments": [relay(2, url=" https://radio.example/live.m3u8 ")]})
    assert r.status_code == 200, r.text
    assert r.json()["segments"] == [{"relay": {"url": "https://radio.example/live.m3u8",
                                               "seconds": 120}}]
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "relay" in schema["ProgrammeCreate"]["properties"]["segments"]["description"]
    assert "relay" in schema["OccurrencePublic"]["properties"]


def test_a_bad_relay_segment_is_refused_in_both_languages(client, commune, as_editor):  # noqa: F811
    answer = refused(client, as_editor, [relay(10), {"chime": "end"}], "relay-not-last")
    assert "last segment" in answer["detail"] and "phần cuối" in answer["message_vi"]
    answer = refused(client, as_editor, [{"chime": "start"}, relay(10, url="rtsp://x/y")],
                     "bad-url-scheme")
    assert answer["detail"].startswith("segment 2:")
    assert answer["message_vi"].startswith("Phần 2:") and "http://" in answer["message_vi"]
    refused(client, as_editor, [relay(10, url="http://")], "bad-url")
    refused(client, as_editor, [{"relay": URL}], "bad-relay")
    for bad in (relay(), relay(0), relay(241), relay("5"), relay(1.5), relay(True),
                relay(seconds=4), relay(5, seconds=300)):
        answer = refused(client, as_editor, [bad], "bad-relay")
        assert "tiếp sóng" in answer["message_vi"], answer


def test_the_guard_rails_count_the_relays_window(client, commune, as_editor):  # noqa: F811
    at = local(3, 6)
    first = create(client, as_editor, body("unused", title="Tiếp sóng VOV",
                                           start=at.isoformat(),
                                           segments=[{"chime": "start"}, relay(30)]))
    client.post("/api/v1/programmes/%s/submit" % first["id"], headers=as_editor)
    r = client.post("/api/v1/programmes", headers=as_editor, json=body(
        "unused", segments=[{"chime": "start"}], start=(at + timedelta(minutes=25)).isoformat()))
    assert r.status_code == 409 and r.json()["code"] == "programme-overlap", r.text
    assert "Tiếp sóng VOV" in r.json()["message_vi"]
    # After its window (the chime, the pause and 30 minutes), or in the other class: allowed.
    create(client, as_editor, body("unused", segments=[{"chime": "start"}],
                                   start=(at + timedelta(minutes=31)).isoformat()))
    create(client, as_editor, body("unused", segments=[{"chime": "start"}], priority="priority",
                                   start=(at + timedelta(minutes=25)).isoformat()))
    # A relay from 21:50 for 20 minutes reaches into the quiet hours (22:00).
    r = client.post("/api/v1/programmes", headers=as_editor, json=body(
        "unused", segments=[relay(20)], start=local(4, 21, 50).isoformat()))
    assert r.status_code == 422 and r.json()["code"] == "quiet-hours", r.text
    create(client, as_editor, body("unused", segments=[relay(9)],
                                   start=local(4, 21, 50).isoformat()))


def test_the_scheduler_airs_the_recorded_part_then_hands_over_the_relay_in_its_class(
        client, app, commune, as_editor, as_leader, any_hour):  # noqa: F811
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    made = create(client, as_editor, body("unused", start=start.isoformat(), priority="priority",
                                          segments=[{"chime": "start"}, relay(seconds=40)]))
    approve(client, made, as_editor, as_leader)
    handed = Handed()
    assert len(air(app, handed)) == 1
    [broadcast] = programme_broadcasts(app, made)
    assert broadcast.start_at == start and broadcast.priority == "priority"
    [plan] = handed.plans
    # From the chime's end and the pause after it, for 40 s, on the programme's targets.
    assert plan.start == start + timedelta(
        milliseconds=broadcast.media.duration_ms + int(tones.PAUSE_S * 1000))
    assert plan.end == plan.start + timedelta(seconds=40)
    assert (plan.url, plan.targets, plan.prio) == (URL, {"zones": ["thon-1"]},
                                                   messages.PRIO_PRIORITY)
    assert plan.actor == "programme:%s" % made["id"]
    # Its stream goes out in that class, not live's: a normal programme does not cut it.
    live = LiveSession(id=plan.live_id, targets=plan.targets, created_at=start, created_by=None,
                       until_ms=None, jitter_ms=50, prio=plan.prio,
                       receivers=[LiveTarget("a1", "mp3", True, "sim")])
    live.streams["mp3"] = new_stream(live.id, "mp3", 16000)
    [command] = stream_commands(live)
    assert command.args["prio"] == messages.PRIO_PRIORITY
    # A second pass makes no second broadcast; the hand-over is the relays' to deduplicate.
    assert air(app, handed) == [] and len(handed.plans) == 2
    assert handed.plans[1] == plan


def test_a_programme_that_is_only_a_relay_has_no_broadcast_and_shows_the_relays_outcome(
        client, app, commune, as_editor, as_leader, any_hour):  # noqa: F811
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    made = create(client, as_editor, body("unused", start=start.isoformat(),
                                          segments=[relay(seconds=20)]))
    approve(client, made, as_editor, as_leader)
    handed = Handed()
    assert air(app, handed) == [] and programme_broadcasts(app, made) == []
    [plan] = handed.plans
    assert (plan.start, plan.end, plan.prio) == (start, start + timedelta(seconds=20),
                                                 messages.PRIO_NORMAL)
    window = (start - timedelta(minutes=1), start + timedelta(minutes=1))
    [before] = occurrences(client, as_editor, made, *window)
    assert (before["state"], before["live_id"], before["relay"]) == ("planned", None, None)
    # The relay ran (as ProgrammeRelays records it) and ended at its window's end.
    with app.state.session_factory() as session:
        live = LiveSession(id=plan.live_id, targets=plan.targets, created_at=start,
                           created_by=plan.actor, until_ms=None, jitter_ms=50,
                           receivers=[LiveTarget("a1", "mp3", True, "sim"),
                                      LiveTarget("a2", "mp3", False, "sim")],
                           url=URL, state=ENDED, reason="until", sent={"a1": "c1"})
        save(session, live)
        row = session.query(ProgrammeOccurrence).filter_by(programme_id=made["id"]).one()
        row.live_id = plan.live_id
        session.commit()
    [after] = occurrences(client, as_editor, made, *window)
    assert after["state"] == "played" and after["live_id"] == plan.live_id
    assert after["relay"]["reason"] == "until"
    assert [(d["id"], d["state"]) for d in after["relay"]["devices"]] == [
        ("a1", "sent"), ("a2", "offline")]


def test_a_relay_at_its_windows_end_ends_itself_and_one_whose_programme_changed_is_ended(
        client, app, commune, as_editor, as_leader, any_hour, loop_thread):  # noqa: F811
    """The scheduler's pass that falls just after a relay's window ended must not call it
    "programme-changed" (the session ends itself, reason "until"); an edit does end it."""
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    made = create(client, as_editor, body("unused", start=start.isoformat(),
                                          segments=[relay(seconds=20)]))
    approve(client, made, as_editor, as_leader)
    handed = Handed()
    air(app, handed)
    [plan] = handed.plans
    live = LiveSessions()
    relays = ProgrammeRelays(loop=loop_thread, live=live, settings=app.state.settings,
                             session_factory=app.state.session_factory)
    now = datetime.now(UTC)
    short = dataclasses.replace(plan, start=now, end=now + timedelta(milliseconds=300))
    assert relays.schedule(short)
    assert relays._pending[short.live_id].result(timeout=10) == short.live_id
    time.sleep(0.4)  # its window is over; the live service has not ended it yet
    assert relays.end_changed() == [] and live.ended == []
    live.sessions[short.live_id].over = True  # as the live service ends it at "until"

    later = dataclasses.replace(plan, live_id=plan.live_id + "-b", start=now,
                                end=now + timedelta(minutes=1))
    assert relays.schedule(later)
    assert relays._pending[later.live_id].result(timeout=10) == later.live_id
    assert relays.end_changed() == []
    r = client.patch("/api/v1/programmes/%s" % made["id"], headers=as_editor,
                     json={"segments": [relay(seconds=30)]})
    assert r.status_code == 200 and r.json()["state"] == "submitted", r.text
    assert relays.end_changed() == [later.live_id]
    assert live.ended == [(later.live_id, "programme-changed")]
