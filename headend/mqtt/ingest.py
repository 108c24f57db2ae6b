"""Apply a batch of receiver reports (births, deaths, heartbeats, events) to the database.

No network here: the MQTT service hands over the payloads as they came and gets back the
commands that follow from them (what a returning receiver missed). Everything a receiver
sends is authenticated with its key and validated first; a forged, replayed or malformed
report is counted and dropped, never raised, and changes nothing: not even the receiver's
"last seen", which only a report that proves the receiver is alive now moves.
"""

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from headend.commands import Command, chunks
from headend.keystore import open_stored
from headend.logbudget import LogBudget
from headend.models import (
    DELIVERY_CANCELLED,
    DELIVERY_FAILED,
    DELIVERY_INTERRUPTED,
    DELIVERY_PENDING,
    DELIVERY_PLAYED,
    DELIVERY_PREEMPTED,
    Broadcast,
    Delivery,
    DeviceEvent,
    DeviceMedia,
    PlayLog,
    Receiver,
    fit_text,
)
from headend.services import deliveries, pinned, reconcile, rotation, selftests
from headend.services import telemetry as telemetry_history
from headend.services.broadcasts import commands_for_returning, finish_overdue
from headend.services.deliveries import refresh_states
from headend.settings import Settings
from protocol import messages, presence, topics
from protocol.errors import ProtocolError
from protocol.signing import key_from_hex, open_with_keys

log = logging.getLogger(__name__)

END_STATE = {messages.END_FINISHED: DELIVERY_PLAYED, messages.END_PREEMPTED: DELIVERY_PREEMPTED,
             messages.END_CANCELLED: DELIVERY_CANCELLED, messages.END_FAILED: DELIVERY_FAILED}
# Dropped reports are counted in the stats; the log gets a few lines a minute and a summary,
# so a flood of bad messages cannot flood the log.
_dropped_log = LogBudget(log, lines=5, per_s=60.0)
_rejected_log = LogBudget(log, lines=5, per_s=60.0)  # receivers refusing what they were sent


@dataclass
class Report:
    """One message from a receiver, as the MQTT service received it."""

    leaf: str           # status | hb | evt | treq
    device_id: str
    payload: bytes
    received_ms: int
    mid: int = 0
    qos: int = 0
    generation: int = 0  # which broker connection it came on (acks go to that one only)


@dataclass
class BatchResult:
    commands: list[Command] = field(default_factory=list)
    time_requests: list[Report] = field(default_factory=list)  # waiting for a key lookup
    stats: Counter = field(default_factory=Counter)
    went_offline: list[str] = field(default_factory=list)
    came_online: list[str] = field(default_factory=list)
    rekeyed: list[str] = field(default_factory=list)  # their key changed (a rotation ended)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class _Batch:
    """State of one batch while it is applied (all lookups done once per batch)."""

    def __init__(self, session: Session, settings: Settings, now: datetime):
        self.session = session
        self.settings = settings
        self.now = now
        self.result = BatchResult()
        self.receivers: dict[str, Receiver] = {}
        self.returning: dict[str, Receiver] = {}
        self.rebooted: set[str] = set()  # receivers whose birth showed a new boot
        self.heard: dict[str, reconcile.Heard] = {}  # the latest heartbeat's "play", per receiver
        self.touched: set[str] = set()

    def drop(self, report: Report, reason: str) -> None:
        self.result.stats["malformed"] += 1
        self.result.stats["malformed." + reason] += 1
        # The payload is peer input and is not logged; the topic and reason say enough.
        _dropped_log.warning(reason, "dropped %s from %s: %s", report.leaf, report.device_id,
                             reason)


