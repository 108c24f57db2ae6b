"""CAP alerts through the real route, on a real SQLite file, with the real speech engine and
ffmpeg: issue 12's table of messages (acceptance 1), each with what a listener would notice
(which receivers are sent a play or a stop), sources' keys and signatures, the operator's
confirmation, and the ledger rows behind it all.

The demo commune's villages (headend/cap/ninh_binh_demo_zones.json) are the zones: Văn Lâm
holds a1, a2 and a3 (a3 offline), Xuân Áng holds b1; the alerts' polygon covers Văn Lâm only.
"""

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

import pytest
from cap_messages import HUE_POLYGON, SENDER, cap_alert, cap_area, cap_info
from conftest import Commune, login
from test_cap_parse import BILLION_LAUGHS, EXTERNAL_ENTITY

from headend.cap.demo_zones import demo_zones_document
from headend.models import Broadcast, CapAlert, CapSource
from headend.services import cap_alerts

VIETNAM = timedelta(hours=7)


@pytest.fixture
def database_url():
    return ""  # the SQLite file only: every aired alert runs the speech engine and ffmpeg


def cap_time(at: datetime) -> str:
    return (at.astimezone(UTC) + VIETNAM).strftime("%Y-%m-%dT%H:%M:%S+07:00")


NOW = datetime.now(UTC).replace(microsecond=0)
SENT = cap_time(NOW - timedelta(minutes=1))
EXPIRES = cap_time(NOW + timedelta(hours=6))


def alert(identifier="KTTV-NB-0001", severity="Extreme", areas=None, **fields):
    info = cap_info(severity=severity, expires=fields.pop("expires", EXPIRES), areas=areas,
                    headline=fields.pop("headline", "Cảnh báo lũ quét"),
                    description="Mưa lớn trên sông Ngô Đồng.", instruction="Lên vùng cao.")
    return cap_alert(identifier=identifier, sent=fields.pop("sent", SENT), infos=(info,),
                     **fields)


def reference(identifier="KTTV-NB-0001"):
    return "%s,%s,%s" % (SENDER, identifier, SENT)


@pytest.fixture
def village(client, app, as_admin):
    """Văn Lâm (a1, a2, a3) and Xuân Áng (b1) with their outlines; a1, a2, b1 online."""
    commune = Commune(client, app, as_admin).provision(
        {"van-lam": ["a1", "a2", "a3"], "xuan-ang": ["b1"]})
    for zone in demo_zones_document()["zones"]:
        if zone["id"] in ("van-lam", "xuan-ang"):
            r = client.patch("/api/v1/zones/" + zone["id"], headers=as_admin,
                             json={"area": zone["area"]})
            assert r.status_code == 200, r.text
    commune.report(*(commune.birth(d) for d in ("a1", "a2", "b1")))
    return commune


@pytest.fixture
def source_key(session):
    _, key = cap_alerts.add_source(session, source_id="kttv-nb", name="KTTV Ninh Bình",
                                   auth="api-key", senders=[SENDER])
    return {cap_alerts.SOURCE_KEY_HEADER: key}


def post(client, body, headers):
    return client.post("/api/v1/cap", content=body,
                       headers=dict(headers, **{"Content-Type": "application/xml"}))


def plays(commune, device):
    return [c["a"]["bid"] for c in commune.commands_to(device) if c["k"] == "play"]


def stops(commune, device):
    return [c["a"]["bid"] for c in commune.commands_to(device) if c["k"] == "stop"]


def stored(session):
    session.expire_all()
    return list(session.query(CapAlert).order_by(CapAlert.received_at))


def test_an_actual_alert_airs_the_tone_and_speech_on_its_zone_only(village, source_key,
                                                                    session):
    r = post(village.client, alert(), source_key)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["identifier"], answer["outcome"], answer["reason"], answer["zones"]) == (
        "KTTV-NB-0001", "aired", "automatic", ["van-lam"])
    bid = answer["broadcast_id"]
    assert plays(village, "a1") == plays(village, "a2") == [bid]
    assert plays(village, "b1") == [] and village.commands_to("a3") == []  # other village; offline
    broadcast = session.get(Broadcast, bid)
    assert broadcast.priority == "emergency" and broadcast.created_by == "cap:kttv-nb"
    # The window ends when the alert airs again (every 15 minutes by default, until its
    # expiry: test_cap_repeat.py): a receiver back within it still gets it.
    assert broadcast.valid_until == broadcast.created_at + timedelta(minutes=15)
    # The alert tone (4 s) and a pause come before the speech.
    assert broadcast.media.duration_ms > 5000
    assert {r.codec for r in broadcast.media.renditions} == {"mp3", "adpcm"}
    village.report(village.birth("a3"))
    assert plays(village, "a3") == [bid]
    (row,) = stored(session)
    assert (row.state, row.zones, row.broadcast_id, row.source) == ("on-air", ["van-lam"], bid,
                                                                    "kttv-nb")
    assert row.xml_sha256 == hashlib.sha256(alert()).hexdigest()
    ledger = village.client.get("/api/v1/emergency/ledger", headers=village.headers).json()
    assert [(e["event"], e["actor"], e["cap_identifier"]) for e in reversed(ledger)] == [
        ("emergency.create", "cap:kttv-nb", None),
        ("cap.received", "cap:kttv-nb", "KTTV-NB-0001")]
    # Posted again (a retry, a replay): acted on once.
    again = post(village.client, alert(), source_key).json()
    assert (again["outcome"], again["reason"]) == ("logged", "duplicate")
    assert plays(village, "a1") == [bid] and len(stored(session)) == 1


