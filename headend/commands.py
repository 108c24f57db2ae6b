"""Signed commands to receivers: counters, signatures, and the publisher they go out through.

A command is prepared inside the caller's transaction (its counter is persisted there), and
published only after that transaction commits, so a counter is never used twice even if the
head-end dies between the two steps (``protocol.messages.next_counter``). The signing itself
is headend/planning.py's ``outgoing_command``, which the simulator's operator uses too.

Per receiver, commands reach the broker in counter order (``Sequencer``): two threads (an API
request, the ingest or sweep, the programme scheduler, the live service) that sign for one
receiver commit in counter order, the row locks see to that, but could publish in the other
order; the receiver would then act on the higher counter and refuse the lower one as a
replay (firmware/guard.py), a command silently lost.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, event, select
from sqlalchemy.orm import Session, SessionTransaction

from headend.clock_guard import CLOCK
from headend.db import begin_writing
from headend.keystore import DeviceKeyError, open_stored
from headend.models import CommandCounter, Receiver
from headend.planning import Outgoing, new_command_id, outgoing_command
from headend.planning import now_ms as now_ms  # where the services and the MQTT side find it
from protocol import messages
from protocol.signing import HmacKey, key_from_hex

log = logging.getLogger(__name__)

_CHUNK = 500  # ids per IN (...) query, under every database's parameter limit


@dataclass
class Command:
    device_id: str
    kind: str
    args: dict[str, Any]
    cmd_id: str = field(default_factory=lambda: new_command_id("c"))


class Publisher(Protocol):
    def publish_many(self, messages: list[Outgoing]) -> None: ...


HOLD_S = 2.0  # the longest a command waits for a lower counter of its receiver
_PENDING = "loaxa.pending_counters"  # Session.info: {sequencer: what this transaction prepared}


class _Pending:
    __slots__ = ("ctr", "deadline")

    def __init__(self, ctr: int):
        self.ctr = ctr
        self.deadline: float | None = None  # set at commit: let go HOLD_S after it


class Sequencer:
    """Per command topic, publication in counter order, in this process.

    ``prepare`` registers each counter it signs as pending, in its session; the session's
    commit starts the counter's bound (``hold_s``), its rollback, or its end without a commit,
    abandons it. ``publish`` sends a command at once unless a lower counter of its receiver is
    pending: then it waits (a condition, never a lock held across a transaction: it waits
    after its own commit, for others that have committed or will roll back) until that one is
    published or abandoned, or its bound passes (a caller that died between commit and
    publish): then the lower one is let go, with a warning (if it comes later, the receiver
    refuses it). Messages without a counter (live frames) pass straight through.

    One head-end per site: a second head-end process would sign from the same counters but
    sequence only its own publications."""

    def __init__(self, hold_s: float = HOLD_S):
        self.hold_s = hold_s
        self._cond = threading.Condition()
        self._pending: dict[str, list[_Pending]] = {}  # topic -> its counters not yet sent

    def register(self, session: Session, outgoing: list[Outgoing]) -> None:
        entries = session.info.setdefault(_PENDING, {}).setdefault(self, [])
        with self._cond:
            for message in outgoing:
                entry = _Pending(message.ctr)
                self._pending.setdefault(message.topic, []).append(entry)
                entries.append((message.topic, entry))

    def committed(self, entries: list[tuple[str, _Pending]]) -> None:
        deadline = time.monotonic() + self.hold_s
        with self._cond:
            for _topic, entry in entries:
                entry.deadline = deadline
            self._cond.notify_all()

    def abandon(self, entries: list[tuple[str, _Pending]]) -> None:
        with self._cond:
            for topic, entry in entries:
                self._drop(topic, entry)
            self._cond.notify_all()

    def publish(self, outgoing: list[Outgoing], send: Callable[[Outgoing], None]) -> None:
        """``send`` each message, every one after the lower pending counters of its topic."""
        if not any(m.ctr for m in outgoing):  # live frames: nothing to order
            for message in outgoing:
                send(message)
            return
        ready, held = [], []
        with self._cond:
            for message in outgoing:
                (held if message.ctr and self._blockers(message) else ready).append(message)
        self._send(ready, send)
        if not held:
            return
        until = time.monotonic() + self.hold_s
        for message in sorted(held, key=lambda m: m.ctr):
            self._wait(message, until)
            self._send([message], send)

    def pending_count(self) -> int:
        with self._cond:
            return sum(len(entries) for entries in self._pending.values())

    def clear(self) -> None:
        """Forget every pending counter (tests: one head-end after another in one process)."""
        with self._cond:
            self._pending.clear()
            self._cond.notify_all()

    def _wait(self, message: Outgoing, until: float) -> None:
        with self._cond:
            blockers = self._blockers(message)
            if blockers:
                log.debug("holding %s counter %d behind %d", message.device_id, message.ctr,
                          blockers[0].ctr)
            while blockers:
                deadlines = [e.deadline for e in blockers if e.deadline is not None]
                wake = min(deadlines + [until])
                left = wake - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                elif wake == until:  # this publication's own bound: let every blocker go
                    for entry in blockers:
                        self._let_go(message, entry)
                blockers = self._blockers(message)

    def _send(self, messages: list[Outgoing], send: Callable[[Outgoing], None]) -> None:
        try:
            for message in messages:
                send(message)
        finally:  # sent, or failed and abandoned: they hold nothing back any more
            with self._cond:
                for message in messages:
                    for entry in self._pending.get(message.topic, ()) if message.ctr else ():
                        if entry.ctr == message.ctr:
                            self._drop(message.topic, entry)
                            break
                self._cond.notify_all()

    # -- under self._cond --------------------------------------------------------------------

    def _blockers(self, message: Outgoing) -> list[_Pending]:
        """The lower counters of ``message``'s topic still pending (those past their bound
        are let go here)."""
        entries = self._pending.get(message.topic)
        if not entries:
            return []
        lower = [e for e in entries if e.ctr < message.ctr]
        if lower:
            now = time.monotonic()
            for entry in [e for e in lower if e.deadline is not None and e.deadline <= now]:
                self._let_go(message, entry)
                lower.remove(entry)
        return lower

    def _let_go(self, message: Outgoing, entry: _Pending) -> None:
        log.warning("%s: counter %d prepared but not published within %.1f s: sending %d "
                    "without it (if it comes later, the receiver refuses it as a replay)",
                    message.device_id, entry.ctr, self.hold_s, message.ctr)
        self._drop(message.topic, entry)

    def _drop(self, topic: str, entry: _Pending) -> None:
        entries = self._pending.get(topic)
        if entries is not None and entry in entries:
            entries.remove(entry)
            if not entries:
                del self._pending[topic]


SEQUENCER = Sequencer()


@event.listens_for(Session, "after_commit")
def _counters_committed(session: Session) -> None:
    for sequencer, entries in session.info.pop(_PENDING, {}).items():
        sequencer.committed(entries)


@event.listens_for(Session, "after_transaction_end")
def _counters_abandoned(session: Session, transaction: SessionTransaction) -> None:
    # After a commit they are gone (above): what is left was rolled back, or its session
    # closed without a commit; a savepoint's end is not the transaction's.
    if transaction.parent is None:
        for sequencer, entries in session.info.pop(_PENDING, {}).items():
            sequencer.abandon(entries)


class RecordingPublisher:
    """Keeps what would have been published: for the API without a broker, and for tests."""

    def __init__(self):
        self.sent: list[Outgoing] = []
        self._lock = threading.Lock()

    def publish_many(self, messages: list[Outgoing]) -> None:
        SEQUENCER.publish(messages, self._record)

    def _record(self, message: Outgoing) -> None:
        with self._lock:
            self.sent.append(message)


def chunks(items: list, size: int = _CHUNK):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# Each receiver's signing key, opened (AES-GCM under the KEK) and its HMAC pads absorbed once,
# by (receiver, stored value): a rotation or a re-seal stores a new value, which misses and is
# opened afresh. The MQTT service keeps the same keys in memory for the reports already.
_KEYS: dict[tuple[str, str], HmacKey] = {}
_KEYS_MAX = 20000  # a few sites' receivers with a rotation's second key each; then start over


def _signing_key(session: Session, device_id: str, stored: str) -> HmacKey:
    key = _KEYS.get((device_id, stored))
    if key is None:
        key = HmacKey(key_from_hex(open_stored(session, device_id, stored)))
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        _KEYS[(device_id, stored)] = key
    return key


def prepare(session: Session, *, site_id: str, commands: list[Command], ttl_s: int,
            now: int | None = None) -> list[Outgoing]:
    """Sign ``commands`` with each receiver's key and the next counter (persisted in
    ``session``, not committed). Commands for unknown receivers are dropped with a warning.
    Raises ClockUntrusted, before any write, while the head-end's clock is not trusted.
    The counters are pending in ``SEQUENCER`` until published, or abandoned with the session."""
    if not commands:
        return []
    trusted = CLOCK.now_ms()  # raises ClockUntrusted before anything is written
    now = trusted if now is None else now
    device_ids = sorted({c.device_id for c in commands})
    keys: dict[str, HmacKey] = {}
    last: dict[str, int] = {}
    # The counters stay locked until commit: the API and the ingest thread sign at once, and
    # two commands with one counter make the receiver refuse the second. Only this function
    # locks them, always in id order, so two signers wait for each other and never deadlock.
    begin_writing(session)
    for part in chunks(device_ids):
        for dev, key_hex in session.execute(
                select(Receiver.id, Receiver.device_key).where(Receiver.id.in_(part))):
            try:
                keys[dev] = _signing_key(session, dev, key_hex)
            except DeviceKeyError as exc:  # one bad row must not stop an emergency to all
                log.error("%s: its commands are dropped", exc)
        for dev, ctr in session.execute(select(CommandCounter.device_id, CommandCounter.last_ctr)
                                        .where(CommandCounter.device_id.in_(part))
                                        .order_by(CommandCounter.device_id).with_for_update()):
            last[dev] = ctr
    known = set(last)
    out = []
    checked: set[int] = set()  # the args objects checked already (an emergency shares one)
    for command in commands:
        key = keys.get(command.device_id)
        if key is None:
            log.warning("no receiver %s: command %s dropped", command.device_id, command.kind)
            continue
        ctr = last[command.device_id] = messages.next_counter(last.get(command.device_id, 0), now)
        if ctr > now + messages.MAX_COUNTER_AHEAD_MS:
            # The stored counter ran ahead of this clock (it jumped forward, then back): the
            # receiver refuses this one ("future-counter") until the clock catches up.
            log.warning("counter for %s is %d ms ahead of the clock: the receiver will refuse "
                        "it as future-counter", command.device_id, ctr - now)
        out.append(outgoing_command(key, site_id=site_id, device_id=command.device_id,
                                    kind=command.kind, args=command.args, ctr=ctr, now_ms=now,
                                    ttl_s=ttl_s, cmd_id=command.cmd_id,
                                    checked=id(command.args) in checked))
        checked.add(id(command.args))  # checked by the line above, or it raised
    # Bulk writes (executemany): one statement for the updated counters, one for the new ones.
    table: Table = CommandCounter.__table__  # type: ignore[assignment]
    updated = [{"dev": d, "ctr": c} for d, c in last.items() if d in known]
    created = [{"device_id": d, "last_ctr": c} for d, c in last.items() if d not in known]
    if updated:
        session.execute(table.update().where(table.c.device_id == bindparam("dev"))
                        .values(last_ctr=bindparam("ctr")), updated)
    if created:
        session.execute(table.insert(), created)
    SEQUENCER.register(session, out)
    return out