def apply_batch(session: Session, *, settings: Settings, reports: list[Report],
                now: datetime | None = None) -> BatchResult:
    """Apply ``reports`` in arrival order inside ``session`` (the caller commits)."""
    batch = _Batch(session, settings, now or datetime.now(UTC))
    ids = sorted({r.device_id for r in reports})
    for part in chunks(ids):
        for receiver in session.scalars(select(Receiver).where(Receiver.id.in_(part))):
            batch.receivers[receiver.id] = receiver
    decoded = []
    for report in reports:
        found = batch.receivers.get(report.device_id)
        if found is None:
            batch.result.stats["unknown_device"] += 1
            if report.leaf == topics.TIME_REQUEST:
                continue
            batch.drop(report, "unknown-device")
            continue
        if report.leaf == topics.TIME_REQUEST:
            batch.result.time_requests.append(report)
            continue
        try:
            msg = _validated(report.leaf, _open_report(batch, found, report))
        except ProtocolError as exc:
            batch.drop(report, exc.reason)
            continue
        decoded.append((report, found, msg))
    events = [(r, rc, m) for r, rc, m in decoded if r.leaf == topics.EVENT]
    event_handler = _Events(batch, events)
    event_handler.preload()
    with session.no_autoflush:  # queries inside the loop must not flush row by row
        _apply_all(batch, decoded, event_handler)
    event_handler.write()
    session.flush()
    if batch.heard:
        batch.touched |= reconcile.check_heartbeats(session, heard=batch.heard,
                                                    stats=batch.result.stats)
    for receiver in batch.returning.values():
        commands, touched = commands_for_returning(session, settings=settings, receiver=receiver,
                                                   now=batch.now,
                                                   rebooted=receiver.id in batch.rebooted)
        batch.result.commands += commands
        batch.touched |= touched
    batch.result.commands += pinned.commands_for_birth(session, settings=settings,
                                                       receivers=list(batch.returning.values()))
    if batch.touched:
        refresh_states(session, broadcast_ids=batch.touched, now=batch.now)
    return batch.result


def _open_report(batch: _Batch, receiver: Receiver, report: Report) -> dict[str, Any]:
    """The report opened with the receiver's key, or during a rotation with the new one: the
    first report under the new key ends the rotation (headend/services/rotation.py). One that
    opens under the old key while a rotation is pending is from a receiver that has not taken
    the offer: its birth gets the offer again."""
    session = batch.session
    msg, by_pending = open_with_keys(
        messages.open_report, key_from_hex(open_stored(session, receiver.id, receiver.device_key)),
        rotation.pending_key(session, receiver), report.leaf, report.payload)
    if by_pending:
        batch.result.commands.append(rotation.confirm(session, settings=batch.settings,
                                                      receiver=receiver))
        batch.result.rekeyed.append(receiver.id)
        return msg
    if receiver.rekey_id is not None and report.leaf == topics.STATUS \
            and msg.get("k") == messages.BIRTH:
        batch.result.commands.append(rotation.offer_command(session, receiver))
    return msg


def _finite(msg: Any) -> bool:
    """No NaN or Infinity anywhere: Python's json reads them, PostgreSQL's json refuses them."""
    todo = [msg]
    while todo:  # iterative: json.loads already allowed nesting near the recursion limit
        value = todo.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
    return True


def _validated(leaf: str, msg: dict[str, Any]) -> dict[str, Any]:
    """An authentic report checked against its kind's field table (protocol/messages.py),
    before anything looks at it; only the fields the table names, each checked, go on."""
    if not _finite(msg):
        raise ProtocolError("bad-field", "not a finite number")
    if leaf == topics.HEARTBEAT:
        return messages.check_heartbeat(msg)
    if leaf == topics.EVENT:
        return messages.check_event(msg)
    return messages.check_status(msg)


def _apply_all(batch: _Batch, decoded, event_handler) -> None:
    for report, receiver, msg in decoded:
        try:
            if report.leaf == topics.STATUS:
                alive = _status(batch, receiver, msg)
            elif report.leaf == topics.HEARTBEAT:
                alive = _heartbeat(batch, receiver, msg)
                if alive:
                    _heard(batch, receiver, msg, _dt(report.received_ms))
            else:
                alive = event_handler.apply(report, receiver, msg)
        except ProtocolError as exc:
            batch.drop(report, exc.reason)
            continue
        if alive:
            receiver.last_seen = max(receiver.last_seen or batch.now, _dt(report.received_ms))


