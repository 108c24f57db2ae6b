"""What the head-end does with each CAP message: the table of the issue (alert, update, cancel,
exercise, test, system, draft, another province, expired, ...) from the XML bytes an agency
sends to the answer the API gives, through the same ``receive_cap`` the route will call."""

from datetime import timedelta

import pytest
from cap_messages import (
    HUE_POLYGON,
    NOW,
    SENDER,
    cap_alert,
    cap_area,
    cap_info,
    reference_to,
)

from headend.cap.demo_zones import demo_zones
from headend.cap.errors import CapError
from headend.cap.intake import receive_cap
from headend.cap.parse import parse_cap
from headend.cap.policy import (
    ACTION_NAMES,
    OUTCOME_NAMES,
    REASON_NAMES,
    RunningAlert,
    SitePolicy,
    decide,
    info_to_read,
)
from headend.errors import Invalid

RUNNING = RunningAlert("KTTV-NB-2026-0001", SENDER, broadcast_id="b-17")
STATION = "dai.ninhhai@ninhbinh.gov.vn"
POLICY = SitePolicy(site_addresses=frozenset({STATION}))
ALL_VILLAGES = ["xuan-ang", "van-lam", "hai-nham", "dam-khe", "khe-dau-ha", "khe-dau-thuong"]

UPDATE = dict(identifier="KTTV-NB-2026-0002", msg_type="Update", references=reference_to())
CANCEL = dict(identifier="KTTV-NB-2026-0003", msg_type="Cancel", references=reference_to(),
              infos=())


def answer(document, running=None, now=NOW, policy=POLICY, exercise_zones=()):
    result = receive_cap(document, zones=demo_zones(), policy=policy,
                         running={} if running is None else running, now=now,
                         has_exercise_receivers=lambda zones: bool(set(zones) & set(exercise_zones)))
    return result


