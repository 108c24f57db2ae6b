"""Issue 10 (first part), end to end: a programme of three segments (a recording, a text read
aloud, a chime) with ``FREQ=MINUTELY;INTERVAL=1;COUNT=3``, drafted by an editor and approved
by a leader through the HTTP API, plays three times on every receiver of its village and on no
other: the head-end as its own process (its scheduler thread makes the broadcasts), real
Mosquitto, simulated receivers running the real firmware."""

from datetime import UTC, datetime, timedelta

import pytest
from test_headend_acceptance import PASSWORD, Station

from headend.db import make_engine, make_session_factory
from headend.services.users import create_user
from headend.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_three_segment_programme_plays_three_times_on_its_village_only(
        tmp_path, mosquitto_broker, monkeypatch):
    # The head-end process reads these: a scheduler pass every second, and no quiet hours
    # (the test runs at any hour of the commune's day).
    monkeypatch.setenv("LOAXA_PROGRAMME_CHECK_S", "1")
    monkeypatch.setenv("LOAXA_QUIET_HOURS_END", "22:00")
    async with programme_station(tmp_path, mosquitto_broker) as st:
        editor = await _login(st, "bientap")
        leader = await _login(st, "lanhdao")
        village, other = st.zones["thon-1"], st.zones["thon-2"]
        recording = await st.upload("ban-tin.wav", 1.5, 440)
        # The first occurrence at a whole minute at least 30 s ahead (time to build it).
        start = (datetime.now(UTC) + timedelta(seconds=90)).replace(second=0, microsecond=0)
        pid = await approved(st, editor, leader, {
            "title": "Bản tin trưa", "targets": {"zones": ["thon-1"]},
            "segments": [{"media_id": recording},
                         {"text": "Kính thưa bà con.", "voice": "north"},
                         {"chime": "end"}],
            "start": start.isoformat(), "rrule": "FREQ=MINUTELY;INTERVAL=1;COUNT=3"})

        async def aired():
            made = await st.get("/api/v1/broadcasts")
            return sorted((b for b in made if b["created_by"] == "programme:" + pid),
                          key=lambda b: b["start_at"])

        broadcasts = await st.until(lambda: _three(aired()), 60,
                                    "the scheduler to make three broadcasts")
        bids = [b["id"] for b in broadcasts]
        wait_s = (start - datetime.now(UTC)).total_seconds() + 120 + 30
        await st.until(lambda: all(st.played(d, bid) and st.played(d, bid)[0].finished
                                   for d in village for bid in bids), wait_s,
                       "three plays on every receiver of thon-1")
        assert not any(st.fleet[d].sink.playbacks for d in other)
        for i, bid in enumerate(bids):
            for device in village:
                (play,) = st.played(device, bid)
                started = datetime.fromtimestamp(play.started_true, UTC)
                # Within a second of the occurrence (the broadcast test holds it to 50 ms).
                assert abs((started - (start + timedelta(minutes=i))).total_seconds()) < 1.0

        async def all_played():
            got = await st.get("/api/v1/programmes/%s/occurrences" % pid,
                               **{"from": start.isoformat(),
                                  "to": (start + timedelta(minutes=3)).isoformat()})
            return len(got) == 3 and all(
                sorted((d["id"], d["state"]) for d in o["devices"])
                == [(d, "played") for d in sorted(village)] for o in got)

        await st.until(all_played, 20, "each occurrence shown played on each receiver")


def programme_station(tmp_path, broker, station=None):
    """A Station of thon-1 (2 receivers) and thon-2 (1) (or ``station``) with an editor
    ("bientap") and a leader ("lanhdao")."""
    station = station or Station(tmp_path, broker, {"thon-1": 2, "thon-2": 1})
    engine = make_engine(Settings(data_dir=tmp_path / "headend").resolved_database_url)
    with make_session_factory(engine)() as session:
        create_user(session, username="bientap", password=PASSWORD, role="editor")
        create_user(session, username="lanhdao", password=PASSWORD, role="leader")
    engine.dispose()
    return station


async def approved(st, editor, leader, programme):
    """Create ``programme`` as the editor, submit it, approve it as the leader: its id."""
    r = await st.http.post("/api/v1/programmes", headers=editor, json=programme)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = await st.http.post("/api/v1/programmes/%s/submit" % pid, headers=editor)
    assert r.status_code == 200, r.text
    r = await st.http.post("/api/v1/programmes/%s/approve" % pid, headers=leader)
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    return pid


async def _three(coroutine):
    made = await coroutine
    return made if len(made) == 3 else None


async def _login(st, username):
    r = await st.http.post("/api/v1/auth/token",
                           data={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["access_token"]}
