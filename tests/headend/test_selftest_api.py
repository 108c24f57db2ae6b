"""The periodic test on the head-end: ``POST /api/v1/selftest`` (technician/admin) sends the
signed command to every receiver online, the receivers' own cores take it and answer, and
``GET /api/v1/selftest`` lists each receiver passed / failed / no answer with the reason;
the weekly slot runs once from the scheduler's pass."""

from datetime import UTC, datetime, timedelta

import pytest
from conftest import login, now_ms

from firmware import core as C
from headend.services import selftests
from headend.settings import Settings
from protocol import messages
from protocol.signing import key_from_hex


def receiver_core(commune, device):
    core = C.ReceiverCore(device, "xa-test", key_from_hex(commune.keys[device]))
    core.set_synced(now_ms())
    return core


def answer(commune, device, **change):
    """``device``'s real core takes the selftest sent to it; the shell's readings (``change``
    over a healthy board) go back as its selftest event."""
    core = receiver_core(commune, device)
    payload = [s.payload for s in commune.publisher.sent if s.device_id == device][-1]
    acts = core.on_command(payload, now_ms())
    (test,) = [a for a in acts if a[0] == C.SELFTEST]
    result = {"run": test[1], "sink": True, "relay": True, "fault": False, "flash": 400000,
              "flash_min": 131072, "synced": True}
    result.update(change)
    acts += core.selftest_done(result, now_ms())
    events = [a[1] for a in acts if a[0] == C.EVENT]
    commune.report(*[commune.sealed("evt", device, messages.encode(e)) for e in events])
    return test


def test_a_run_lists_the_failed_receiver_with_its_reason_and_the_offline_ones(client, commune,
                                                                            as_admin):
    commune.report(*[commune.birth(d) for d in ("a1", "a2", "b1")])  # a3, b2 stay offline
    assert client.get("/api/v1/selftest", headers=as_admin).status_code == 404
    for role in ("viewer", "operator"):
        r = client.post("/api/v1/selftest", headers=login(client, role))
        assert r.status_code == 403, role
    r = client.post("/api/v1/selftest", headers=login(client, "technician"))
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    sent = {d: [c for c in commune.commands_to(d) if c["k"] == messages.SELFTEST]
            for d in commune.keys}
    assert {d for d, cmds in sent.items() if cmds} == {"a1", "a2", "b1"}
    assert sent["a1"][0]["a"] == {"run": run_id}
    test = answer(commune, "a1")
    assert test[2:4] == (C.SELFTEST_LEVEL, C.SELFTEST_TONE_MS)  # -30 dBFS, 1 s
    answer(commune, "a2", fault=True, ma=0.0)
    body = client.get("/api/v1/selftest", headers=login(client, "viewer")).json()
    assert body["id"] == run_id and body["actor"] == "technician" and not body["complete"]
    states = {r["device_id"]: (r["state"], r["reason"]) for r in body["receivers"]}
    assert states == {"a1": ("passed", None), "a2": ("failed", "amp-fault"),
                      "a3": ("no-answer", "offline"), "b2": ("no-answer", "offline"),
                      "b1": ("waiting", None)}
    assert body["receivers"][0]["device_id"] == "a2"  # failures first
    assert body["receivers"][0]["result"]["fault"] is True
    assert body["counts"] == {"failed": 1, "no-answer": 2, "waiting": 1, "passed": 1}
    assert body["next_run"] is not None
    # b1 never answers: past the answer time it is "no answer" (timeout).
    with commune.app.state.session_factory() as session:
        later = datetime.now(UTC) + timedelta(seconds=commune.app.state.settings
                                              .selftest_answer_s + 1)
        out = selftests.latest_run(session, settings=commune.app.state.settings, now=later)
    assert {r["device_id"]: r["reason"] for r in out["receivers"]}["b1"] == "timeout"
    assert out["complete"]
    # A second answer, or one for a run never sent to that receiver, changes nothing.
    commune.report(commune.event("b2", messages.EV_SELFTEST, run=run_id, ok=True))
    states = {r["device_id"]: r["state"] for r in client.get(
        "/api/v1/selftest", headers=as_admin).json()["receivers"]}
    assert states["b2"] == "no-answer"


def test_a_receiver_that_refuses_the_command_is_listed_failed_with_the_refusal(client,
                                                                               commune,
                                                                               as_admin):
    commune.report(commune.birth("a1"))
    assert client.post("/api/v1/selftest", headers=as_admin).status_code == 202
    cmd = [c for c in commune.commands_to("a1") if c["k"] == messages.SELFTEST][0]
    commune.report(commune.event("a1", messages.EV_ACK, cmd=cmd["id"], ok=False,
                                 reason="replay"))
    row = [r for r in client.get("/api/v1/selftest", headers=as_admin).json()["receivers"]
           if r["device_id"] == "a1"][0]
    assert (row["state"], row["reason"]) == ("failed", "replay")


def test_the_weekly_slot_runs_once_and_never_late(commune):
    app = commune.app
    commune.report(commune.birth("a1"))
    settings = app.state.settings
    assert settings.selftest_schedule == "sun 10:00"
    sunday = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)  # 10:00 in Asia/Ho_Chi_Minh
    with app.state.session_factory() as session:
        kw = {"settings": settings, "publisher": commune.publisher}
        # The previous Sunday's slot is long past: not run late.
        assert selftests.run_due(session, now=sunday - timedelta(minutes=1), **kw) is None
        run = selftests.run_due(session, now=sunday + timedelta(seconds=30), **kw)
        assert run is not None
        assert selftests.run_due(session, now=sunday + timedelta(minutes=5), **kw) is None
        assert selftests.run_due(session, now=sunday + timedelta(hours=2), **kw) is None
    sent = [c for c in commune.commands_to("a1") if c["k"] == messages.SELFTEST]
    assert [c["a"]["run"] for c in sent] == [run]


def test_the_schedule_setting_is_checked(tmp_path):
    for bad in ("sunday 10:00", "sun 25:00", "sun", "10:00 sun"):
        with pytest.raises(ValueError, match="LOAXA_SELFTEST_SCHEDULE"):
            Settings(data_dir=tmp_path, selftest_schedule=bad)
    assert selftests.parse_schedule("") is None
    daily = selftests.parse_schedule("daily 09:30")
    assert daily is not None and daily.weekday is None


def test_the_programme_schedulers_own_pass_starts_it(commune):
    """No thread of its own: the programme scheduler's jobs include the periodic test."""
    from headend.services.programmes_scheduler import ProgrammeScheduler

    app = commune.app
    commune.report(commune.birth("a1"))
    local = datetime.now(app.state.settings.tz) - timedelta(minutes=1)
    settings = app.state.settings.model_copy(
        update={"selftest_schedule": "daily %s" % local.strftime("%H:%M")})
    scheduler = ProgrammeScheduler(settings=settings, session_factory=app.state.session_factory,
                                   publisher=commune.publisher)
    assert scheduler.run_selftests in scheduler.jobs()
    run = scheduler.run_selftests()
    assert run is not None and scheduler.run_selftests() is None  # once per slot
    assert [c["a"]["run"] for c in commune.commands_to("a1")
            if c["k"] == messages.SELFTEST] == [run]
