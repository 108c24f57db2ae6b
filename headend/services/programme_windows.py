"""Each receiver's schedule window: what it is to play in the next ``programme_window_h``
hours, delivered ahead so that it plays on time from its own clock with its link down.

A window is one signed ``schedule`` command (headend/planning.py ``schedule_fields``, the
simulator's operator uses the same): the approved occurrences of the programmes targeting
the receiver, and the broadcasts already scheduled for it there (an operator's one-off
broadcast; the receiver replaces everything it holds in the window, so the window must hold
everything). The receiver fetches their media ahead within its cache budget
(firmware/fetch_policy.py) and keeps the window in flash.

Double play: an occurrence's item carries the id its broadcast will have
(``occurrence_broadcast_id``, the same function the scheduler makes the broadcast with), so
the ``play`` that broadcast sends ``programme_lead_s`` before air time is one the receiver
already holds: acknowledged, ignored. Its reports name that broadcast, whose deliveries are
the occurrence's per-receiver outcome. The play stays as a second path, for a receiver whose
window did not reach it.

``WindowSender`` sends a receiver its window when what it holds would differ (a programme
approved, edited, skipped, moved, rejected or deleted, a new occurrence sliding into the
window, a broadcast made or cancelled), when the receiver comes back (a new session), and
every ``programme_window_refresh_s`` anyway. Offline receivers get theirs on their return.
"""

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend import planning
from headend.commands import Command, Publisher, chunks, new_command_id, prepare
from headend.db import begin_writing
from headend.errors import ServiceError
from headend.models import (
    DELIVERY_CANCELLED,
    DELIVERY_PLAYED,
    DELIVERY_PLAYING,
    DELIVERY_PREEMPTED,
    PROGRAMME_APPROVED,
    Broadcast,
    Delivery,
    MediaItem,
    Programme,
    Receiver,
)
from headend.services import broadcasts, programmes, programmes_time
from headend.settings import Settings
from protocol import messages

log = logging.getLogger(__name__)

DAY_MS = 86_400_000

# A delivery in one of these is not held by the receiver as something to come.
_CLOSED = (DELIVERY_CANCELLED, DELIVERY_PLAYED, DELIVERY_PREEMPTED, DELIVERY_PLAYING)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@dataclass
class Planned:
    """One play of a window: which broadcast, what media, when, in which class, how loud."""

    bid: str
    media: MediaItem
    at_ms: int
    prio: int
    vol: int | None


def occurrence_broadcast_id(session: Session, programme: Programme,
                            occurrence: programmes.Occurrence) -> str:
    """The id of the broadcast of an approved programme's occurrence: the one made already,
    else the one it will be made with (``planning.occurrence_bid``), past any id a cancelled
    broadcast used (a receiver that was told to stop it would never play it again)."""
    row = occurrence.row
    if row is not None and row.broadcast_id is not None \
            and row.revision == programme.approved_revision:
        return row.broadcast_id
    generation = 0
    while True:
        bid = planning.occurrence_bid(programme.id, _ms(occurrence.slot),
                                      programme.approved_revision or 0, _ms(occurrence.start),
                                      generation)
        made = session.get(Broadcast, bid)
        if made is None or made.cancelled_at is None:
            return bid
        generation += 1


def window_bounds(settings: Settings, now: datetime) -> tuple[datetime, datetime]:
    return now, now + timedelta(hours=settings.programme_window_h)


def approved_in_window(session: Session, *, settings: Settings,
                       now: datetime) -> list[tuple[Programme, list[programmes.Occurrence]]]:
    """The approved programmes with occurrences in the window, and those occurrences."""
    start, end = window_bounds(settings, now)
    out = []
    for programme in session.scalars(select(Programme).where(
            Programme.state == PROGRAMME_APPROVED).order_by(Programme.start_at)):
        due = programmes.occurrences(session, settings=settings, programme=programme,
                                     start=start, end=end, include_skipped=False)
        if due:
            out.append((programme, due))
    return out


def plan(session: Session, *, settings: Settings, now: datetime,
         media_for: Callable[[Programme], MediaItem | None]) -> dict[str, list[Planned]]:
    """Device id -> the plays of its window. ``media_for(programme)``: the programme's
    joined media (None: not built, left out of the windows until it is)."""
    start, end = window_bounds(settings, now)
    out: dict[str, list[Planned]] = defaultdict(list)
    for programme, due in approved_in_window(session, settings=settings, now=now):
        media = media_for(programme)
        if media is None:
            continue
        try:
            receivers = broadcasts.resolve_targets(session, programme.targets)
        except ServiceError as exc:  # its village emptied since it was approved
            log.warning("programme %s targets no receiver: %s", programme.id, exc.message)
            continue
        prio = broadcasts.PRIO_WIRE[programme.priority]
        for occurrence in due:
            if media.expires_at is not None and occurrence.start >= media.expires_at:
                continue  # its bulletin expired by then (services/media.check_not_expired)
            bid = occurrence_broadcast_id(session, programme, occurrence)
            for receiver in receivers:
                out[receiver.id].append(Planned(bid, media, _ms(occurrence.start), prio,
                                                programme.volume))
    # What is already scheduled for each receiver in the window (held by its broadcast).
    for device_id, broadcast in session.execute(
            select(Delivery.device_id, Broadcast)
            .join(Broadcast, Delivery.broadcast_id == Broadcast.id)
            .where(Broadcast.cancelled_at.is_(None), Broadcast.play_at_ms.is_not(None),
                   Broadcast.play_at_ms >= _ms(start), Broadcast.play_at_ms < _ms(end),
                   Delivery.state.not_in(_CLOSED))).all():
        if any(p.bid == broadcast.id for p in out[device_id]):
            continue
        out[device_id].append(Planned(broadcast.id, broadcast.media, broadcast.play_at_ms,
                                      broadcasts.PRIO_WIRE[broadcast.priority],
                                      broadcast.volume))
    return out