# -- presence ------------------------------------------------------------------------------

def _session_key(receiver: Receiver) -> tuple[int, int] | None:
    if receiver.session_boot is None:
        return None
    return (receiver.session_boot, receiver.session_conn or 0)


def _come_online(batch: _Batch, receiver: Receiver) -> None:
    if not receiver.online:
        receiver.online = True
        receiver.online_since = batch.now
        batch.result.came_online.append(receiver.id)
    receiver.offline_reason = None
    batch.returning[receiver.id] = receiver


def _status(batch: _Batch, receiver: Receiver, msg: dict[str, Any]) -> bool:
    """Apply a birth or a death; True if it shows the receiver alive now (a birth)."""
    if msg.get("dev") != receiver.id:
        raise ProtocolError("wrong-device")
    session = messages.session_of(msg)
    known = _session_key(receiver)
    kind = msg.get("k")
    if kind == messages.BIRTH:
        # A birth is only ever sent by a live connection (or retained from the latest one), so
        # it is always current; a lower session than known means the board was reset or
        # re-flashed (its boot counter restarted), not an old message.
        # The same session as the one whose death we saw cannot connect again either.
        reset = known is not None and (session < known or (
            session == known and not receiver.online and receiver.offline_reason == "link-lost"))
        if reset:
            receiver.event_epoch = (receiver.event_epoch or 0) + 1
            batch.result.stats["board_reset"] += 1
            log.warning("receiver %s restarted its counters (re-flashed or replaced?)",
                        receiver.id)
        if known is not None and (reset or session[0] > known[0]):
            # A new boot: nothing it played before can still be playing.
            batch.rebooted.add(receiver.id)
            batch.result.stats["receiver_restarted"] += 1
            batch.touched |= reconcile.receiver_restarted(
                batch.session, device_id=receiver.id, last_heard=receiver.last_seen,
                stats=batch.result.stats)
        caps = msg.get("caps")
        receiver.capabilities = caps if isinstance(caps, dict) else None
        fw, link = msg.get("fw"), msg.get("link")
        receiver.firmware = fit_text(fw, 64) if isinstance(fw, str) else None
        receiver.link = fit_text(link, 16) if isinstance(link, str) else None
        # This boot's nonce for a reset of its counter floor (checked: 64 hex digits, or gone).
        nonce = msg.get("nonce")
        receiver.reset_nonce = nonce if isinstance(nonce, str) else None
        ota = {k: msg[k] for k in ("ota", "ota_ver", "ota_why") if isinstance(msg.get(k), str)}
        receiver.ota = ota or None  # the last update's outcome (headend/services/firmware.py)
        new_session = session != known
        receiver.session_boot, receiver.session_conn = session
        batch.result.stats[messages.BIRTH] += 1
        if new_session or not receiver.online:
            _come_online(batch, receiver)
        return True
    if kind == messages.DEATH:
        if known is not None and session < known:
            # The will of an older connection, published after the receiver already came
            # back: it must not mark a live receiver offline.
            batch.result.stats["stale_death"] += 1
            return False
        batch.result.stats[messages.DEATH] += 1
        receiver.session_boot, receiver.session_conn = session
        if receiver.online:
            batch.result.went_offline.append(receiver.id)
        receiver.online = False
        receiver.offline_reason = "link-lost"
        batch.returning.pop(receiver.id, None)
        return False
    raise ProtocolError("bad-field", "k")


