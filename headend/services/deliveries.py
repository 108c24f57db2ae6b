"""Each receiver's part in a broadcast (``Delivery``): its states, the table of moves between
them, the reasons an operator reads, and the broadcast's state derived from them.

``move`` is the only code that writes ``Delivery.state`` (``initial`` gives the state of a
row being inserted). Every caller names an event; ``TRANSITIONS`` says where the delivery goes
from its state on that event. A move the table does not have is refused: logged (a few lines
a minute), counted, never applied (like firmware/core.py's TRANSITIONS for the receiver's
player). Who moves a delivery on which event:

    event                     by
    sent / offline-at-send    broadcasts.create_broadcast (the receiver online or not)
    no-codec                  create, or a resend: no rendition the receiver decodes
    sent-on-return            broadcasts.commands_for_returning (it came back while current)
    resent                    escalation: an emergency's play not acked in time, sent again
    acked / refused           ingest: the receiver's ack of the play command (ok or not)
    fetched / fetch-failed    ingest: the receiver's fetch reports
    started / ended-*         ingest: proof of play (ended-finished, -preempted, -cancelled,
                              -failed)
    cancel-requested          broadcasts.cancel_broadcast
    receiver-restarted        reconcile: a birth of a new boot, or a heartbeat whose uptime
                              shows the play started before the receiver's current boot
    end-unreported            reconcile: heartbeats say it plays something else (after a grace
                              for reports in flight), or its whole length is long over
    window-over               broadcasts.finish_overdue: over, nothing reported
    headend-down              broadcasts.finish_overdue: over, and the head-end was down
                              during its air time (headend_runs)

The receiver's report is the truth about what was heard: played and preempted are final,
but failed, cancelled and interrupted may be the head-end's guess (no report, a restart, a
cancel before the receiver said anything) and give way to the receiver's own late report (its
outbox keeps events in flash and sends them when it reconnects).
"""

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.commands import chunks
from headend.i18n import LANGUAGES, translator
from headend.i18n.catalog import MESSAGES
from headend.logbudget import LogBudget
from headend.models import (
    BROADCAST_CANCELLED,
    BROADCAST_FAILED,
    BROADCAST_INTERRUPTED,
    BROADCAST_PARTIAL,
    BROADCAST_PLAYED,
    BROADCAST_PLAYING,
    BROADCAST_PREEMPTED,
    BROADCAST_SCHEDULED,
    DELIVERY_CANCELLED,
    DELIVERY_FAILED,
    DELIVERY_FETCHED,
    DELIVERY_INTERRUPTED,
    DELIVERY_OFFLINE,
    DELIVERY_PENDING,
    DELIVERY_PLAYED,
    DELIVERY_PLAYING,
    DELIVERY_PREEMPTED,
    DELIVERY_TERMINAL,
    REASON_DETAIL_LENGTH,
    Broadcast,
    Delivery,
    fit_text,
)
from protocol import messages

log = logging.getLogger(__name__)
_refused_log = LogBudget(log, lines=5, per_s=60.0)

# How long after its end a broadcast waits for late reports before it is summarised.
REPORT_GRACE = timedelta(seconds=60)

# -- events ---------------------------------------------------------------------------------

SENT = "sent"
OFFLINE_AT_SEND = "offline-at-send"
NO_CODEC = "no-codec"
SENT_ON_RETURN = "sent-on-return"
RESENT = "resent"
ACKED = "acked"
REFUSED = "refused"
FETCHED = "fetched"
FETCH_FAILED = "fetch-failed"
STARTED = "started"
ENDED_FINISHED = "ended-finished"
ENDED_PREEMPTED = "ended-preempted"
ENDED_CANCELLED = "ended-cancelled"
ENDED_FAILED = "ended-failed"
CANCEL_REQUESTED = "cancel-requested"
RECEIVER_RESTARTED = "receiver-restarted"
END_UNREPORTED = "end-unreported"
WINDOW_OVER = "window-over"
HEADEND_DOWN = "headend-down"

