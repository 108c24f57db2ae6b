"""Dead air on a relay as an operator alert: the live service's dead-air hook.

Every dead-air start and end leaves the live service through ``dead_air_event``
(headend/live/deadair.py); ``DeadAirAlerts`` hooks in there and hands each event of its own
service's sessions to one worker thread, which raises or clears the relay's alert in one short
transaction (headend/services/alerts.py ``dead_air``), with its notices, then wakes the
delivery. The hook itself only queues: the relay never waits on the database, and a failed
write is logged, never raised into the relay. One worker keeps the events in order (a start is
written before its end)."""

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from headend.db import begin_writing, session_scope
from headend.live.deadair import DeadAirEvent, add_dead_air_hook
from headend.services import alerts
from headend.settings import Settings

log = logging.getLogger(__name__)


class DeadAirAlerts:
    def __init__(self, *, settings: Settings, session_factory: sessionmaker[Session],
                 owns: Callable[[str], bool], wake: Callable[[], None] = lambda: None):
        self.settings = settings
        self.session_factory = session_factory
        self.owns = owns  # whether a session is this service's (the hooks are per process)
        self.wake = wake  # the alert delivery's, when it runs
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="loaxa-dead-air-alerts")
        self._remove = add_dead_air_hook(self._on_event)

    def _on_event(self, event: DeadAirEvent) -> None:
        if not self.owns(event.live_id):
            return
        try:
            self._pool.submit(self._write, event)
        except RuntimeError:  # closed: the head-end is stopping
            log.warning("dead-air alert of relay %s not written: stopping", event.live_id)

    def _write(self, event: DeadAirEvent) -> None:
        try:
            with session_scope(self.session_factory) as session:
                begin_writing(session)  # the delivery's repeats may touch the alert too
                result = alerts.dead_air(session, settings=self.settings, event=event,
                                         now=datetime.now(UTC))
                session.commit()
            if result.notices:
                self.wake()
        except Exception:
            log.exception("dead-air alert of relay %s not written", event.live_id)

    def flush(self) -> None:
        """Wait until every event handed over so far is written (tests, shutdown)."""
        self._pool.submit(lambda: None).result()

    def close(self) -> None:
        self._remove()
        self._pool.shutdown(wait=True)
