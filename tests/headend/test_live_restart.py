"""Live sessions across a head-end restart, and a receiver that reboots during one, on a real
SQLite (and PostgreSQL) database with the head-end's own signing; commands are kept by the
recording publisher, receivers' reports go through the real ingest.

What an operator relies on: a restart never leaves a session "live" that is not (a
microphone's socket died with the old process: the session is ended "headend-restarted", its
receivers are sent ``stop`` and its play-log rows closed with that reason), the list of
sessions survives it; a pole that reboots in the middle of a session gets the stream again.
"""

import pytest
from fastapi.testclient import TestClient
from polling import wait_for
from test_live_api import audio_url, go_live, stops_sent, streams_sent, tone_chunks

from headend.app import create_app
from headend.models import LiveSessionRecord, PlayLog

VILLAGE = ("a1", "a2", "a3")


@pytest.fixture
def online(commune):
    """a1, a2 (MP3) and a3 (ADPCM) of thon-1 and b1 of thon-2 online."""
    commune.report(commune.birth("a1"), commune.birth("a2"),
                   commune.birth("a3", codecs=("adpcm",)), commune.birth("b1"))
    return commune


def test_a_restart_ends_a_microphone_session_with_stops_and_its_rows_closed(
        client, app, settings, online):
    live = go_live(client, online.headers)
    bid = live["id"]
    with client.websocket_connect(audio_url(live, online.headers)) as ws:
        for chunk in tone_chunks(0.5):
            ws.send_bytes(chunk)
        wait_for(lambda: all(streams_sent(online, d) for d in VILLAGE), 10, "the streams")
        online.report(online.event("a1", "started", bid=bid, sid=bid + "-mp3"))
        with app.state.session_factory() as db:
            row = db.get(LiveSessionRecord, bid)
            assert (row.state, row.url, sorted(row.sent)) == ("live", None, list(VILLAGE))

        # The head-end restarts (a new process on the same database) while the old one's
        # socket still looks open: its session is found live and ended.
        restarted = create_app(settings)
        try:
            with TestClient(restarted) as again:
                online.app = restarted  # the commands the new head-end sent
                listed = {s["id"]: s for s in again.get("/api/v1/live",
                                                        headers=online.headers).json()}
                assert listed[bid]["state"] == "ended"
                assert listed[bid]["reason"] == "headend-restarted"
                assert listed[bid]["source"] == {"microphone": True}
                assert listed[bid]["resumes"] == 0  # a microphone is never resumed
                for device in VILLAGE:
                    assert len(stops_sent(online, device, bid)) == 1, device
                assert not online.commands_to("b1")
                detail = again.get("/api/v1/live/" + bid, headers=online.headers).json()
                assert detail["receivers"] == 3 and detail["ended_at"]
                states = {d["id"]: (d["state"], d["reason"]) for d in detail["devices"]}
                assert states["a1"] == ("interrupted", "headend-restarted")
                with restarted.state.session_factory() as db:
                    (play,) = db.query(PlayLog).filter_by(broadcast_id=bid, device_id="a1")
                    assert (play.outcome, play.reason) == ("interrupted", "headend-restarted")
                    assert play.ended_at is not None
                    assert db.get(LiveSessionRecord, bid).state == "ended"
        finally:
            online.app = app
            restarted.state.engine.dispose()
        ws.close()


def test_ended_sessions_are_listed_after_a_restart(client, app, settings, online):
    live = go_live(client, online.headers, targets={"devices": ["a1"]})
    r = client.delete("/api/v1/live/" + live["id"], headers=online.headers)
    assert r.status_code == 200, r.text
    restarted = create_app(settings)
    try:
        with TestClient(restarted) as again:
            (shown,) = again.get("/api/v1/live", headers=online.headers).json()
            assert (shown["id"], shown["state"], shown["reason"]) == (live["id"], "ended",
                                                                       "stopped")
            assert shown["targets"] == {"devices": ["a1"]} and shown["receivers"] == 1
    finally:
        restarted.state.engine.dispose()


def test_a_receiver_that_reboots_during_a_session_is_sent_the_stream_again(client, online):
    live = go_live(client, online.headers, targets={"devices": ["a1", "a2"]})
    with client.websocket_connect(audio_url(live, online.headers)) as ws:
        for chunk in tone_chunks(0.3):
            ws.send_bytes(chunk)
        wait_for(lambda: streams_sent(online, "a1") and streams_sent(online, "a2"), 10,
                 "the streams")
        first = streams_sent(online, "a1")[0]
        # a1 loses power and comes back: a birth of its next boot, while the session is live.
        online.report(online.birth("a1", boot=2))
        for chunk in tone_chunks(2.0):
            ws.send_bytes(chunk)
            if len(streams_sent(online, "a1")) > 1:
                break
        again = wait_for(lambda: len(streams_sent(online, "a1")) > 1
                         and streams_sent(online, "a1")[1], 10, "the stream sent again")
        assert again["a"]["bid"] == first["a"]["bid"] == live["id"]
        assert again["a"]["sid"] == first["a"]["sid"] and again["id"] != first["id"]
        # a2 did not reboot (a reconnection of the same boot is not one): sent once.
        online.report(online.birth("a2", boot=1, conn=2))
        for chunk in tone_chunks(1.5):
            ws.send_bytes(chunk)
        assert len(streams_sent(online, "a2")) == 1
        assert len(streams_sent(online, "a1")) == 2
        ws.close()
