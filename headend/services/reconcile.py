"""Reconciliation: closing what can no longer be true after a restart, the receiver's or the
head-end's, from what the receivers say (births, heartbeats) and the head-end's own runs.

- A birth of a new boot: what was "playing" on that receiver stopped when it restarted; the
  delivery is interrupted ("receiver-restarted") and its open play-log row closed the same.
- A heartbeat names the broadcast playing (``play``). A "playing" delivery it contradicts is
  interrupted at once if the play started before the receiver's current boot (the heartbeat's
  uptime says when that was), else after ``CONTRADICTION_GRACE`` (its end report may be on its
  way: the outbox sends events in order after a reconnect), as "end-unreported".
- A play whose whole length and the report grace are over is interrupted ("end-unreported")
  even if nothing more is heard from the receiver: no delivery stays "playing" for ever.
- The head-end records its runs (``HeadendRun``): a broadcast whose air time fell while it
  was down and that no report settled is concluded "headend-down", not "no-report". For
  ``STARTUP_GRACE`` after a start nothing is concluded: the broker delivers the reports it
  kept for the head-end's persistent session first.

The receiver's own late report corrects every one of these conclusions (deliveries.py).
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.commands import chunks
from headend.models import (
    DELIVERY_INTERRUPTED,
    DELIVERY_PLAYING,
    Broadcast,
    Delivery,
    HeadendRun,
    MediaItem,
)
from headend.services import deliveries
from headend.services.playlog import close_open_plays

STARTUP_GRACE = timedelta(seconds=15)
CONTRADICTION_GRACE = timedelta(seconds=10)
# Event times are the receiver's synced clock, heartbeat uptimes whole seconds: a margin
# so that neither makes a current play look older than the receiver's boot.
CLOCK_MARGIN = timedelta(seconds=2)


@dataclass
class Heard:
    """What one heartbeat says: the broadcast playing (None: nothing), when it arrived, and
    when the receiver booted by its uptime."""

    play: str | None
    at: datetime
    booted_at: datetime


def interrupt(session: Session, delivery: Delivery, event: str, *, stopped_at: datetime,
              stats: Counter | None = None) -> bool:
    """Close a playing delivery the head-end knows is no longer playing, and its open play-log
    row, with ``event``'s reason; ``stopped_at`` is the best estimate of when it stopped."""
    if delivery.started_at is not None and stopped_at < delivery.started_at:
        stopped_at = delivery.started_at
    if not deliveries.move(delivery, event, at=stopped_at, stats=stats):
        return False
    close_open_plays(session, device_id=delivery.device_id,
                     broadcast_id=delivery.broadcast_id, outcome=DELIVERY_INTERRUPTED,
                     reason=delivery.reason, at=stopped_at)
    return True


def receiver_restarted(session: Session, *, device_id: str, last_heard: datetime | None,
                       stats: Counter | None = None) -> set[str]:
    """A birth of a new boot of ``device_id``: what played on it stopped with the restart,
    at the latest when the head-end last heard from it. Returns the broadcasts touched."""
    session.flush()  # the batch so far (a start in it) is what the query must see
    touched = set()
    for delivery in session.scalars(select(Delivery).where(
            Delivery.device_id == device_id, Delivery.state == DELIVERY_PLAYING)):
        stopped = last_heard or delivery.started_at or delivery.updated_at
        if interrupt(session, delivery, deliveries.RECEIVER_RESTARTED, stopped_at=stopped,
                     stats=stats):
            touched.add(delivery.broadcast_id)
    return touched


def check_heartbeats(session: Session, *, heard: dict[str, Heard],
                     stats: Counter | None = None) -> set[str]:
    """Hold the "playing" deliveries of these receivers against their heartbeats."""
    touched = set()
    for part in chunks(sorted(heard)):
        for delivery in session.scalars(select(Delivery).where(
                Delivery.device_id.in_(part), Delivery.state == DELIVERY_PLAYING)):
            beat = heard[delivery.device_id]
            if delivery.broadcast_id == beat.play:
                delivery.contradicted_at = None
                continue
            started = delivery.started_at
            if started is not None and started > beat.at - CLOCK_MARGIN:
                continue  # the heartbeat left before the start was reported
            if started is not None and started < beat.booted_at - CLOCK_MARGIN:
                # Started in an earlier boot (its start came late, from the outbox).
                if interrupt(session, delivery, deliveries.RECEIVER_RESTARTED,
                             stopped_at=beat.booted_at, stats=stats):
                    touched.add(delivery.broadcast_id)
            elif delivery.contradicted_at is None:
                delivery.contradicted_at = beat.at
            elif beat.at - delivery.contradicted_at >= CONTRADICTION_GRACE:
                if interrupt(session, delivery, deliveries.END_UNREPORTED,
                             stopped_at=delivery.contradicted_at, stats=stats):
                    touched.add(delivery.broadcast_id)
    return touched


def close_unreported(session: Session, *, now: datetime,
                     stats: Counter | None = None) -> set[str]:
    """Interrupt "playing" deliveries that cannot still be playing: contradicted by heartbeats
    for longer than the grace, or started longer ago than their length and the report grace.
    Returns the broadcasts touched."""
    touched = set()
    for delivery, duration_ms in session.execute(
            select(Delivery, MediaItem.duration_ms)
            .join(Broadcast, Delivery.broadcast_id == Broadcast.id)
            .join(MediaItem, Broadcast.media_id == MediaItem.id)
            .where(Delivery.state == DELIVERY_PLAYING)).all():
        stopped = None
        if delivery.contradicted_at is not None and (
                now - delivery.contradicted_at >= CONTRADICTION_GRACE):
            stopped = delivery.contradicted_at
        elif delivery.started_at is not None:
            end = delivery.started_at + timedelta(milliseconds=duration_ms)
            if now > end + deliveries.REPORT_GRACE:
                stopped = end
        if stopped is not None and interrupt(session, delivery, deliveries.END_UNREPORTED,
                                             stopped_at=stopped, stats=stats):
            touched.add(delivery.broadcast_id)
    return touched


# -- the head-end's own runs ------------------------------------------------------------------

def start_run(session: Session, *, now: datetime) -> int:
    """Record that the head-end's MQTT service starts now; returns the run's id."""
    run = HeadendRun(started_at=now, alive_at=now)
    session.add(run)
    session.flush()
    return run.id


def mark_alive(session: Session, *, run_id: int, now: datetime) -> None:
    run = session.get(HeadendRun, run_id)
    if run is not None and run.alive_at < now:
        run.alive_at = now


def latest_run(session: Session) -> HeadendRun | None:
    return session.scalar(select(HeadendRun).order_by(HeadendRun.id.desc()).limit(1))


def starting_up(session: Session, *, now: datetime) -> bool:
    """Within STARTUP_GRACE of the head-end's start: reports kept by the broker still arrive."""
    run = latest_run(session)
    return run is not None and run.started_at <= now < run.started_at + STARTUP_GRACE


def headend_was_down(session: Session, *, start: datetime, end: datetime) -> bool:
    """True if no recorded run of the head-end covered [start, end]. Before the first run
    recorded (no MQTT service here, or a head-end older than the runs) nothing is known."""
    first = session.scalar(select(HeadendRun.started_at).order_by(HeadendRun.id).limit(1))
    if first is None or end < first:
        return False
    covering = session.scalar(select(HeadendRun.id).where(
        HeadendRun.started_at <= start, HeadendRun.alive_at >= end).limit(1))
    return covering is None