def _heartbeat(batch: _Batch, receiver: Receiver, msg: dict[str, Any]) -> bool:
    """Keep the heartbeat's checked telemetry; True if it is a new one of the session we know.

    A heartbeat of an older session, or one of this session that is not later than the last
    (its uptime did not grow: a copy replayed by somebody holding the receiver's broker
    password), is refused: it would keep a dead receiver "online" and its old figures.
    """
    telemetry = msg  # checked: only the known fields
    session = messages.session_of(telemetry)
    known = _session_key(receiver)
    last = receiver.telemetry if isinstance(receiver.telemetry, dict) else {}
    if known is not None and (session < known or (
            session == known and session == _telemetry_session(last)
            and telemetry["up"] <= _int_or(last.get("up"), -1))):
        raise ProtocolError("replayed")
    batch.result.stats["heartbeat"] += 1
    receiver.telemetry = telemetry
    # The history: kept in the session, written with the whole batch at its commit.
    telemetry_history.record(batch.session, device_id=receiver.id, at=batch.now,
                             telemetry=telemetry)
    if session != known:
        # Talking in a session we have no birth of (the birth was lost, or comes later in
        # this batch): it is alive, but presence waits for its birth.
        return True
    if not receiver.online:
        # Marked offline for silence (or by a death) but talking in the session we know: it
        # was only quiet, or its reports were late. Anything it missed meanwhile is sent now.
        _come_online(batch, receiver)
    return True


def _heard(batch: _Batch, receiver: Receiver, msg: dict[str, Any], at: datetime) -> None:
    """Keep what a heartbeat of the session we know says plays, for reconcile.check_heartbeats."""
    if messages.session_of(msg) != _session_key(receiver):
        return
    play = msg.get("play")
    batch.heard[receiver.id] = reconcile.Heard(
        play=play if isinstance(play, str) else None, at=at,
        booted_at=at - timedelta(seconds=msg["up"]))


def _telemetry_session(telemetry: dict[str, Any]) -> tuple[Any, Any]:
    return (telemetry.get("boot"), telemetry.get("conn"))


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def offline_allowance_s(settings: Settings, capabilities: Any) -> float:
    """How long a receiver may be silent before it counts as offline (protocol/presence.py).

    ``offline_after_s`` is the allowance at the default 30 s heartbeat (1.4 periods: 42 s, 44 s
    to notice with the sweep); a receiver that declared a longer period in its birth
    (``caps.hb``, e.g. 60 s on a paid 4G link) gets 1.4 of its own periods, so one late
    heartbeat never flaps it offline.
    """
    period = capabilities.get("hb") if isinstance(capabilities, dict) else None
    # Checked at ingest; a row stored by an older head-end may still hold anything.
    if isinstance(period, int | float) and not isinstance(period, bool) and period > 0:
        return max(settings.offline_after_s, presence.offline_allowance_s(period))
    return settings.offline_after_s


