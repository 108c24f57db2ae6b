"""Live sessions in the database (``live_sessions``), so a head-end restart finds them.

    save(db, live)                 # with the transaction of each change (made, sent, ended)
    load(db, keep_ended=50)        # at start-up: those not ended, and the newest ended ones

A row holds what the session needs to be listed, ended or resumed: its source, targets and
receivers (with their codec and boot counter), the bid now and who was sent it, its times.
Its streams' keys are not kept: a resumed relay makes new streams (headend/live/service.py).
"""

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.live.session import ENDED, LiveSession, LiveTarget
from headend.models import LiveSessionRecord
from protocol import messages


def save(db: Session, live: LiveSession) -> None:
    """Write the session as it is now (added or updated; the caller commits)."""
    row = db.get(LiveSessionRecord, live.id)
    if row is None:
        row = LiveSessionRecord(id=live.id, created_at=live.created_at)
        db.add(row)
    row.url = live.url
    row.targets = live.targets
    row.receivers = [{"id": t.device_id, "codec": t.codec, "online": t.online, "link": t.link,
                      "name": t.name, "zone": t.zone, "boot": t.boot} for t in live.receivers]
    row.state = live.state
    row.reason = live.reason
    row.bid = live.bid
    row.sent = dict(live.sent)
    row.jitter_ms = live.jitter_ms
    row.fallbacks = live.fallbacks
    row.resumes = live.resumes
    row.created_by = live.created_by
    row.started_at = live.started_at
    row.ended_at = live.ended_at
    row.prio = live.prio
    row.until = (None if live.until_ms is None
                 else datetime.fromtimestamp(live.until_ms / 1000, UTC))


def session_of(row: LiveSessionRecord) -> LiveSession:
    """The session a row describes, without streams (a resumed one makes new ones)."""
    receivers = [LiveTarget(t["id"], t.get("codec"), bool(t.get("online")), t.get("link"),
                            t.get("name"), t.get("zone"), t.get("boot"))
                 for t in row.receivers or []]
    return LiveSession(
        id=row.id, targets=row.targets or {}, receivers=receivers, created_at=row.created_at,
        created_by=row.created_by, jitter_ms=row.jitter_ms,
        until_ms=None if row.until is None else int(row.until.timestamp() * 1000),
        state=row.state, reason=row.reason, started_at=row.started_at, ended_at=row.ended_at,
        sent=dict(row.sent or {}), stop_sent=row.state == ENDED, url=row.url,
        fallbacks=row.fallbacks or 0, resumes=row.resumes or 0,
        prio=messages.PRIO_LIVE if row.prio is None else row.prio)


def load(db: Session, *, keep_ended: int) -> list[LiveSession]:
    """Every session not ended, and the ``keep_ended`` newest ended ones."""
    open_rows = db.scalars(select(LiveSessionRecord).where(LiveSessionRecord.state != ENDED))
    ended = db.scalars(select(LiveSessionRecord).where(LiveSessionRecord.state == ENDED)
                       .order_by(LiveSessionRecord.created_at.desc()).limit(keep_ended))
    return [session_of(row) for row in [*open_rows, *ended]]