ENDED = {messages.END_FINISHED: ENDED_FINISHED, messages.END_PREEMPTED: ENDED_PREEMPTED,
         messages.END_CANCELLED: ENDED_CANCELLED, messages.END_FAILED: ENDED_FAILED}

# -- the table ------------------------------------------------------------------------------

NEW = None  # the "state" of a delivery not yet stored
_P, _O, _F, _Y = DELIVERY_PENDING, DELIVERY_OFFLINE, DELIVERY_FETCHED, DELIVERY_PLAYING
_D, _E, _X = DELIVERY_PLAYED, DELIVERY_PREEMPTED, DELIVERY_FAILED
_C, _I = DELIVERY_CANCELLED, DELIVERY_INTERRUPTED
_GUESSES = (_X, _C, _I)  # states a receiver's own report may correct


def _rows(events, moves):
    return {(state, event): new for event in events for state, new in moves.items()}


TRANSITIONS: dict[tuple[str | None, str], str] = {
    (NEW, SENT): _P,
    (NEW, OFFLINE_AT_SEND): _O,
    **_rows([NO_CODEC], {NEW: _X, _O: _X, _P: _X, _I: _X}),
    **_rows([SENT_ON_RETURN], {_O: _P, _P: _P, _F: _F, _I: _P}),
    **_rows([RESENT], {_P: _P}),  # only what waits for its ack; the count is the delivery's
    # An ack only dates the command; a refusal fails what waits for it, and changes nothing
    # once the receiver went further (it refused a resend of what it already holds).
    **_rows([ACKED], {s: s for s in (_P, _F, _Y, _D, _E, _X, _C, _I)}),
    **_rows([REFUSED], {_P: _X, **{s: s for s in (_F, _Y, _D, _E, _X, _C, _I)}}),
    # The receiver retries a failed fetch until air time: a later success counts.
    **_rows([FETCHED], {_P: _F, _F: _F, _X: _F, _C: _C}),
    **_rows([FETCH_FAILED], {_P: _X, _X: _X, _C: _C}),
    **_rows([STARTED], {s: _Y for s in (_P, _O, _F, _Y) + _GUESSES}),
    **_rows([ENDED_FINISHED], {s: _D for s in (_P, _O, _F, _Y) + _GUESSES}),
    **_rows([ENDED_PREEMPTED], {s: _E for s in (_P, _O, _F, _Y) + _GUESSES}),
    **_rows([ENDED_CANCELLED], {s: _C for s in (_P, _O, _F, _Y) + _GUESSES}),
    **_rows([ENDED_FAILED], {s: _X for s in (_P, _O, _F, _Y) + _GUESSES}),
    # Playing goes on until the receiver says how it ended (the stop is on its way).
    **_rows([CANCEL_REQUESTED], {_P: _C, _O: _C, _F: _C, _Y: _Y,
                                 **{s: s for s in (_D, _E, _X, _C, _I)}}),
    **_rows([RECEIVER_RESTARTED, END_UNREPORTED], {_Y: _I}),
    **_rows([WINDOW_OVER, HEADEND_DOWN], {_P: _X, _F: _X, _O: _X}),
}
EVENTS = tuple(dict.fromkeys(event for _state, event in TRANSITIONS))

# -- reasons --------------------------------------------------------------------------------

# Every reason a delivery or a play-log row can carry; each has words in both languages in
# headend/i18n/catalog.py ("reason.<code>"). A receiver's own wording goes in the detail.
REASONS = (
    # how the receiver says it ended
    "finished", "preempted", "cancelled", "failed", "missed", "not-cached", "stream-timeout",
    "sink-failed", "player-error",
    # fetching and refusals, from the receiver
    "fetch-failed", "cache-full", "no-space", "no-codec", "expired", "replay", "future-counter",
    "bad-signature", "safe-mode", "storage", "volume-limit", "refused",
    # the head-end's own conclusions
    "no-report", "receiver-offline", "headend-down", "receiver-restarted", "end-unreported",
    # a relay's fallback, written by the head-end (headend/services/playlog.py)
    "source-stalled", "source-silent",
)
# The receiver's failure details that are codes of their own (firmware/core.py DETAIL_*,
# the shell's refusals); anything else it says is kept as the detail of a wider code.
_OWN_CODES = {"missed", "not-cached", "stream-timeout", "cache-full", "no-space", "expired",
              "replay", "future-counter", "bad-signature", "safe-mode", "storage",
              "volume-limit"}