# (name, document, running alerts, outcome, reason, action, targets, zones, receiver flag)
TABLE = [
    ("alert", cap_alert(), {}, "aired", "automatic", "new", [], ["van-lam"], None),
    ("alert to the whole commune", cap_alert(infos=(cap_info(areas=(
        cap_area(geocodes=(("loaxa-demo", "ninh-hai"),)),)),)), {},
     "aired", "automatic", "new", [], ALL_VILLAGES, None),
    ("moderate alert", cap_alert(infos=(cap_info(severity="Moderate", urgency="Expected"),)), {},
     "queued", "needs-confirmation", "new", [], ["van-lam"], None),
    ("extreme but only possible", cap_alert(infos=(cap_info(certainty="Possible"),)), {},
     "queued", "needs-confirmation", "new", [], ["van-lam"], None),
    ("update", cap_alert(**UPDATE), {RUNNING.identifier: RUNNING},
     "aired", "automatic", "replace", [RUNNING.identifier], ["van-lam"], None),
    ("update needing confirmation", cap_alert(**UPDATE, infos=(cap_info(severity="Minor"),)),
     {RUNNING.identifier: RUNNING},
     "queued", "needs-confirmation", "replace", [RUNNING.identifier], ["van-lam"], None),
    ("update moving the area away", cap_alert(**UPDATE, infos=(cap_info(areas=(cap_area(
        polygons=(HUE_POLYGON,)),)),)), {RUNNING.identifier: RUNNING},
     "aired", "no-zones", "stop", [RUNNING.identifier], [], None),
    ("update of nothing running", cap_alert(**UPDATE), {},
     "logged", "unknown-reference", None, [], [], None),
    ("update without references", cap_alert(identifier="KTTV-NB-2026-0002", msg_type="Update"),
     {RUNNING.identifier: RUNNING}, "logged", "no-reference", None, [], [], None),
    ("update naming another sender", cap_alert(**dict(UPDATE, references=reference_to(
        sender="mallory@example.com"))), {RUNNING.identifier: RUNNING},
     "logged", "unknown-reference", None, [], [], None),
    ("update of another sender's alert", cap_alert(**UPDATE, sender="mallory@example.com"),
     {RUNNING.identifier: RUNNING}, "logged", "unknown-reference", None, [], [], None),
    ("cancel", cap_alert(**CANCEL), {RUNNING.identifier: RUNNING},
     "aired", "cancel", "stop", [RUNNING.identifier], [], None),
    ("cancel of nothing running", cap_alert(**CANCEL), {},
     "logged", "unknown-reference", None, [], [], None),
    ("cancel naming another sender", cap_alert(**dict(CANCEL, references=reference_to(
        sender="mallory@example.com"))),
     {RUNNING.identifier: RUNNING}, "logged", "unknown-reference", None, [], [], None),
    ("cancel of another sender's alert", cap_alert(**CANCEL, sender="mallory@example.com"),
     {RUNNING.identifier: RUNNING}, "logged", "unknown-reference", None, [], [], None),
    ("cancel without references", cap_alert(identifier="X-3", msg_type="Cancel", infos=()),
     {RUNNING.identifier: RUNNING}, "logged", "no-reference", None, [], [], None),
    ("exercise", cap_alert(status="Exercise"), {},
     "aired", "automatic", "new", [], ["van-lam"], "exercise"),
    ("exercise without exercise receivers", cap_alert(status="Exercise", infos=(cap_info(areas=(
        cap_area(geocodes=(("loaxa-demo", "ninh-hai/hai-nham"),)),)),)), {},
     "logged", "no-exercise-receivers", None, [], [], "exercise"),
    ("test", cap_alert(status="Test"), {}, "logged", "status-test", None, [], [], None),
    ("system", cap_alert(status="System"), {}, "logged", "status-system", None, [], [], None),
    ("draft", cap_alert(status="Draft"), {}, "logged", "status-draft", None, [], [], None),
    ("test cancel", cap_alert(**CANCEL, status="Test"), {RUNNING.identifier: RUNNING},
     "logged", "status-test", None, [], [], None),
    ("ack", cap_alert(msg_type="Ack", references=reference_to()), {}, "logged", "msgtype-ack",
     None, [], [], None),
    ("error", cap_alert(msg_type="Error", references=reference_to()), {}, "logged",
     "msgtype-error", None, [], [], None),
    ("another province", cap_alert(infos=(cap_info(areas=(cap_area(
        description="Thành phố Huế", polygons=(HUE_POLYGON,), geocodes=(("vn-dvhc", "46"),)),)),)),
     {}, "logged", "no-zones", None, [], [], None),
    ("no area at all", cap_alert(infos=(cap_info(areas=()),)), {},
     "logged", "no-zones", None, [], [], None),
    ("expired", cap_alert(infos=(cap_info(expires="2026-11-15T17:29:59+07:00"),)), {},
     "refused", "expired", None, [], [], None),
    ("expires this very second", cap_alert(infos=(cap_info(expires="2026-11-15T17:30:00+07:00"),)),
     {}, "refused", "expired", None, [], [], None),
    ("no expiry, sent long ago", cap_alert(sent="2026-11-15T11:00:00+07:00", infos=(cap_info(
        expires=None),)), {}, "refused", "expired", None, [], [], None),
    ("sent twice", cap_alert(), {RUNNING.identifier: RUNNING}, "logged", "duplicate", None, [],
     [], None),
    ("update sent twice", cap_alert(**UPDATE), {
        RUNNING.identifier: RUNNING,
        "KTTV-NB-2026-0002": RunningAlert("KTTV-NB-2026-0002", SENDER)},
     "logged", "duplicate", None, [], [], None),
    ("restricted", cap_alert(scope="Restricted", restriction="Ban chỉ huy PCTT"), {},
     "logged", "restricted-scope", None, [], [], None),
    ("private to others", cap_alert(scope="Private", addresses="ubnd@other.gov.vn"), {},
     "logged", "not-addressed", None, [], [], None),
    ("private to this station", cap_alert(scope="Private", addresses="a@b.vn %s" % STATION), {},
     "queued", "private-addressed", "new", [], ["van-lam"], None),
    ("no info", cap_alert(infos=()), {}, "logged", "no-info", None, [], [], None),
]


