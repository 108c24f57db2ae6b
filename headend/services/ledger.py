"""The emergency ledger: an append-only, hash-chained log of who or what sent, approved and
cancelled each emergency, with the CAP identifier when a warning agency's alert is behind it.

Each row holds the previous row's hash (``GENESIS`` for the first) and the SHA-256 of its
own canonical content: its seq, time, event, actor, broadcast, CAP identifier, detail and that
previous hash, as compact JSON with sorted keys. Changing a row breaks its own hash; deleting
one breaks its successor's link (and the seq numbers); only rows appended after the last one
keep the chain whole. ``verify`` walks it and names the first bad row.

What the chain cannot show by itself: the last rows removed together (nothing follows them).
Copy ``verify``'s ``head`` somewhere else now and then (a printed report, a second machine) to
pin the log up to that point.

Rows are appended in the transaction of the change they record (the caller commits), so an
emergency and its ledger row exist together or not at all.
"""

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.db import begin_writing
from headend.models import CAP_ID_LENGTH, LedgerEntry, Site, User, fit_text

GENESIS = "0" * 64
EVENTS = ("emergency.create", "emergency.cancel", "cap.received", "cap.confirm",
          "cap.repeat")


def _content(entry: LedgerEntry) -> bytes:
    return json.dumps({
        "seq": entry.seq, "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "event": entry.event, "actor": entry.actor, "broadcast_id": entry.broadcast_id,
        "cap_identifier": entry.cap_identifier, "detail": entry.detail,
        "prev_hash": entry.prev_hash,
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: LedgerEntry) -> str:
    return hashlib.sha256(_content(entry)).hexdigest()


def append(session: Session, *, event: str, actor: User | str | None,
           broadcast_id: str | None = None, cap_identifier: str | None = None,
           detail: dict[str, Any] | None = None, at: datetime | None = None) -> LedgerEntry:
    """Add the next row to the session (committed with the change it records)."""
    if event not in EVENTS:
        raise ValueError("unknown ledger event %r" % event)
    # One appender at a time, so two emergencies at once do not both extend the same last
    # row: SQLite's write lock (begin_writing), PostgreSQL's lock on the site's row, both held
    # to the commit; the unique seq refuses whatever would still slip through.
    begin_writing(session)
    session.execute(select(Site.id).order_by(Site.id).limit(1).with_for_update())
    last = session.execute(select(LedgerEntry.seq, LedgerEntry.hash)
                           .order_by(LedgerEntry.seq.desc()).limit(1)).first()
    at = (at or datetime.now(UTC)).astimezone(UTC)
    entry = LedgerEntry(
        seq=1 if last is None else last.seq + 1,
        # Stored naive and read back aware: microseconds survive both databases.
        at=at, event=event,
        actor=fit_text(actor.username if isinstance(actor, User) else actor or "", 64) or None,
        broadcast_id=broadcast_id,
        cap_identifier=fit_text(cap_identifier, CAP_ID_LENGTH) if cap_identifier else None,
        detail=json.loads(json.dumps(detail or {}, default=str)),  # as the JSON column keeps it
        prev_hash=GENESIS if last is None else last.hash)
    entry.hash = entry_hash(entry)
    session.add(entry)
    session.flush()
    return entry


def verify(session: Session) -> dict[str, Any]:
    """Walk the ledger in order: ``{"ok", "rows", "head", "first_bad": {"seq", "id",
    "problem"} | None}``; ``problem`` is "hash" (the row was changed), "link" (the row before
    it was changed or removed) or "seq" (a row is missing)."""
    previous_hash, expected_seq, rows = GENESIS, 1, 0
    for entry in session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)):
        problem = None
        if entry.seq != expected_seq:
            problem = "seq"
        elif entry.prev_hash != previous_hash:
            problem = "link"
        elif entry_hash(entry) != entry.hash:
            problem = "hash"
        if problem:
            return {"ok": False, "rows": rows, "head": previous_hash,
                    "first_bad": {"seq": entry.seq, "id": entry.id, "problem": problem}}
        previous_hash, expected_seq, rows = entry.hash, entry.seq + 1, rows + 1
    return {"ok": True, "rows": rows, "head": previous_hash, "first_bad": None}


def list_entries(session: Session, *, limit: int = 200) -> list[LedgerEntry]:
    return list(session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq.desc())
                                .limit(limit)))
