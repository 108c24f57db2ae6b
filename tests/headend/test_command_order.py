"""Per receiver, signed commands reach the broker in counter order (headend/commands.py's
``Sequencer``). Two threads that sign for one receiver commit in counter order, but without
the sequencer the second can publish first: the receiver accepts the higher counter and
refuses the lower one as a replay, a command silently lost. The interleaving is forced with
events, never left to timing."""

import logging
import threading

import pytest

from firmware.guard import CommandGuard
from headend.commands import SEQUENCER, Command, prepare
from headend.planning import now_ms
from protocol.errors import ProtocolError
from protocol.signing import key_from_hex

DEVICE = "a1"


class Holds(logging.Handler):
    """Sets ``event`` when the sequencer holds a message back (its debug record)."""

    def __init__(self, event):
        super().__init__(logging.DEBUG)
        self.event = event

    def emit(self, record):
        if record.getMessage().startswith("holding"):
            self.event.set()


@pytest.fixture
def holds(caplog):
    caplog.set_level(logging.DEBUG, logger="headend.commands")
    event = threading.Event()
    handler = Holds(event)
    logging.getLogger("headend.commands").addHandler(handler)
    yield event
    logging.getLogger("headend.commands").removeHandler(handler)


def sign(app, kind, args, now=None):
    """Prepare one command for DEVICE and commit it, as every call site does."""
    settings = app.state.settings
    with app.state.session_factory() as session:
        out = prepare(session, site_id=settings.site_id, ttl_s=60, now=now,
                      commands=[Command(DEVICE, kind, args)])
        session.commit()
    return out


def received(commune, app):
    """What the receiver does with the recorded commands, in publication order."""
    guard = CommandGuard(key_from_hex(commune.keys[DEVICE]), DEVICE)
    verdicts = []
    for message in app.state.publisher.sent:
        if message.device_id != DEVICE:
            continue
        try:
            cmd = guard.check(message.payload, now_ms())
        except ProtocolError as exc:
            verdicts.append(exc.reason)
            continue
        guard.accept(cmd)
        verdicts.append(cmd["k"])
    return verdicts


def run(*targets):
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as exc:  # reported in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads), "a signer is stuck"
    assert errors == []


def test_a_command_committed_first_is_not_overtaken_by_a_later_one(commune, app, holds):
    """A commits counter n and is slow to publish; B gets n+1 and publishes at once. The
    receiver must see n then n+1, so it acts on both."""
    a_committed = threading.Event()
    b_went = holds  # B's publication returned, or the sequencer is holding it back

    def a():
        out = sign(app, "volume", {"vol": 40})
        a_committed.set()
        assert b_went.wait(20), "B neither published nor was held"
        app.state.publisher.publish_many(out)

    def b():
        assert a_committed.wait(20)
        out = sign(app, "volume", {"vol": 60})
        app.state.publisher.publish_many(out)
        b_went.set()

    run(a, b)
    assert received(commune, app) == ["volume", "volume"]


def test_a_rolled_back_or_closed_preparation_holds_nothing_back(commune, app, holds):
    """A counter prepared in a session that rolls back (or closes without commit) was never
    stored: nothing waits for it."""
    settings = app.state.settings
    start = now_ms()
    for end in ("rollback", "close"):
        session = app.state.session_factory()
        prepare(session, site_id=settings.site_id, ttl_s=60, now=start,
                commands=[Command(DEVICE, "volume", {"vol": 10})])
        getattr(session, end)()
        session.close()
        start += 1000
        out = sign(app, "volume", {"vol": 20}, now=start)  # a higher counter
        app.state.publisher.publish_many(out)
    assert not holds.is_set()
    assert SEQUENCER.pending_count() == 0
    assert received(commune, app) == ["volume", "volume"]


def test_a_counter_never_published_stalls_its_receiver_only_for_the_bound(
        commune, app, holds, caplog, monkeypatch):
    monkeypatch.setattr(SEQUENCER, "hold_s", 0.2)
    sign(app, "volume", {"vol": 10})  # committed, then its caller died before publishing
    out = sign(app, "volume", {"vol": 20})
    app.state.publisher.publish_many(out)  # held (unless this test was slower than the bound)
    assert [r for r in caplog.records if r.levelno == logging.WARNING
            and "not published within" in r.getMessage() and DEVICE in r.getMessage()]
    holds.clear()
    app.state.publisher.publish_many(sign(app, "volume", {"vol": 30}))
    assert not holds.is_set()  # the lost counter was let go once, not waited for again
    assert SEQUENCER.pending_count() == 0
    assert received(commune, app) == ["volume", "volume"]
