"""A CAP alert's attached audio resource: carried in the message (derefUri) or fetched from a
real HTTP server on 127.0.0.1 (uri), its digest checked, probed and converted by the real
media pipeline (ffmpeg), aired instead of the speech engine; anything wrong with it falls back
to the text read aloud, with the reason logged and audited."""

import base64
import hashlib
import logging

import cap_server
import pytest
import test_cap_api
from cap_messages import cap_alert, cap_info, cap_resource
from cap_server import Route
from test_cap_api import EXPIRES, SENT, plays, post

from headend.models import AuditEntry, Broadcast, CapAlert
from headend.services import cap_alerts
from tools.testaudio import tone_wav

cap_http_server = cap_server.cap_http_server
village = test_cap_api.village
source_key = test_cap_api.source_key

RECORDING = tone_wav(2.0)  # the agency's own recording: 2 s
TONE_AND_PAUSE_MS = 4000  # the alert tone alone is 4 s (audio/tones.py)


@pytest.fixture
def database_url():
    return ""  # the SQLite file only


def alert_with(resource, identifier="KTTV-NB-0101", severity="Extreme"):
    info = cap_info(severity=severity, expires=EXPIRES, resources=(resource,),
                    headline="Cảnh báo lũ", description="Mưa lớn.", instruction="Lên vùng cao.")
    return cap_alert(identifier=identifier, sent=SENT, infos=(info,))


def sha1(data):
    return hashlib.sha1(data).hexdigest()


def aired_media(session, answer):
    session.expire_all()
    return session.get(Broadcast, answer["broadcast_id"]).media


def audits(session, action):
    session.expire_all()
    return [entry.detail for entry in session.query(AuditEntry).filter_by(action=action)]


def test_an_audio_resource_at_a_uri_with_its_digest_airs_instead_of_the_speech(
        village, source_key, session, cap_http_server, monkeypatch):
    cap_http_server.routes["/ghi-am.wav"] = Route(RECORDING, "audio/wav")

    def no_speech(*args, **kwargs):
        raise AssertionError("the speech engine must not be used")

    monkeypatch.setattr(cap_alerts, "alert_media", no_speech)
    body = alert_with(cap_resource(mime_type="audio/x-wav", uri=cap_http_server.url("/ghi-am.wav"),
                                   size=len(RECORDING), digest=sha1(RECORDING)))
    r = post(village.client, body, source_key)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["outcome"] == "aired"
    assert plays(village, "a1") == [answer["broadcast_id"]]
    media = aired_media(session, answer)
    # The alert tone, a pause, then the 2 s recording (not a spoken text of other length).
    assert TONE_AND_PAUSE_MS + 1500 < media.duration_ms < TONE_AND_PAUSE_MS + 3500
    assert {r.codec for r in media.renditions} == {"mp3", "adpcm"}
    (row,) = session.query(CapAlert).all()
    assert row.media_id == media.id
    assert audits(session, "cap.resource-used")[0]["media_id"] == media.id


def test_an_audio_resource_carried_in_the_message_is_used(village, source_key, session,
                                                          monkeypatch):
    monkeypatch.setattr(cap_alerts, "alert_media", None)  # would fail if called
    body = alert_with(cap_resource(mime_type="audio/wav",
                                   deref=base64.b64encode(RECORDING).decode(),
                                   digest=sha1(RECORDING)))
    answer = post(village.client, body, source_key).json()
    assert answer["outcome"] == "aired"
    assert audits(session, "cap.resource-used")


@pytest.mark.parametrize("case, reason", [
    ("wrong-digest", "digest-mismatch"),
    ("not-audio", "not-audio"),
    ("missing", "fetch-failed"),
    ("too-large", "fetch-failed"),
])
def test_an_unusable_resource_falls_back_to_the_speech_with_the_reason_logged(
        village, source_key, session, cap_http_server, caplog, case, reason):
    server = cap_http_server
    server.routes["/ghi-am.wav"] = Route(RECORDING, "audio/wav")
    server.routes["/trang.wav"] = Route(b"<html>not a recording</html>" * 10, "audio/wav")
    village.app.state.settings.cap_resource_max_bytes = 1000 if case == "too-large" else 10**7
    uri, digest = {"wrong-digest": ("/ghi-am.wav", sha1(b"something else")),
                   "not-audio": ("/trang.wav", None),
                   "missing": ("/khong-co.wav", None),
                   "too-large": ("/ghi-am.wav", None)}[case]
    body = alert_with(cap_resource(mime_type="audio/wav", uri=server.url(uri), digest=digest))
    with caplog.at_level(logging.WARNING, logger="headend.services.cap_resource"):
        r = post(village.client, body, source_key)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["outcome"] == "aired"  # the alert still airs: its text read aloud
    assert plays(village, "a1") == [answer["broadcast_id"]]
    (unused,) = audits(session, "cap.resource-unused")
    assert unused["reason"] == reason, unused
    assert reason in caplog.text and "text is read instead" in caplog.text
    (row,) = session.query(CapAlert).all()
    assert row.media_id is None
    # The spoken text: longer than the recording would have been.
    assert aired_media(session, answer).duration_ms > TONE_AND_PAUSE_MS


def test_a_queued_alert_keeps_the_resource_fetched_when_it_came_for_its_confirmation(
        village, source_key, session, cap_http_server, monkeypatch):
    cap_http_server.routes["/ghi-am.wav"] = Route(RECORDING, "audio/wav")
    body = alert_with(cap_resource(mime_type="audio/wav", uri=cap_http_server.url("/ghi-am.wav")),
                      severity="Moderate")
    answer = post(village.client, body, source_key).json()
    assert answer["outcome"] == "queued"
    del cap_http_server.routes["/ghi-am.wav"]  # gone by the time an operator confirms
    monkeypatch.setattr(cap_alerts, "alert_media", None)
    r = village.client.post("/api/v1/cap/%s/confirm" % answer["alert_id"],
                            headers=village.headers)
    assert r.status_code == 200, r.text
    bid = r.json()["broadcast_id"]
    assert plays(village, "a1") == [bid]
    session.expire_all()
    assert session.get(Broadcast, bid).media_id == session.get(CapAlert,
                                                               answer["alert_id"]).media_id


def test_a_resource_that_is_not_audio_is_not_looked_at(village, source_key, session,
                                                       cap_http_server):
    body = alert_with(cap_resource(mime_type="image/png", uri=cap_http_server.url("/map.png")))
    answer = post(village.client, body, source_key).json()
    assert answer["outcome"] == "aired"
    assert cap_http_server.requests == [] and audits(session, "cap.resource-unused") == []