def test_an_update_replaces_the_running_alert_without_a_double_play(village, source_key,
                                                                     session):
    first = post(village.client, alert(), source_key).json()["broadcast_id"]
    r = post(village.client, alert("KTTV-NB-0002", msg_type="Update", references=reference(),
                                   headline="Cập nhật: lũ quét lan rộng"), source_key)
    answer = r.json()
    assert r.status_code == 200 and (answer["outcome"], answer["action"]) == ("aired", "replace")
    assert answer["targets"] == ["KTTV-NB-0001"]
    second = answer["broadcast_id"]
    assert second != first
    for device in ("a1", "a2"):
        kinds = [(c["k"], c["a"]["bid"]) for c in village.commands_to(device)]
        # the old one stopped before the new one is sent
        assert kinds == [("play", first), ("stop", first), ("play", second)]
    assert session.get(Broadcast, first).state == "cancelled"
    # a3 was offline for both: it comes back and plays the update alone.
    village.report(village.birth("a3"))
    assert plays(village, "a3") == [second]
    states = {row.identifier: row.state for row in stored(session)}
    assert states == {"KTTV-NB-0001": "ended", "KTTV-NB-0002": "on-air"}


def test_a_cancel_stops_it_and_a_receiver_back_later_does_not_play_it(village, source_key,
                                                                       session):
    bid = post(village.client, alert(), source_key).json()["broadcast_id"]
    r = post(village.client, alert("KTTV-NB-0003", msg_type="Cancel", references=reference()),
             source_key)
    answer = r.json()
    assert (answer["outcome"], answer["reason"], answer["action"]) == ("aired", "cancel", "stop")
    assert answer["broadcast_id"] is None
    assert stops(village, "a1") == stops(village, "a2") == [bid]
    assert session.get(Broadcast, bid).cancelled_by == "cap:kttv-nb"
    village.report(village.birth("a3"))
    assert village.commands_to("a3") == []
    events = [e["event"] for e in village.client.get(
        "/api/v1/emergency/ledger", headers=village.headers).json()]
    assert events[:2] == ["cap.received", "emergency.cancel"]


@pytest.mark.parametrize("status, reason", [("Exercise", "no-exercise-receivers"),
                                            ("Test", "status-test"),
                                            ("System", "status-system")])
def test_exercises_and_tests_are_logged_only(village, source_key, session, status, reason):
    before = len(village.publisher.sent)
    r = post(village.client, alert(status=status), source_key)
    assert r.status_code == 200
    assert (r.json()["outcome"], r.json()["reason"], r.json()["broadcast_id"]) == (
        "logged", reason, None)
    assert len(village.publisher.sent) == before
    listed = village.client.get("/api/v1/cap", headers=village.headers).json()
    assert [(a["status"], a["state"], a["reason"]) for a in listed] == [(status, "logged",
                                                                         reason)]


def test_an_area_in_another_province_airs_nothing_and_says_so(village, source_key, session):
    before = len(village.publisher.sent)
    r = post(village.client, alert(areas=(cap_area("Thừa Thiên Huế", polygons=(HUE_POLYGON,)),)),
             source_key)
    answer = r.json()
    assert r.status_code == 200
    assert (answer["outcome"], answer["reason"], answer["zones"]) == ("logged", "no-zones", [])
    assert len(village.publisher.sent) == before
    (listed,) = village.client.get("/api/v1/cap", headers=village.headers).json()
    assert listed["reason_text"]["vi"] == "Vùng cảnh báo không thuộc thôn/xóm nào của xã"