_PLAYER_ERROR_PREFIX = "player: "


def _detail(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return fit_text(str(value), REASON_DETAIL_LENGTH)


def end_reason(reason: str, detail: Any) -> tuple[str, str | None]:
    """(code, detail) for an ``ended`` event's reason and detail."""
    if reason != messages.END_FAILED:
        return reason, None
    text = detail if isinstance(detail, str) else None
    if not text:
        return "failed", None
    if text in _OWN_CODES:
        return text, None
    if text.startswith(_PLAYER_ERROR_PREFIX):
        return "player-error", _detail(text[len(_PLAYER_ERROR_PREFIX):])
    # The shell reports a SinkError's own words ("vs1053: DREQ stuck low") as the detail.
    return "sink-failed", _detail(text)


def refusal_reason(reason: Any) -> tuple[str, str | None]:
    """(code, detail) for a receiver's refusal of a play command."""
    text = reason if isinstance(reason, str) else None
    if text == "unsupported-codec":
        return "no-codec", None
    if text in _OWN_CODES:
        return text, None
    return "refused", _detail(text)


# The codes of a failed fetch. The receiver retries a fetch until air time, so a later
# "fetched" still counts for a delivery that failed with one of these.
FETCH_REASONS = ("fetch-failed", "cache-full", "no-space")


def fetch_reason(detail: Any) -> tuple[str, str | None]:
    """(code, detail) for a ``fetch_failed`` event."""
    text = detail if isinstance(detail, str) else None
    if text in FETCH_REASONS:
        return text, None
    if text and text.startswith("fetch: "):
        text = text[len("fetch: "):]
    return "fetch-failed", _detail(text)


def reason_text(code: str | None, detail: str | None = None) -> dict[str, str] | None:
    """The reason in words, per language ({"vi": ..., "en": ...}), the detail after a colon;
    None without a reason. An unknown code (from a newer head-end's database) shows as is."""
    if not code:
        return None
    out = {}
    for language in LANGUAGES:
        words = translator(language).maybe("reason", code)
        out[language] = "%s: %s" % (words, detail) if detail else words
    return out


# The reason a move into a settled state gets when its caller names none.
_DEFAULT_REASON = {
    NO_CODEC: "no-codec", RECEIVER_RESTARTED: "receiver-restarted",
    END_UNREPORTED: "end-unreported", HEADEND_DOWN: "headend-down", WINDOW_OVER: "no-report",
    CANCEL_REQUESTED: "cancelled", ENDED_CANCELLED: "cancelled", FETCH_FAILED: "fetch-failed",
    REFUSED: "refused", ENDED_FINISHED: "finished", ENDED_PREEMPTED: "preempted",
    ENDED_FAILED: "failed",
}


# -- moving ---------------------------------------------------------------------------------

class IllegalMove(Exception):
    """A move the table does not have (a report that makes no sense in this state)."""

    def __init__(self, state: str | None, event: str):
        super().__init__("illegal delivery move %s --%s-->" % (state, event))
        self.state = state
        self.event = event


def next_state(state: str | None, event: str) -> str:
    """Where a delivery in ``state`` goes on ``event``; IllegalMove if nowhere."""
    new = TRANSITIONS.get((state, event))
    if new is None:
        raise IllegalMove(state, event)
    return new


_ENDS = (ENDED_FINISHED, ENDED_PREEMPTED, ENDED_CANCELLED, ENDED_FAILED, FETCH_FAILED,
         RECEIVER_RESTARTED, END_UNREPORTED)


def initial(event: str, *, reason: str | None = None) -> dict[str, Any]:
    """The state fields of a delivery row about to be inserted (one multi-row insert for a
    whole commune), by the same table as ``move``."""
    state = next_state(NEW, event)
    fields: dict[str, Any] = {"state": state, "reason": None, "reason_detail": None}
    if state == DELIVERY_FAILED:
        fields["reason"] = reason or _DEFAULT_REASON.get(event)
    return fields


def move(delivery: Delivery, event: str, *, at: datetime, reason: str | None = None,
         detail: str | None = None, stats: Counter | None = None) -> bool:
    """Move ``delivery`` on ``event`` at time ``at``; False (logged, counted as
    ``delivery.refused``) if the table has no such move, and nothing is changed then.

    A move into a settled state (played, failed, interrupted, ...) records the reason (the
    given one, else the event's) and the end time; a move into a live state clears them.
    """
    old = delivery.state
    try:
        new = next_state(old, event)
    except IllegalMove:
        if stats is not None:
            stats["delivery.refused"] += 1
            stats["delivery.refused." + event] += 1
        _refused_log.warning(event, "refused delivery move of %s on %s: %s --%s-->",
                             delivery.broadcast_id, delivery.device_id, old, event)
        return False
    if event == ACKED:
        delivery.acked_at = delivery.acked_at or at
    elif event == FETCHED and new == DELIVERY_FETCHED:
        delivery.fetched_at = delivery.fetched_at or at
    elif event == STARTED:
        delivery.started_at = at
    if new == old and event not in ENDED.values():
        return True  # nothing but a date: the state, its reason and end stay as they are
    delivery.state = new
    delivery.contradicted_at = None
    if new in DELIVERY_TERMINAL:
        delivery.reason = reason or _DEFAULT_REASON.get(event)
        delivery.reason_detail = _detail(detail)
        # The end time is what the receiver reported, or the head-end's estimate of when an
        # interrupted play stopped; a conclusion drawn from silence (no report) has none.
        delivery.ended_at = at if event in _ENDS else None
    else:
        delivery.reason = None
        delivery.reason_detail = None
        delivery.ended_at = None
    return True


# -- the broadcast's state, from its deliveries ---------------------------------------------

def summarise(broadcast: Broadcast, states: list[str], now: datetime) -> str:
    """A broadcast's state from its deliveries' states: the one place it is decided."""
    if broadcast.cancelled_at is not None:
        return BROADCAST_CANCELLED
    if DELIVERY_PLAYING in states:
        return BROADCAST_PLAYING
    over = now > broadcast.valid_until + REPORT_GRACE
    reached = any(s in DELIVERY_TERMINAL for s in states)
    waiting = any(s in (DELIVERY_PENDING, DELIVERY_FETCHED) for s in states)
    # Receivers still offline do not hold a broadcast open once the others are done; if one
    # comes back in time and plays it, its reports reopen the summary.
    if not over and (waiting or (not reached and DELIVERY_OFFLINE in states)):
        return BROADCAST_PLAYING if reached and now >= broadcast.start_at else BROADCAST_SCHEDULED
    if states and all(s == DELIVERY_PLAYED for s in states):
        return BROADCAST_PLAYED
    if DELIVERY_PREEMPTED in states:
        return BROADCAST_PREEMPTED
    if DELIVERY_PLAYED in states:
        return BROADCAST_PARTIAL
    if DELIVERY_INTERRUPTED in states:
        return BROADCAST_INTERRUPTED
    return BROADCAST_FAILED


def refresh_states(session: Session, *, broadcast_ids: set[str], now: datetime) -> None:
    """Recompute the state of these broadcasts from their deliveries (in the caller's
    transaction; the deliveries' changes must be flushed)."""
    for part in chunks(sorted(broadcast_ids)):
        states: dict[str, list[str]] = {b: [] for b in part}
        for bid, state in session.execute(select(Delivery.broadcast_id, Delivery.state)
                                          .where(Delivery.broadcast_id.in_(part))):
            states[bid].append(state)
        for broadcast in session.scalars(select(Broadcast).where(Broadcast.id.in_(part))):
            broadcast.state = summarise(broadcast, states[broadcast.id], now)


def check_catalog() -> list[str]:
    """Reasons without words in the catalog (a test keeps this empty)."""
    return [code for code in REASONS if "reason." + code not in MESSAGES]
