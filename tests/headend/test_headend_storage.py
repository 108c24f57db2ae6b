"""Where SQLite and PostgreSQL differ, the head-end must not: the schema the migrations build,
strings longer than their column or holding a NUL, duplicate reports, and times. Each test
runs on both (the ``database_url`` fixture); SQLite forgives what PostgreSQL refuses, so these
are the bugs that would only show up in a province's head-end."""

import threading
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from headend.models import Base, DeviceEvent
from protocol import messages
from protocol.signing import key_from_hex


def test_the_migrations_build_exactly_the_schema_of_the_models(app):
    with app.state.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []


def test_a_receiver_reporting_overlong_or_nul_strings_does_not_lose_the_batch(commune):
    """Peer input: a firmware string longer than its column, or with a NUL byte, must not
    fail the transaction that also holds every other receiver's reports."""
    body = messages.birth("a1", 1, 1, "9" * 300, {"codecs": ["mp3"]}, "4g\x00-" + "x" * 100)
    odd = commune.sealed("status", "a1", body)  # the receiver's own, so it is authentic
    failed = commune.event("a1", "fetch_failed", item="m" * 100, reason="\x00" + "e" * 500)
    commune.report(odd, failed, commune.birth("a2"))
    devices = {d["id"]: d for d in commune.client.get("/api/v1/devices",
                                                      headers=commune.headers).json()}
    assert devices["a1"]["online"] and devices["a2"]["online"]
    assert devices["a1"]["firmware"].startswith("999")
    assert "\x00" not in devices["a1"]["link"]


def test_an_operator_typing_an_overlong_or_nul_name_gets_a_4xx(commune):
    for bad in ("x" * 201, "Thôn\x00 1"):
        r = commune.client.post("/api/v1/zones", json={"id": "thon-9", "name": bad},
                                headers=commune.headers)
        assert r.status_code == 422, r.text
        r = commune.client.post("/api/v1/devices", json={"name": bad, "zone": "thon-1"},
                                headers=commune.headers)
        assert r.status_code == 422, r.text
        r = commune.client.patch("/api/v1/devices/a1", json={"name": bad},
                                 headers=commune.headers)
        assert r.status_code == 422, r.text
    media = commune.upload(name="b" * 400 + ".wav")
    assert media["title"] == "b" * 300


def test_a_repeated_event_is_stored_once_in_one_batch_and_across_batches(commune, app):
    commune.report(commune.birth("a1"))
    started = commune.event("a1", "started", seq=5, bid="bx", item="m", at=1)
    commune.report(started, started)
    result = commune.report(started)
    assert result.stats["duplicate_event"] == 1
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(DeviceEvent)) == 1


def test_times_are_stored_in_utc_and_come_back_as_the_same_instant(commune, app):
    media = commune.upload()
    start = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=123000)
    local = start.astimezone(app.state.settings.tz)  # what an operator in Hà Nội types
    r = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"zones": ["thon-1"]}, "start_at": local.isoformat()})
    assert r.status_code == 201, r.text
    shown = datetime.fromisoformat(r.json()["start_at"])
    assert shown == start and shown.utcoffset() is not None
    with app.state.engine.connect() as conn:
        stored = conn.execute(text("SELECT start_at FROM broadcasts")).scalar_one()
    if isinstance(stored, str):  # SQLite keeps the text SQLAlchemy wrote
        stored = datetime.fromisoformat(stored)
    assert stored == start.replace(tzinfo=None)  # naive, in UTC, milliseconds kept


def test_commands_signed_at_the_same_time_for_one_receiver_never_share_a_counter(commune, app):
    """The API and the ingest thread sign commands concurrently; a receiver refuses a counter
    it has seen, so two commands with one counter lose one. Under PostgreSQL's default
    isolation two transactions read the same last counter unless the receiver is locked."""
    from headend.commands import Command, prepare

    settings = app.state.settings
    now = 1_800_000_000_000  # one fixed clock: only the stored counter orders the commands
    key = key_from_hex(commune.keys["a1"])
    counters, errors = [], []

    def sign_some():
        try:
            for _ in range(8):
                with app.state.session_factory() as session:
                    (out,) = prepare(session, site_id=settings.site_id, ttl_s=60, now=now,
                                     commands=[Command("a1", "volume", {"vol": 50})])
                    session.commit()
                counters.append(messages.open_command(key, out.payload, "a1")["ctr"])
        except Exception as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=sign_some) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(counters) == 48
    assert len(set(counters)) == 48