def _truncated():
    whole = alert()
    return whole[:len(whole) // 2]


@pytest.mark.parametrize("name, body, headers, status, code", [
    ("expired", alert(sent=cap_time(NOW - timedelta(hours=3)),
                      expires=cap_time(NOW - timedelta(hours=1))), None, 422, "expired"),
    ("truncated", _truncated(), None, 422, "malformed"),
    ("external entity", EXTERNAL_ENTITY, None, 422, "forbidden-xml"),
    ("billion laughs", BILLION_LAUGHS, None, 422, "forbidden-xml"),
    ("too large", b"<" * (256 * 1024 + 1), None, 413, "too-large"),
    ("wrong source key", alert(), {cap_alerts.SOURCE_KEY_HEADER: "0" * 64}, 401,
     "cap-unauthorized"),
    ("no credentials", alert(), {}, 401, "cap-unauthorized"),
    ("another agency's sender", alert(sender="canhbao@kttv-hue.gov.vn"), None, 403,
     "cap-sender"),
])
def test_a_bad_message_is_refused_with_a_4xx_and_nothing_is_kept_or_sent(
        village, source_key, session, name, body, headers, status, code):
    before = len(village.publisher.sent)
    r = post(village.client, body, source_key if headers is None else headers)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and r.json()["message_vi"]
    assert stored(session) == [] and len(village.publisher.sent) == before
    assert session.query(Broadcast).count() == 0


def test_hmac_signed_posts_are_accepted_fresh_and_refused_old_or_forged(village, session):
    _, secret = cap_alerts.add_source(session, source_id="tinh-nb", name="Tỉnh", auth="hmac",
                                      senders=[SENDER])
    body = alert(status="Test")

    def signed(at, payload=body):
        stamp = str(int(at))
        mac = hmac.new(secret.encode(), stamp.encode() + b"." + payload, hashlib.sha256)
        return {cap_alerts.SIGNATURE_HEADER: "sha256=" + mac.hexdigest(),
                cap_alerts.TIMESTAMP_HEADER: stamp}

    old = signed(time.time() - 6 * 60)
    assert post(village.client, body, old).status_code == 401  # a replay, minutes later
    forged = dict(signed(time.time()), **{cap_alerts.TIMESTAMP_HEADER: str(int(time.time()) + 1)})
    assert post(village.client, body, forged).status_code == 401  # time changed after signing
    other = alert("KTTV-NB-0999", status="Test")
    assert post(village.client, other, signed(time.time())).status_code == 401  # other body
    assert stored(session) == []
    fresh = signed(time.time())
    r = post(village.client, body, fresh)
    assert r.status_code == 200 and r.json()["reason"] == "status-test"
    assert post(village.client, body, fresh).json()["reason"] == "duplicate"  # replayed at once
    assert len(stored(session)) == 1


def test_a_queued_alert_waits_for_an_operator_with_the_emergency_permission(
        village, source_key, session, users):
    r = post(village.client, alert(severity="Moderate"), source_key)
    answer = r.json()
    assert (answer["outcome"], answer["reason"], answer["zones"]) == (
        "queued", "needs-confirmation", ["van-lam"])
    assert plays(village, "a1") == []
    alert_id = answer["alert_id"]
    for role in ("viewer", "technician"):
        r = village.client.post("/api/v1/cap/%s/confirm" % alert_id,
                                headers=login(village.client, role))
        assert r.status_code == 403
    assert plays(village, "a1") == []
    r = village.client.post("/api/v1/cap/%s/confirm" % alert_id,
                            headers=login(village.client, "operator"))
    assert r.status_code == 200, r.text
    confirmed = r.json()
    assert confirmed["state"] == "on-air" and confirmed["confirmed_by"] == "operator"
    assert plays(village, "a1") == plays(village, "a2") == [confirmed["broadcast_id"]]
    assert plays(village, "b1") == []
    again = village.client.post("/api/v1/cap/%s/confirm" % alert_id, headers=village.headers)
    assert again.status_code == 409 and plays(village, "a1") == [confirmed["broadcast_id"]]
    ledger = village.client.get("/api/v1/emergency/ledger", headers=village.headers).json()
    assert [(e["event"], e["actor"]) for e in reversed(ledger)] == [
        ("cap.received", "cap:kttv-nb"), ("emergency.create", "operator"),
        ("cap.confirm", "operator")]
    assert village.client.get("/api/v1/emergency/ledger/verify",
                              headers=village.headers).json()["ok"]


def test_an_admin_token_posts_and_other_roles_tokens_do_not(village, users, session):
    r = post(village.client, alert(status="Test"), login(village.client, "operator"))
    assert r.status_code == 401 and stored(session) == []
    r = post(village.client, alert(status="Test"), village.headers)
    assert r.status_code == 200 and r.json()["reason"] == "status-test"
    assert stored(session)[0].source == "user:admin"


def test_a_source_added_on_the_command_line_posts_with_the_key_printed_once(
        village, settings, session, capsys):
    from headend.cli import main

    assert main(["--data-dir", str(settings.data_dir), "add-cap-source", "kttv-nb",
                 "--name", "Đài KTTV Ninh Bình", "--sender", SENDER]) == 0
    printed = capsys.readouterr().out
    key = printed.rsplit("X-Loaxa-Source-Key: ", 1)[1].strip()
    assert len(key) == 64
    source = session.get(CapSource, "kttv-nb")
    assert key not in repr(source.__dict__) and source.key_sha256 != key  # only its hash kept
    r = post(village.client, alert(status="Test"), {cap_alerts.SOURCE_KEY_HEADER: key})
    assert r.status_code == 200 and stored(session)[0].source == "kttv-nb"
    # The same id again is refused, and no second key is printed.
    assert main(["--data-dir", str(settings.data_dir), "add-cap-source", "kttv-nb",
                 "--sender", SENDER]) == 1
    assert "X-Loaxa-Source-Key" not in capsys.readouterr().out
