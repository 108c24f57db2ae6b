"""Signed commands to receivers: counters, signatures, and the publisher they go out through.

A command is prepared inside the caller's transaction (its counter is persisted there), and
published only after that transaction commits, so a counter is never used twice even if the
head-end dies between the two steps (``protocol.messages.next_counter``). The signing itself
is headend/planning.py's ``outgoing_command``, which the simulator's operator uses too.
"""

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from headend.clock_guard import CLOCK
from headend.db import begin_writing
from headend.keystore import DeviceKeyError, open_stored
from headend.models import CommandCounter, Receiver
from headend.planning import Outgoing, new_command_id, outgoing_command
from headend.planning import now_ms as now_ms  # where the services and the MQTT side find it
from protocol import messages
from protocol.signing import key_from_hex

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


class RecordingPublisher:
    """Keeps what would have been published: for the API without a broker, and for tests."""

    def __init__(self):
        self.sent: list[Outgoing] = []
        self._lock = threading.Lock()

    def publish_many(self, messages: list[Outgoing]) -> None:
        with self._lock:
            self.sent.extend(messages)


def chunks(items: list, size: int = _CHUNK):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def prepare(session: Session, *, site_id: str, commands: list[Command], ttl_s: int,
            now: int | None = None) -> list[Outgoing]:
    """Sign ``commands`` with each receiver's key and the next counter (persisted in
    ``session``, not committed). Commands for unknown receivers are dropped with a warning.
    Raises ClockUntrusted, before any write, while the head-end's clock is not trusted."""
    if not commands:
        return []
    trusted = CLOCK.now_ms()  # raises ClockUntrusted before anything is written
    now = trusted if now is None else now
    device_ids = sorted({c.device_id for c in commands})
    keys: dict[str, bytes] = {}
    last: dict[str, int] = {}
    # The counters stay locked until commit: the API and the ingest thread sign at once, and
    # two commands with one counter make the receiver refuse the second. Only this function
    # locks them, always in id order, so two signers wait for each other and never deadlock.
    begin_writing(session)
    for part in chunks(device_ids):
        for dev, key_hex in session.execute(
                select(Receiver.id, Receiver.device_key).where(Receiver.id.in_(part))):
            try:
                keys[dev] = key_from_hex(open_stored(session, dev, key_hex))
            except DeviceKeyError as exc:  # one bad row must not stop an emergency to all
                log.error("%s: its commands are dropped", exc)
        for dev, ctr in session.execute(select(CommandCounter.device_id, CommandCounter.last_ctr)
                                        .where(CommandCounter.device_id.in_(part))
                                        .order_by(CommandCounter.device_id).with_for_update()):
            last[dev] = ctr
    known = set(last)
    out = []
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
                                    ttl_s=ttl_s, cmd_id=command.cmd_id))
    # Bulk writes (executemany): one statement for the updated counters, one for the new ones.
    table: Table = CommandCounter.__table__  # type: ignore[assignment]
    updated = [{"dev": d, "ctr": c} for d, c in last.items() if d in known]
    created = [{"device_id": d, "last_ctr": c} for d, c in last.items() if d not in known]
    if updated:
        session.execute(table.update().where(table.c.device_id == bindparam("dev"))
                        .values(last_ctr=bindparam("ctr")), updated)
    if created:
        session.execute(table.insert(), created)
    return out
