"""Attack (or accident): the head-end's wall clock steps far ahead, and every counter it signs
becomes each receiver's replay floor, so the fleet refuses every command once the clock is put
right. Defence: headend/clock_guard.py; nothing is signed and no time is taught from a clock
that stepped, until it comes back or an admin confirms it."""

import pytest
from sqlalchemy import func, select

from headend.clock_guard import CLOCK, ClockGuard, ClockUntrusted
from headend.models import Broadcast, CommandCounter
from headend.mqtt.ingest import Report
from headend.mqtt.service import MqttService
from protocol import messages, topics
from tests.headend.conftest import login

HOUR_NS = 3600 * 10**9


class FakeClocks:
    def __init__(self):
        self.wall = 1_800_000_000 * 10**9
        self.mono = 5 * 10**9

    def advance(self, s):
        self.wall += int(s * 1e9)
        self.mono += int(s * 1e9)


@pytest.fixture
def clocks():
    fake = FakeClocks()
    return fake, ClockGuard(wall_ns=lambda: fake.wall, monotonic_ns=lambda: fake.mono)


def test_a_large_step_either_way_stops_signing_until_the_clock_comes_back(clocks):
    fake, guard = clocks
    first = guard.now_ms()
    fake.advance(30)
    fake.wall += 2 * 10**9  # NTP steps by 2 s: followed
    assert guard.now_ms() == first + 32000
    for step in (HOUR_NS, -HOUR_NS):
        fake.wall += step
        with pytest.raises(ClockUntrusted) as refused:
            guard.now_ms()
        assert refused.value.status == 503 and refused.value.code == "clock-untrusted"
        assert ("%+d s" % (step // 10**9)) in refused.value.message
        assert "Đồng hồ" in refused.value.message_vi
        fake.wall -= step  # put right: trusted again without anyone's help
        fake.advance(1)
        assert guard.problem() is None


def test_an_admin_confirmation_trusts_the_new_time(clocks):
    fake, guard = clocks
    guard.now_ms()
    fake.wall += HOUR_NS  # the clock was an hour slow and somebody set it right
    assert guard.problem() == "stepped +3600 s"
    guard.confirm()
    assert guard.now_ms() == fake.wall // 10**6


def test_a_clock_behind_the_newest_counter_cannot_be_confirmed(clocks):
    fake, guard = clocks
    guard.learn_floor(fake.wall // 10**6 + 3 * 24 * 3600 * 1000)  # signed 3 days "later"
    assert guard.problem().startswith("behind its newest counter by 259200 s")
    with pytest.raises(ClockUntrusted):
        guard.confirm()
    fake.advance(3 * 24 * 3600)  # the right time caught up
    assert guard.problem() is None


@pytest.fixture
def stepped_clock(monkeypatch):
    """The process's real guard, its wall clock shifted by ``shift["ns"]``."""
    shift = {"ns": 0}
    real = CLOCK._wall_ns
    CLOCK.now_ms()
    monkeypatch.setattr(CLOCK, "_wall_ns", lambda: real() + shift["ns"])
    yield shift
    shift["ns"] = 0
    CLOCK.confirm()  # later tests see the real clock trusted


def counters(app):
    with app.state.session_factory() as session:
        return dict(session.execute(select(CommandCounter.device_id, CommandCounter.last_ctr)).all())


def test_nothing_is_signed_from_a_stepped_clock_not_even_an_emergency(commune, client, app,
                                                                      stepped_clock):
    media = commune.upload()
    commune.report(*[commune.birth(d) for d in ("a1", "a2", "b1")])  # on line, ready to play
    commune.publisher.sent.clear()
    before = counters(app)
    stepped_clock["ns"] = 10 * 365 * 24 * HOUR_NS  # ten years ahead: a bad NTP server
    r = client.post("/api/v1/emergency", headers=commune.headers, json={"media_id": media["id"]})
    assert r.status_code == 503 and r.json()["code"] == "clock-untrusted"
    assert "+315360000 s" in r.json()["detail"] and "Đồng hồ" in r.json()["message_vi"]
    assert commune.publisher.sent == [] and counters(app) == before
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Broadcast)) == 0  # none half-made
    assert client.get("/api/v1/clock", headers=commune.headers).json()["trusted"] is False
    health = client.get("/api/v1/health").json()
    assert health["status"] == "degraded" and health["clock_problem"] == "stepped +315360000 s"

    # Only an admin may say the new time is right.
    operator = login(client, "operator")
    assert client.post("/api/v1/clock/confirm", headers=operator).status_code == 403
    r = client.post("/api/v1/clock/confirm", headers=commune.headers)
    assert r.status_code == 200 and r.json()["trusted"] is True
    r = client.post("/api/v1/emergency", headers=commune.headers, json={"media_id": media["id"]})
    assert r.status_code == 201, r.text
    assert commune.publisher.sent
    after = counters(app)
    assert all(after[d] > before[d] for d in ("a1", "a2", "b1"))


def test_reports_still_count_and_no_time_is_taught_while_the_clock_is_untrusted(commune, app,
                                                                                 stepped_clock):
    service = MqttService(settings=app.state.settings, session_factory=app.state.session_factory)
    service._load_keys()
    media = commune.upload()  # a bulletin for a1 while it is off line: sent when it returns
    r = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"devices": ["a1"]}})
    assert r.status_code == 201, r.text
    stepped_clock["ns"] = -HOUR_NS
    birth = commune.birth("a1")
    request = Report(topics.TIME_REQUEST, "a1", messages.time_request(1), 0)
    outgoing = service._apply([birth, request])
    assert outgoing == []  # a returning receiver's commands wait for a trusted clock
    assert service.stats["commands.untrusted_clock"] > 0
    assert service.stats["time_reply.untrusted_clock"] == 1 and service.stats["time_reply"] == 0
    r = commune.client.get("/api/v1/devices/a1", headers=commune.headers)
    assert r.json()["online"] is True  # the birth itself was stored
