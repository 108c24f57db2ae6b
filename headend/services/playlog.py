"""Proof of play (nhật ký phát thanh): what each receiver reported playing."""

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.models import REASON_DETAIL_LENGTH, PlayLog, fit_text

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


# Rows the head-end writes itself, not from a receiver's report: what a relay's stream carried
# instead of its source (the fallback during dead air). The receiver's own row for the stream
# says it was playing; this one says what it heard then, and why.
HEADEND_EPOCH = -1
FALLBACK = "fallback"


def open_fallback(session: Session, *, device_ids: list[str], broadcast_id: str, item: str,
                  reason: str, detail: str | None, at: datetime) -> None:
    """A fallback starts on the stream ``broadcast_id`` at ``at`` (when receivers hear it)."""
    seq = int(at.timestamp() * 1_000_000)
    for device_id in device_ids:
        session.add(PlayLog(device_id=device_id, epoch=HEADEND_EPOCH, broadcast_id=broadcast_id,
                            item=item[:48], seq=seq, started_at=at, outcome=FALLBACK,
                            reason=reason, reason_detail=fit_text(detail, REASON_DETAIL_LENGTH)
                            if detail else None))


def close_fallback(session: Session, *, broadcast_id: str, at: datetime) -> int:
    """The fallback on ``broadcast_id`` ends at ``at`` (the source is back, or the relay
    ended); returns the rows closed."""
    closed = 0
    for entry in session.scalars(select(PlayLog).where(
            PlayLog.broadcast_id == broadcast_id, PlayLog.epoch == HEADEND_EPOCH,
            PlayLog.ended_at.is_(None))):
        entry.ended_at = at
        if entry.started_at is not None:
            entry.played_ms = max(0, int((at - entry.started_at).total_seconds() * 1000))
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