def window_args(settings: Settings, receiver: Receiver, planned: list[Planned],
                now: datetime) -> dict:
    """The ``schedule`` arguments of one receiver's window, in renditions it decodes (a play
    of media it cannot decode is left out: its broadcast says "no-codec"), with its zone's
    volume limit (``vmax``), which the receiver enforces."""
    start, end = window_bounds(settings, now)
    codecs = broadcasts.receiver_codecs(receiver)
    plays = []
    for p in planned:
        rendition = planning.rendition_for(codecs, p.media.renditions)
        if rendition is not None:
            plays.append(planning.play_fields(settings, bid=p.bid, item_id=p.media.id,
                                              rendition=rendition, at_ms=p.at_ms, prio=p.prio,
                                              vol=p.vol))
    args = planning.schedule_fields(from_ms=_ms(start), to_ms=_ms(end), plays=plays)
    zone = receiver.zone
    args["vmax"] = zone.volume_limit if zone is not None else None
    early = early_field(settings, zone.early_volume_limit if zone is not None else None, start)
    if early is not None:
        args["early"] = early
    return args


def early_field(settings: Settings, limit: int | None, at: datetime) -> dict | None:
    """The ``schedule``'s ``early``: the site's early-morning hours that begin on ``at``'s
    local day, which the receiver repeats every 24 h, and the zone's limit in them (None:
    the zone has none, or the site no such hours)."""
    if limit is None:
        return None
    hours = programmes_time.hours_on(
        at.astimezone(settings.tz).date(),
        programmes_time.quiet_hours(settings.early_hours_start, settings.early_hours_end),
        settings.tz)
    if hours is None:
        return None
    begin, end = hours
    return {"from": _ms(begin), "len": _ms(end) - _ms(begin), "vmax": limit}


def _digest(args: dict) -> str:
    """What the receiver would hold: the plays and the limits. The window's start slides, and
    so does the early hours' ``from``, by whole days: a new day is not a change."""
    early = args.get("early")
    hours = None if early is None else (early["from"] % DAY_MS, early["len"], early["vmax"])
    return hashlib.sha256(messages.encode([args["items"], args["vmax"], hours])).hexdigest()


class WindowSender:
    """Sends each online receiver its window when it would change (see the module
    docstring). Keeps what it sent in memory: a restarted head-end sends every window once."""

    def __init__(self):
        self._sent: dict[str, tuple[str, tuple, datetime]] = {}

    def send_due(self, session: Session, *, settings: Settings, publisher: Publisher,
                 now: datetime,
                 media_for: Callable[[Programme], MediaItem | None]) -> list[str]:
        """Send the windows that are due; returns the receivers sent one."""
        # Built (the TTS, ffmpeg) and committed before the write lock below is taken.
        for programme, _due in approved_in_window(session, settings=settings, now=now):
            media_for(programme)
        # Then the plan and the signing in one writing transaction: a broadcast committed
        # meanwhile is in the plan, or signed after this window (a higher counter).
        begin_writing(session)
        planned = plan(session, settings=settings, now=now, media_for=media_for)
        commands = []
        keys = {}
        for part in chunks(sorted(_online(session))):
            for receiver in session.scalars(select(Receiver).where(Receiver.id.in_(part))):
                args = window_args(settings, receiver, planned.get(receiver.id, []), now)
                key = (_digest(args), (receiver.session_boot, receiver.session_conn))
                sent = self._sent.get(receiver.id)
                if sent is not None and sent[:2] == key and \
                        now - sent[2] < timedelta(seconds=settings.programme_window_refresh_s):
                    continue
                commands.append(Command(receiver.id, messages.SCHEDULE, args,
                                        new_command_id("win")))
                keys[receiver.id] = key
        if not commands:
            session.rollback()
            return []
        outgoing = prepare(session, site_id=settings.site_id, commands=commands,
                           ttl_s=settings.command_ttl_s, now=_ms(now))
        session.commit()
        publisher.publish_many(outgoing)
        for device_id, key in keys.items():
            self._sent[device_id] = key + (now,)
        return sorted(keys)

    def forget(self, device_id: str) -> None:
        self._sent.pop(device_id, None)


def _online(session: Session) -> list[str]:
    return list(session.scalars(select(Receiver.id).where(Receiver.online.is_(True))))
