"""The emergency ledger: every emergency sent or cancelled (here through the API; the pages
and CAP alerts go through the same service) is a hash-chained row, and changing or removing
a row is found by the verification, while honest rows appended later verify."""

from conftest import login
from sqlalchemy import delete, select, update

from headend.models import LedgerEntry
from headend.services import ledger


def _two_emergencies(commune):
    """One emergency sent and cancelled, then another: three ledger rows."""
    commune.report(*(commune.birth(d) for d in ("a1", "b1")))
    media = commune.upload()
    sent = []
    for targets in ({"zones": ["thon-1"]}, None):
        r = commune.client.post("/api/v1/emergency", headers=commune.headers,
                                json={"media_id": media["id"], "targets": targets})
        assert r.status_code == 201, r.text
        sent.append(r.json()["id"])
        if len(sent) == 1:
            assert commune.client.delete("/api/v1/broadcasts/" + sent[0],
                                         headers=commune.headers).status_code == 200
    return sent


def _verify(client, headers):
    r = client.get("/api/v1/emergency/ledger/verify", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_every_emergency_and_cancel_is_a_chained_row_that_verifies(commune, session):
    first, second = _two_emergencies(commune)
    rows = list(session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))
    assert [(r.seq, r.event, r.broadcast_id, r.actor) for r in rows] == [
        (1, "emergency.create", first, "admin"), (2, "emergency.cancel", first, "admin"),
        (3, "emergency.create", second, "admin")]
    assert rows[0].prev_hash == ledger.GENESIS and rows[1].prev_hash == rows[0].hash
    assert rows[0].detail["targets"] == {"zones": ["thon-1"]}
    result = _verify(commune.client, commune.headers)
    assert result == {"ok": True, "rows": 3, "head": rows[2].hash, "first_bad": None}
    # A normal broadcast is not an emergency: no row.
    media = commune.upload()
    commune.client.post("/api/v1/broadcasts", headers=commune.headers,
                        json={"media_id": media["id"], "targets": {"all": True}})
    assert _verify(commune.client, commune.headers)["rows"] == 3


def test_a_modified_row_is_found(commune, session):
    first, _ = _two_emergencies(commune)
    # Someone rewrites who sent the first emergency, straight in the database.
    session.execute(update(LedgerEntry).where(LedgerEntry.seq == 1).values(actor="operator"))
    session.commit()
    result = _verify(commune.client, commune.headers)
    assert not result["ok"] and result["rows"] == 0
    assert result["first_bad"]["seq"] == 1 and result["first_bad"]["problem"] == "hash"


def test_a_modified_row_with_its_hash_recomputed_breaks_the_next_link(commune, session):
    _two_emergencies(commune)
    row = session.scalar(select(LedgerEntry).where(LedgerEntry.seq == 2))
    row.detail = {"stopped": 0}
    row.hash = ledger.entry_hash(row)  # a careful forger fixes the row's own hash
    session.commit()
    result = _verify(commune.client, commune.headers)
    assert result["first_bad"] == {"seq": 3, "id": result["first_bad"]["id"], "problem": "link"}
    assert result["rows"] == 2


def test_a_deleted_row_is_found(commune, session):
    _two_emergencies(commune)
    session.execute(delete(LedgerEntry).where(LedgerEntry.seq == 2))  # the cancel, hidden
    session.commit()
    result = _verify(commune.client, commune.headers)
    assert not result["ok"] and result["first_bad"]["seq"] == 3
    assert result["first_bad"]["problem"] == "seq" and result["rows"] == 1


def test_an_honest_row_appended_later_verifies(commune, session):
    _two_emergencies(commune)
    head = _verify(commune.client, commune.headers)["head"]
    entry = ledger.append(session, event="cap.confirm", actor="operator",
                          cap_identifier="KTTV-NB-2026-0009", detail={"zones": ["thon-1"]})
    session.commit()
    assert entry.seq == 4 and entry.prev_hash == head
    result = _verify(commune.client, commune.headers)
    assert result["ok"] and result["rows"] == 4 and result["head"] == entry.hash


def test_only_an_admin_reads_the_ledger(commune, users):
    _two_emergencies(commune)
    for role in ("operator", "technician", "viewer"):
        headers = login(commune.client, role)
        assert commune.client.get("/api/v1/emergency/ledger/verify",
                                  headers=headers).status_code == 403
        assert commune.client.get("/api/v1/emergency/ledger", headers=headers).status_code == 403
    rows = commune.client.get("/api/v1/emergency/ledger", headers=commune.headers).json()
    assert [r["seq"] for r in rows] == [3, 2, 1]


def test_two_appends_at_once_chain_one_after_the_other(app):
    """The second appender waits for the first's commit (SQLite's write lock, PostgreSQL's
    row lock), so both rows land on one chain, neither on the same predecessor."""
    import threading

    first = app.state.session_factory()
    ledger.append(first, event="emergency.create", actor="operator", broadcast_id="b1")
    errors = []

    def second():
        with app.state.session_factory() as session:
            try:
                ledger.append(session, event="emergency.create", actor="admin",
                              broadcast_id="b2")
                session.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert not thread.is_alive() and errors == []
    with app.state.session_factory() as session:
        result = ledger.verify(session)
        order = [e.broadcast_id for e in reversed(ledger.list_entries(session))]
    assert result["ok"] and result["rows"] == 2 and sorted(order) == ["b1", "b2"]
