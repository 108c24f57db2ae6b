"""The delivery state table (headend/services/deliveries.py): every state against every event,
what is refused, the reasons an operator reads, and the broadcast state derived from them."""

import logging
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from headend.i18n.catalog import MESSAGES
from headend.models import (
    DELIVERY_FINAL,
    DELIVERY_STATES,
    DELIVERY_TERMINAL,
    Broadcast,
    Delivery,
)
from headend.services import deliveries as d

T0 = datetime(2026, 12, 3, 5, 30, tzinfo=UTC)
GUESSES = ("failed", "cancelled", "interrupted")


def delivery(state):
    return Delivery(broadcast_id="b1", device_id="r1", state=state, reason=None)


@pytest.mark.parametrize("state", (d.NEW,) + DELIVERY_STATES)
@pytest.mark.parametrize("event", d.EVENTS)
def test_every_state_and_event_moves_by_the_table_or_is_refused(state, event):
    row = delivery(state)
    row.reason = "before"
    stats = Counter()
    expected = d.TRANSITIONS.get((state, event))
    moved = d.move(row, event, at=T0, stats=stats)
    if expected is None:
        assert not moved and row.state == state and row.reason == "before"
        assert stats["delivery.refused"] == 1 and stats["delivery.refused." + event] == 1
        with pytest.raises(d.IllegalMove):
            d.next_state(state, event)
    else:
        assert moved and row.state == expected
        if expected in ("failed", "interrupted") and expected != state:
            assert row.reason in d.REASONS, "a failure without an operator's reason"


def test_a_refused_move_is_logged_with_what_was_refused(caplog):
    with caplog.at_level(logging.WARNING, logger="headend.services.deliveries"):
        d._refused_log._window_start = None  # a fresh minute: the budget has room
        assert not d.move(delivery("played"), d.STARTED, at=T0)
    assert "played --started-->" in caplog.text


def test_a_new_delivery_is_sent_or_waits_for_its_receiver_or_has_no_codec():
    assert {e: s for (st, e), s in d.TRANSITIONS.items() if st is d.NEW} == {
        d.SENT: "pending", d.OFFLINE_AT_SEND: "offline", d.NO_CODEC: "failed"}
    assert d.initial(d.NO_CODEC) == {"state": "failed", "reason": "no-codec",
                                     "reason_detail": None}
    assert d.initial(d.SENT)["state"] == "pending"
    with pytest.raises(d.IllegalMove):
        d.initial(d.STARTED)


def test_played_and_preempted_are_final_whatever_comes_later():
    for state in DELIVERY_FINAL:
        legal = {e for (s, e), new in d.TRANSITIONS.items() if s == state}
        assert legal == {d.ACKED, d.REFUSED, d.CANCEL_REQUESTED}
        assert all(d.TRANSITIONS[(state, e)] == state for e in legal)


@pytest.mark.parametrize("guess", GUESSES)
def test_the_receivers_own_report_corrects_every_guess_of_the_headend(guess):
    outcomes = {d.ENDED_FINISHED: "played", d.ENDED_PREEMPTED: "preempted",
                d.ENDED_CANCELLED: "cancelled", d.ENDED_FAILED: "failed"}
    for event, outcome in outcomes.items():
        row = delivery(guess)
        row.reason = "receiver-restarted"
        assert d.move(row, event, at=T0 + timedelta(seconds=5))
        assert row.state == outcome and row.ended_at == T0 + timedelta(seconds=5)
        assert row.reason == ("finished" if outcome == "played" else event.split("-", 1)[1])
    row = delivery(guess)
    assert d.move(row, d.STARTED, at=T0) and row.state == "playing"
    assert row.reason is None and row.started_at == T0


def test_only_a_playing_delivery_is_interrupted_and_only_by_the_headends_conclusions():
    into = {(s, e) for (s, e), new in d.TRANSITIONS.items()
            if new == "interrupted" and s != "interrupted"}
    assert into == {("playing", d.RECEIVER_RESTARTED), ("playing", d.END_UNREPORTED)}
    row = delivery("playing")
    d.move(row, d.RECEIVER_RESTARTED, at=T0)
    assert (row.state, row.reason, row.ended_at) == ("interrupted", "receiver-restarted", T0)


def test_cancelling_waits_for_a_playing_receiver_and_settles_the_waiting_ones():
    for state in ("pending", "offline", "fetched"):
        row = delivery(state)
        d.move(row, d.CANCEL_REQUESTED, at=T0)
        assert (row.state, row.reason, row.ended_at) == ("cancelled", "cancelled", None)
    row = delivery("playing")
    d.move(row, d.CANCEL_REQUESTED, at=T0)
    assert row.state == "playing"  # until it reports "ended cancelled"
    d.move(row, d.ENDED_CANCELLED, at=T0)
    assert (row.state, row.ended_at) == ("cancelled", T0)


def test_a_window_over_settles_what_waits_with_the_reason_given():
    for state, reason in (("pending", "no-report"), ("fetched", "no-report"),
                          ("offline", "receiver-offline")):
        row = delivery(state)
        assert d.move(row, d.WINDOW_OVER, at=T0, reason=reason)
        assert (row.state, row.reason, row.ended_at) == ("failed", reason, None)
    row = delivery("offline")
    d.move(row, d.HEADEND_DOWN, at=T0)
    assert row.reason == "headend-down"
    assert not d.move(delivery("playing"), d.WINDOW_OVER, at=T0)