@pytest.mark.parametrize("name, document, running, outcome, reason, action, targets, zones, flag",
                         TABLE, ids=[row[0] for row in TABLE])
def test_each_message_gets_its_outcome(name, document, running, outcome, reason, action,
                                       targets, zones, flag):
    result = answer(document, running, exercise_zones=["van-lam"])
    body = result.as_dict()
    assert (body["outcome"], body["reason"], body["action"]) == (outcome, reason, action)
    assert body["targets"] == targets
    assert body["zones"] == zones
    assert body["receiver_flag"] == flag
    assert body["identifier"] == result.alert.identifier
    assert result.http_status == (422 if outcome == "refused" else 200)
    assert reason in REASON_NAMES


def test_a_refused_alert_answers_a_4xx_in_both_languages():
    result = answer(cap_alert(infos=(cap_info(expires="2026-11-15T12:00:00+07:00"),)))
    assert result.http_status == 422
    body = result.as_dict()
    assert body["code"] == "expired"
    assert body["message_vi"] == "bản tin cảnh báo CAP đã hết hạn"
    error = result.decision.refusal()
    assert isinstance(error, CapError) and isinstance(error, Invalid)
    assert answer(cap_alert()).decision.refusal() is None


def test_a_message_that_cannot_be_read_raises_before_any_decision():
    with pytest.raises(CapError) as refused:
        answer(cap_alert()[:200])
    assert refused.value.code == "malformed"


def test_the_vietnamese_info_is_read_and_normalised_for_speech():
    english = cap_info(language="en-US", headline="Flash flood warning",
                       description="Heavy rain of 150mm at 17h00.", instruction="Move uphill.",
                       areas=(cap_area(geocodes=(("loaxa-demo", "ninh-hai/dam-khe"),)),))
    decision = answer(cap_alert(infos=(english, cap_info()))).decision
    assert decision.info.language == "vi-VN"
    assert decision.text.split("\n") == [
        "Cảnh báo lũ quét và sạt lở đất",
        "Lúc 17h00 ngày 15/11/2026, mưa lớn 150mm trên sông Ngô Đồng; "
        "nguy cơ lũ quét tại xã Ninh Hải.",
        "Người dân di chuyển lên vùng cao, gọi 0912 345 678 khi cần cứu hộ."]
    assert decision.spoken_text.split("\n") == [
        "Cảnh báo lũ quét và sạt lở đất",
        "Lúc mười bảy giờ ngày mười lăm tháng mười một năm hai nghìn không trăm hai mươi sáu, "
        "mưa lớn một trăm năm mươi mi-li-mét trên sông Ngô Đồng; nguy cơ lũ quét tại xã Ninh Hải.",
        "Người dân di chuyển lên vùng cao, gọi không chín một hai, ba bốn năm, sáu bảy tám "
        "khi cần cứu hộ."]


def test_the_vietnamese_info_s_area_is_the_one_that_selects_zones():
    english = cap_info(language="en-US",
                       areas=(cap_area(geocodes=(("loaxa-demo", "ninh-hai/dam-khe"),)),))
    assert answer(cap_alert(infos=(english, cap_info()))).zones == ("van-lam",)


@pytest.mark.parametrize("language", ["vi", "vi-VN", "VI-vn"])
def test_vietnamese_is_recognised_by_its_language_tag(language):
    alert = parse_cap(cap_alert(infos=(cap_info(language="en-US"), cap_info(language=language))))
    assert info_to_read(alert) is alert.infos[1]


def test_without_a_vietnamese_info_the_first_is_read_as_written():
    first = cap_info(language="en-US", headline="Flash flood at 17h00", description=None,
                     instruction=None)
    second = cap_info(language="fr-FR", headline="Crue soudaine")
    decision = answer(cap_alert(infos=(first, second))).decision
    assert decision.info.language == "en-US"
    assert decision.text == decision.spoken_text == "Flash flood at 17h00"


