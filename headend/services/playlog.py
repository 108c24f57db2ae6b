"""Proof of play (nhật ký phát thanh): what each receiver reported playing."""

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.models import PlayLog

CSV_COLUMNS = ("device_id", "broadcast_id", "item", "scheduled_at", "started_at", "ended_at",
               "outcome", "played_ms", "skip_ms", "reason", "reason_detail")


def list_playlog(session: Session, *, device_id: str | None = None,
                 broadcast_id: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, limit: int = 1000) -> list[PlayLog]:
    """Entries, newest first, filtered by receiver, broadcast and start time range."""
    query = select(PlayLog).order_by(PlayLog.started_at.desc(), PlayLog.id.desc()).limit(limit)
    if device_id:
        query = query.where(PlayLog.device_id == device_id)
    if broadcast_id:
        query = query.where(PlayLog.broadcast_id == broadcast_id)
    if since:
        query = query.where(PlayLog.started_at >= since)
    if until:
        query = query.where(PlayLog.started_at < until)
    return list(session.scalars(query))


def close_open_plays(session: Session, *, device_id: str, broadcast_id: str, outcome: str,
                     reason: str | None, at: datetime) -> int:
    """Close the rows of ``broadcast_id`` on ``device_id`` still open (the head-end concluded
    the play is over: a restart, no end report); returns how many. A later report from the
    receiver corrects such a row (headend/mqtt/ingest.py)."""
    closed = 0
    for entry in session.scalars(select(PlayLog).where(
            PlayLog.device_id == device_id, PlayLog.broadcast_id == broadcast_id,
            PlayLog.outcome.is_(None))):
        entry.outcome = outcome
        entry.reason = reason
        entry.ended_at = at
        closed += 1
    return closed


def playlog_csv(entries: list[PlayLog], *, tz: ZoneInfo) -> str:
    """CSV for a periodic report; times in the station's local time zone, ISO 8601."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        row = []
        for column in CSV_COLUMNS:
            value = getattr(entry, column)
            if isinstance(value, datetime):
                value = value.astimezone(tz).isoformat(timespec="milliseconds")
            row.append("" if value is None else value)
        writer.writerow(row)
    return out.getvalue()