def test_no_state_is_a_dead_end():
    """Every state is reachable from a new delivery, and from every state that is not settled
    a settled one can be reached: nothing waits for ever by the table."""
    reach = {d.NEW}
    while True:
        more = {new for (s, _e), new in d.TRANSITIONS.items() if s in reach} - reach
        if not more:
            break
        reach |= more
    assert reach - {d.NEW} == set(DELIVERY_STATES)
    for state in set(DELIVERY_STATES) - set(DELIVERY_TERMINAL):
        assert any(new in DELIVERY_TERMINAL for (s, _e), new in d.TRANSITIONS.items()
                   if s == state), state


def test_a_date_only_event_keeps_the_state_and_its_reason():
    row = delivery("failed")
    row.reason, row.reason_detail = "fetch-failed", "http 404"
    assert d.move(row, d.REFUSED, at=T0, reason="replay")
    assert (row.state, row.reason, row.reason_detail) == ("failed", "fetch-failed", "http 404")
    row = delivery("pending")
    d.move(row, d.ACKED, at=T0)
    d.move(row, d.ACKED, at=T0 + timedelta(seconds=9))
    assert row.acked_at == T0 and row.state == "pending"


def test_a_fetch_that_works_on_a_retry_clears_the_failure():
    row = delivery("pending")
    d.move(row, d.FETCH_FAILED, at=T0, reason="fetch-failed", detail="connect failed")
    assert (row.state, row.reason, row.reason_detail, row.ended_at) == (
        "failed", "fetch-failed", "connect failed", T0)
    d.move(row, d.FETCHED, at=T0 + timedelta(seconds=30))
    assert (row.state, row.reason, row.reason_detail, row.ended_at) == (
        "fetched", None, None, None)


# -- reasons --------------------------------------------------------------------------------

@pytest.mark.parametrize("reason, detail, expected", [
    ("finished", None, ("finished", None)),
    ("preempted", "x", ("preempted", None)),
    ("failed", None, ("failed", None)),
    ("failed", "missed", ("missed", None)),
    ("failed", "not-cached", ("not-cached", None)),
    ("failed", "stream-timeout", ("stream-timeout", None)),
    ("failed", "player: MemoryError", ("player-error", "MemoryError")),
    ("failed", "vs1053: DREQ stuck low", ("sink-failed", "vs1053: DREQ stuck low")),
    ("failed", "x" * 500, ("sink-failed", "x" * 120)),
    ("failed", 7, ("failed", None)),
])
def test_an_end_report_becomes_a_code_and_the_receivers_detail(reason, detail, expected):
    assert d.end_reason(reason, detail) == expected


def test_refusals_and_fetch_failures_become_codes():
    assert d.refusal_reason("expired") == ("expired", None)
    assert d.refusal_reason("unsupported-codec") == ("no-codec", None)
    assert d.refusal_reason("bad-field") == ("refused", "bad-field")
    assert d.refusal_reason(None) == ("refused", None)
    assert d.fetch_reason("http 404") == ("fetch-failed", "http 404")
    assert d.fetch_reason("fetch: OSError") == ("fetch-failed", "OSError")
    assert d.fetch_reason("cache-full") == ("cache-full", None)
    assert d.fetch_reason("a\x00b") == ("fetch-failed", "ab")


def test_every_reason_has_words_in_vietnamese_and_english():
    assert d.check_catalog() == []
    for code in d.REASONS:
        vi, en = MESSAGES["reason." + code]
        assert vi.strip() and en.strip() and vi != en, code
        # Vietnamese with its diacritics, never an unaccented stand-in
        assert re.search("[àáảãạăắằẳẵặâấầẩẫậđèéẻẽẹêếềểễệìíỉĩịòóỏõọôốồổỗộơớờởỡợùúủũụưứừửữựỳýỷỹỵ]",
                         vi), code
    assert d.reason_text("fetch-failed", "http 404") == {
        "vi": MESSAGES["reason.fetch-failed"][0] + ": http 404",
        "en": MESSAGES["reason.fetch-failed"][1] + ": http 404"}
    assert d.reason_text(None) is None
    assert d.reason_text("from-a-newer-headend")["en"] == "from-a-newer-headend"


# -- the broadcast's state ------------------------------------------------------------------

def broadcast(cancelled=False):
    return Broadcast(id="b1", start_at=T0, valid_until=T0 + timedelta(seconds=60),
                     cancelled_at=T0 if cancelled else None)


@pytest.mark.parametrize("states, when, expected", [
    (["pending", "offline"], 0, "scheduled"),
    (["playing", "played"], 30, "playing"),
    (["played", "pending"], 30, "playing"),
    (["played", "played"], 200, "played"),
    (["played", "interrupted"], 200, "partial"),
    (["interrupted", "interrupted"], 30, "interrupted"),
    (["interrupted", "failed"], 200, "interrupted"),
    (["preempted", "interrupted"], 200, "preempted"),
    (["failed", "failed"], 200, "failed"),
    (["interrupted", "offline"], 30, "interrupted"),
    (["offline"], 200, "failed"),
])
def test_the_broadcast_state_is_derived_from_its_deliveries(states, when, expected):
    assert d.summarise(broadcast(), states, T0 + timedelta(seconds=when)) == expected


def test_a_cancelled_broadcast_is_cancelled_and_playing_needs_a_playing_receiver():
    assert d.summarise(broadcast(cancelled=True), ["playing"], T0) == "cancelled"
    for states in (["interrupted"] * 12, ["failed", "interrupted", "played"]):
        assert d.summarise(broadcast(), states, T0 + timedelta(seconds=3)) != "playing"