def sweep_presence(session: Session, *, settings: Settings,
                   now: datetime | None = None) -> list[str]:
    """Mark receivers silent for longer than their allowance offline; returns their ids."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=settings.offline_after_s)
    silent = []
    for device_id, last_seen, capabilities in session.execute(
            select(Receiver.id, Receiver.last_seen, Receiver.capabilities).where(
                Receiver.online.is_(True),
                (Receiver.last_seen < cutoff) | Receiver.last_seen.is_(None))):
        allowance = timedelta(seconds=offline_allowance_s(settings, capabilities))
        if last_seen is None or last_seen < now - allowance:
            silent.append(device_id)
    for part in chunks(silent):
        session.execute(update(Receiver).where(Receiver.id.in_(part), Receiver.online.is_(True))
                        .values(online=False, offline_reason="silent"))
    finish_overdue(session, now=now)
    return silent


# -- events --------------------------------------------------------------------------------

class _Events:
    """Acks, fetch reports and proof of play, applied with one lookup of each kind per batch."""

    def __init__(self, batch: _Batch, events):
        self.batch = batch
        self.events = events
        self.seen: set[tuple[str, int, int]] = set()  # (device, epoch, seq)
        # Per receiver whose counters restarted (epoch > 0): the latest event time of its
        # earlier epochs. Seqs restart with the epoch, so an old event replayed now would look
        # new by (epoch, seq); its time gives it away.
        self.epoch_floor: dict[str, datetime] = {}
        self.deliveries: dict[tuple[str, str], Delivery] = {}
        self.by_command: dict[str, Delivery] = {}
        self.open_plays: dict[tuple[str, str | None], PlayLog] = {}
        self.waiting: dict[tuple[str, str], list[Delivery]] = {}  # (device, item) -> pending
        self.cached: set[tuple[str, str]] = set()  # (device, sha) known to be in its cache
        self.new_events: list[dict[str, Any]] = []
        self.new_cached: list[dict[str, Any]] = []

    def preload(self) -> None:
        session = self.batch.session
        if not self.events:
            return
        pairs: dict[str, set] = {}
        keys: set[tuple[str, int]] = set()
        for report, _receiver, msg in self.events:
            pairs.setdefault(report.device_id, set())
            keys.add((report.device_id, msg["seq"]))
        # Which of these are stored already: a row-value IN, one query per 300.
        epochs = {r.device_id: rc.event_epoch or 0 for r, rc, _ in self.events}
        triples = sorted((d, epochs[d], seq) for d, seq in keys)
        for part in chunks(triples, 300):
            for device_id, epoch, seq in session.execute(
                    select(DeviceEvent.device_id, DeviceEvent.epoch, DeviceEvent.seq)
                    .where(tuple_(DeviceEvent.device_id, DeviceEvent.epoch,
                                  DeviceEvent.seq).in_(part))):
                self.seen.add((device_id, epoch, seq))
        restarted = sorted({rc.id for _, rc, _ in self.events if rc.event_epoch})
        for part in chunks(restarted):
            for device_id, latest in session.execute(
                    select(DeviceEvent.device_id, func.max(DeviceEvent.t))
                    .join(Receiver, Receiver.id == DeviceEvent.device_id)
                    .where(DeviceEvent.device_id.in_(part),
                           DeviceEvent.epoch < Receiver.event_epoch)
                    .group_by(DeviceEvent.device_id)):
                if latest is not None:
                    self.epoch_floor[device_id] = latest
        devices = sorted(pairs)
        bids = sorted({m.get("bid") for _, _, m in self.events if isinstance(m.get("bid"), str)})
        cmds = sorted({m.get("cmd") for _, _, m in self.events if isinstance(m.get("cmd"), str)})
        for part in chunks(bids):
            for delivery in session.scalars(select(Delivery).where(
                    Delivery.broadcast_id.in_(part), Delivery.device_id.in_(devices))):
                self.deliveries[(delivery.broadcast_id, delivery.device_id)] = delivery
            # Open rows, and rows the head-end closed as interrupted: the receiver's late
            # end report corrects those. The newest per (receiver, broadcast) wins.
            for play in session.scalars(select(PlayLog).where(
                    PlayLog.broadcast_id.in_(part), PlayLog.device_id.in_(devices),
                    PlayLog.outcome.is_(None) | (PlayLog.outcome == DELIVERY_INTERRUPTED))
                    .order_by(PlayLog.id)):
                self.open_plays[(play.device_id, play.broadcast_id)] = play
        for part in chunks(cmds):
            for delivery in session.scalars(select(Delivery).where(
                    Delivery.command_id.in_(part))):
                self.by_command[delivery.command_id or ""] = delivery
        items = sorted({m.get("item") for _, _, m in self.events
                        if m.get("k") in (messages.EV_FETCHED, messages.EV_FETCH_FAILED)
                        and isinstance(m.get("item"), str)})
        shas = sorted({m.get("sha") for _, _, m in self.events
                       if m.get("k") == messages.EV_FETCHED and isinstance(m.get("sha"), str)})
        for part in chunks(devices):
            if items:
                for delivery, item in session.execute(
                        select(Delivery, Broadcast.media_id)
                        .join(Broadcast, Delivery.broadcast_id == Broadcast.id)
                        .where(Delivery.device_id.in_(part), Broadcast.media_id.in_(items),
                               (Delivery.state == DELIVERY_PENDING)
                               | ((Delivery.state == DELIVERY_FAILED)
                                  & Delivery.reason.in_(deliveries.FETCH_REASONS)
                                  & (Broadcast.valid_until > self.batch.now)))):
                    self.waiting.setdefault((delivery.device_id, item), []).append(delivery)
            if shas:
                for device_id, sha in session.execute(
                        select(DeviceMedia.device_id, DeviceMedia.sha256)
                        .where(DeviceMedia.device_id.in_(part), DeviceMedia.sha256.in_(shas))):
                    self.cached.add((device_id, sha))

    def write(self) -> None:
        """Insert the batch's new events and cache entries in one statement each."""
        if self.new_events:
            self.batch.session.execute(insert(DeviceEvent), self.new_events)
        if self.new_cached:
            self.batch.session.execute(insert(DeviceMedia), self.new_cached)

    def apply(self, report: Report, receiver: Receiver, msg: dict[str, Any]) -> bool:
        """Apply a new event; True if it was new (a duplicate proves nothing about now)."""
        epoch = receiver.event_epoch or 0
        key = (receiver.id, epoch, msg["seq"])
        if key in self.seen:
            self.batch.result.stats["duplicate_event"] += 1
            return False
        t = _dt(msg["t"])
        floor = self.epoch_floor.get(receiver.id)
        if floor is not None and t <= floor:
            raise ProtocolError("replayed")
        self.seen.add(key)
        self.new_events.append({"device_id": receiver.id, "epoch": epoch, "seq": msg["seq"],
                                "kind": msg["k"], "t": t, "body": msg,
                                "received_at": self.batch.now})
        self.batch.result.stats["event." + msg["k"]] += 1
        handler = getattr(self, "_" + msg["k"])
        handler(receiver, msg, t)
        return True

    def _delivery(self, receiver: Receiver, msg: dict[str, Any]) -> Delivery | None:
        bid = msg.get("bid")
        return self.deliveries.get((bid, receiver.id)) if isinstance(bid, str) else None

    def _move(self, delivery: Delivery, event: str, t: datetime, **reason) -> bool:
        self.batch.touched.add(delivery.broadcast_id)
        return deliveries.move(delivery, event, at=t, stats=self.batch.result.stats, **reason)

    def _ack(self, receiver: Receiver, msg: dict[str, Any], t: datetime) -> None:
        delivery = self.by_command.get(str(msg.get("cmd")))
        if delivery is None and msg.get("ok") is False and isinstance(msg.get("cmd"), str) \
                and msg["cmd"].startswith("self-"):
            selftests.record_refusal(self.batch.session, device_id=receiver.id,
                                     command_id=msg["cmd"], reason=str(msg.get("reason")),
                                     at=t)
            return
        if delivery is None or delivery.device_id != receiver.id:
            return
        if msg.get("ok") is True:
            self._move(delivery, deliveries.ACKED, t)
        else:
            code, detail = deliveries.refusal_reason(msg.get("reason"))
            self._move(delivery, deliveries.REFUSED, t, reason=code, detail=detail)

    def _update(self, receiver: Receiver, msg: dict[str, Any], t: datetime) -> None:
        """A firmware update staged or stopped: kept as the event, which the rollout's
        progress reads (headend/services/firmware.py)."""

    def _selftest(self, receiver: Receiver, msg: dict[str, Any], t: datetime) -> None:
        selftests.record_answer(self.batch.session, device_id=receiver.id, msg=msg, at=t)

    def _rejected(self, receiver: Receiver, msg: dict[str, Any], t: datetime) -> None:
        # Somebody sent this receiver a command it refused: a forgery, a replay, or our clock.
        reason = str(msg.get("reason"))[:32]
        _rejected_log.warning(reason, "receiver %s rejected a %s message: %s", receiver.id,
                              str(msg.get("topic"))[:16], reason)

    def _fetched(self, receiver: Receiver, msg: dict[str, Any], t: datetime) -> None:
        sha = msg.get("sha")
        if isinstance(sha, str) and len(sha) == 64 and (receiver.id, sha) not in self.cached:
            self.cached.add((receiver.id, sha))
            self.new_cached.append({"device_id": receiver.id, "sha256": sha, "fetched_at": t})
        for delivery in self._waiting_for_item(receiver, msg.get("item"), with_failed=True):
            self._move(delivery, deliveries.FETCHED, t)

    def _fetch_failed(self, receiver: Receiver, msg: dict[str, Any], t: datetime) -> None:
        code, detail = deliveries.fetch_reason(msg.get("reason"))
        for delivery in self._waiting_for_item(receiver, msg.get("item"), with_failed=False):
            self._move(delivery, deliveries.FETCH_FAILED, t, reason=code, detail=detail)

    def _waiting_for_item(self, receiver: Receiver, item: Any,
                          with_failed: bool) -> list[Delivery]:
        """Deliveries of ``item`` on this receiver waiting for its media (and, ``with_failed``,
        those whose fetch failed: the receiver retried)."""
        if not isinstance(item, str):
            return []
        return [d for d in self.waiting.get((receiver.id, item), [])
                if d.state == DELIVERY_PENDING or (with_failed and d.state == DELIVERY_FAILED
                                                   and d.reason in deliveries.FETCH_REASONS)]

    def _started(self, receiver: Receiver, msg: dict[str, Any], t: datetime) -> None:
        bid = msg.get("bid") if isinstance(msg.get("bid"), str) else None
        at = msg.get("at")
        skip = msg.get("skip")
        play = PlayLog(device_id=receiver.id, epoch=receiver.event_epoch or 0, broadcast_id=bid,
                       item=_str(msg.get("item")), seq=msg["seq"], started_at=t,
                       scheduled_at=_dt(at) if _time(at) else None,
                       skip_ms=skip if _count(skip) else None)
        self.batch.session.add(play)
        self.open_plays[(receiver.id, bid)] = play
        delivery = self._delivery(receiver, msg)
        if delivery is not None:
            self._move(delivery, deliveries.STARTED, t)

    def _ended(self, receiver: Receiver, msg: dict[str, Any], t: datetime) -> None:
        bid = msg.get("bid") if isinstance(msg.get("bid"), str) else None
        outcome = END_STATE[msg["reason"]]
        played = msg.get("played")
        play = self.open_plays.pop((receiver.id, bid), None)
        if play is None:  # ended without a start: it never got to play (e.g. fetch too slow)
            play = PlayLog(device_id=receiver.id, epoch=receiver.event_epoch or 0,
                           broadcast_id=bid, item=_str(msg.get("item")), seq=msg["seq"])
            self.batch.session.add(play)
        code, detail = deliveries.end_reason(msg["reason"], msg.get("detail"))
        play.ended_at = t
        play.outcome = outcome
        play.reason = code
        play.reason_detail = detail
        play.played_ms = played if _count(played) else None
        delivery = self._delivery(receiver, msg)
        if delivery is not None:
            if code == "not-cached" and delivery.reason in deliveries.FETCH_REASONS:
                # Not cached because its fetch failed: that says more (and what to do).
                code, detail = delivery.reason, delivery.reason_detail
            # The receiver's report is the truth about what was heard.
            self._move(delivery, deliveries.ENDED[msg["reason"]], t, reason=code, detail=detail)


def _count(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and 0 <= value <= messages.MAX_COUNT)


def _time(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and 0 < value <= messages.MAX_TIME_MS)


def _str(value: Any) -> str | None:
    return fit_text(value, 48) if isinstance(value, str) else None