def test_an_alert_runs_from_effective_until_expires_or_the_default_duration():
    timed = answer(cap_alert(infos=(cap_info(effective="2026-11-15T18:00:00+07:00"),))).decision
    assert timed.starts_at == NOW + timedelta(minutes=30)
    assert timed.ends_at == NOW + timedelta(hours=11, minutes=30)  # 05:00 next morning
    open_ended = answer(cap_alert(infos=(cap_info(expires=None),))).decision
    assert open_ended.starts_at == NOW - timedelta(minutes=30)  # sent
    assert open_ended.ends_at == open_ended.starts_at + POLICY.default_duration


def test_running_alerts_may_be_looked_up_by_a_function():
    looked_up = []

    def running(identifier):
        looked_up.append(identifier)
        return RUNNING if identifier == RUNNING.identifier else None

    result = answer(cap_alert(**CANCEL), running=running)
    assert result.decision.targets == (RUNNING,)
    assert result.decision.targets[0].broadcast_id == "b-17"
    assert RUNNING.identifier in looked_up


def test_one_cancel_stops_every_running_alert_it_names():
    other = RunningAlert("KTTV-NB-2026-0000", SENDER)
    references = " ".join((reference_to(), reference_to(other.identifier), reference_to("gone")))
    result = answer(cap_alert(**dict(CANCEL, references=references)),
                    running={RUNNING.identifier: RUNNING, other.identifier: other})
    assert result.as_dict()["targets"] == [RUNNING.identifier, other.identifier]


def test_an_empty_automatic_policy_queues_everything():
    policy = SitePolicy.from_dict({"automatic": []})
    assert answer(cap_alert(), policy=policy).decision.outcome == "queued"


def test_a_site_may_air_more_automatically():
    policy = SitePolicy.from_dict({
        "automatic": [{"severity": ["Extreme", "Severe"], "urgency": ["Immediate"],
                       "certainty": ["Observed", "Likely"]},
                      {"severity": ["Moderate"], "urgency": ["Immediate", "Expected"],
                       "certainty": ["Observed"]}],
        "site_addresses": [STATION],
        "default_duration_minutes": 120,
    })
    moderate = cap_alert(infos=(cap_info(severity="Moderate", urgency="Expected"),))
    assert answer(moderate, policy=policy).decision.outcome == "aired"
    assert answer(moderate).decision.outcome == "queued"
    assert policy.default_duration == timedelta(hours=2)
    assert SitePolicy.from_dict({}) == SitePolicy()


@pytest.mark.parametrize("data, words", [
    ({"automatic": [{"severity": ["Huge"], "urgency": ["Immediate"], "certainty": ["Observed"]}]},
     "Huge"),
    ({"automatic": [{"severity": ["Extreme"], "urgency": [], "certainty": ["Observed"]}]},
     "urgency must be a non-empty list"),
    ({"automatic": [{"severity": "Extreme", "urgency": ["Immediate"], "certainty": ["Observed"]}]},
     "severity must be a list"),
    ({"automatic": {"severity": ["Extreme"]}}, "list of rules"),
    ({"site_addresses": "dai@x.vn"}, "site_addresses"),
    ({"default_duration_minutes": 0}, "default_duration_minutes"),
    ({"default_duration_minutes": True}, "default_duration_minutes"),
    ({"auto": []}, "unknown keys auto"),
    ([], "an object"),
])
def test_a_bad_policy_is_refused_in_both_languages(data, words):
    with pytest.raises(Invalid) as refused:
        SitePolicy.from_dict(data)
    assert refused.value.code == "invalid-cap-policy"
    assert words in refused.value.message
    assert refused.value.message_vi.startswith("quy định tự động phát CAP không hợp lệ")


def test_the_decision_needs_an_aware_clock():
    with pytest.raises(ValueError):
        decide(parse_cap(cap_alert()), POLICY, {}, NOW.replace(tzinfo=None))


def test_every_outcome_action_and_reason_has_an_english_and_a_vietnamese_name():
    for names in (OUTCOME_NAMES, ACTION_NAMES, REASON_NAMES):
        for english, vietnamese in names.values():
            assert english and vietnamese and english != vietnamese
