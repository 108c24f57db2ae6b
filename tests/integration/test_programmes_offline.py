"""Issue 10 acceptance 2, end to end: delivered ahead, played offline.

An approved programme of three occurrences a minute apart reaches its village's receivers as
their schedule window (a signed ``schedule`` command) with its media, long before the
broadcasts are made (``programme_lead_s`` is 5 s here, so the window is the only way the cut
receiver learns of them). A leader moves the second occurrence while both are online: the
change reaches them before the first airs. Then one receiver's link is cut until after the
last; it plays all three occurrences on time from its own clock (its recording sink shows them), the other plays each
once although it also got the broadcast's ``play`` (same broadcast id), and once the cut one
is back its queued reports make the head-end show every occurrence played there too, at the
time it really played. The head-end as its own process, real Mosquitto, simulated receivers
running the real firmware (CPython: the Station reads their cores)."""

from datetime import UTC, datetime, timedelta

import pytest
from test_programmes_acceptance import _login, approved, programme_station

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WITHIN_S = 1.0


def _ms(dt):
    return int(dt.timestamp() * 1000)


async def test_a_receiver_cut_off_before_air_time_plays_its_window_and_reports_when_back(
        tmp_path, mosquitto_broker, monkeypatch):
    monkeypatch.setenv("LOAXA_PROGRAMME_CHECK_S", "1")
    monkeypatch.setenv("LOAXA_PROGRAMME_LEAD_S", "5")
    monkeypatch.setenv("LOAXA_QUIET_HOURS_END", "22:00")  # no quiet hours: any hour of the day
    async with programme_station(tmp_path, mosquitto_broker) as st:
        editor = await _login(st, "bientap")
        leader = await _login(st, "lanhdao")
        village, other = st.zones["thon-1"], st.zones["thon-2"]
        cut, online = village
        recording = await st.upload("ban-tin.wav", 1.5, 440)
        start = (datetime.now(UTC) + timedelta(seconds=50)).replace(microsecond=0)
        pid = await approved(st, editor, leader, {
            "title": "Bản tin trưa", "targets": {"zones": ["thon-1"]},
            "segments": [{"media_id": recording}, {"chime": "end"}],
            "start": start.isoformat(), "rrule": "FREQ=MINUTELY;INTERVAL=1;COUNT=3"})

        def holds(device, times):
            """The receiver holds plays at exactly these times, their media in its cache."""
            shell = st.fleet[device].receiver
            items = [it for it in shell.core.schedule if it.at is not None]
            return sorted(it.at for it in items) == sorted(_ms(t) for t in times) and all(
                shell.cache.has(it.sha) for it in items)

        planned = [start + timedelta(minutes=i) for i in range(3)]
        await st.until(lambda: all(holds(d, planned) for d in village), 30,
                       "the window and its media on every receiver of thon-1")
        assert not any(st.fleet[d].receiver.core.schedule for d in other)

        # A change while they are online reaches them before the first occurrence airs.
        moved = planned[1] + timedelta(seconds=15)
        slot = planned[1].isoformat().replace("+00:00", "Z")
        r = await st.http.post("/api/v1/programmes/%s/occurrences/%s/move" % (pid, slot),
                               headers=leader, json={"to": moved.isoformat()})
        assert r.status_code == 204, r.text
        airs = [planned[0], moved, planned[2]]
        await st.until(lambda: all(holds(d, airs) for d in village), 20,
                       "the moved occurrence in every window")
        assert datetime.now(UTC) < airs[0] - timedelta(seconds=5), "too slow to test offline"

        st.fleet.cut(cut)
        await st.until(lambda: _offline(st, cut), 20, "the cut receiver offline at the head-end")

        async def occurrences():
            got = await st.get("/api/v1/programmes/%s/occurrences" % pid,
                               **{"from": (start - timedelta(minutes=1)).isoformat(),
                                  "to": (start + timedelta(minutes=4)).isoformat()})
            return got if len(got) == 3 and all(o["broadcast_id"] for o in got) else None

        aired = await st.until(occurrences, (airs[-1] - datetime.now(UTC)).total_seconds() + 20,
                               "the three occurrences aired")
        bids = [o["broadcast_id"] for o in aired]
        wait_s = (airs[-1] - datetime.now(UTC)).total_seconds() + 30
        await st.until(lambda: all(st.played(d, b) and st.played(d, b)[-1].finished
                                   for d in village for b in bids), wait_s,
                       "the three occurrences played on both receivers of thon-1")
        for bid, at in zip(bids, airs, strict=True):
            for device in village:
                # Once: the window's item and the broadcast's play are one broadcast id.
                (play,) = st.played(device, bid)
                started = datetime.fromtimestamp(play.started_true, UTC)
                assert abs((started - at).total_seconds()) < WITHIN_S, (device, bid)
        assert not any(st.fleet[d].sink.playbacks for d in other)

        def states(got, device):
            return [next(d["state"] for d in o["devices"] if d["id"] == device) for o in got]

        got = await st.get("/api/v1/programmes/%s/occurrences" % pid,
                           **{"from": start.isoformat(),
                              "to": (start + timedelta(minutes=4)).isoformat()})
        assert "played" not in states(got, cut)  # nothing of it reached the head-end yet

        st.fleet.restore(cut)

        async def all_played():
            got = await st.get("/api/v1/programmes/%s/occurrences" % pid,
                               **{"from": start.isoformat(),
                                  "to": (start + timedelta(minutes=4)).isoformat()})
            return all(states(got, d) == ["played"] * 3 for d in village)

        await st.until(all_played, 40, "the head-end to show the three occurrences played on both")
        for bid, at in zip(bids, airs, strict=True):
            detail = await st.get("/api/v1/broadcasts/" + bid)
            (row,) = [d for d in detail["devices"] if d["id"] == cut]
            reported = datetime.fromisoformat(row["started_at"].replace("Z", "+00:00"))
            if reported.tzinfo is None:
                reported = reported.replace(tzinfo=UTC)
            assert abs((reported - at).total_seconds()) < WITHIN_S  # when it really played
        assert not st.fleet.crashed()


async def _offline(st, device):
    devices = {d["id"]: d for d in await st.get("/api/v1/devices")}
    return not devices[device]["online"]
