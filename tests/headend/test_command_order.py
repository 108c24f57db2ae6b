"""Per receiver, signed commands reach the broker in counter order (headend/commands.py's
``Sequencer``). Two threads that sign for one receiver commit in counter order, but without
the sequencer the second can publish first: the receiver accepts the higher counter and
refuses the lower one as a replay, a command silently lost. The interleaving is forced with
events, never left to timing."""

import logging
import threading

import paho.mqtt.client as mqtt
import pytest
from polling import wait_for
from sqlalchemy.orm import Session

from firmware.guard import CommandGuard
from headend.commands import SEQUENCER, Command, Sequencer, prepare
from headend.db import make_engine, make_session_factory, migrate
from headend.mqtt.service import MqttService
from headend.planning import Outgoing, now_ms
from headend.services.devices import provision_device
from headend.settings import Settings
from protocol import topics
from protocol.errors import ProtocolError
from protocol.signing import key_from_hex

DEVICE = "a1"
SITE = "xa-order"


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


def sign(factory, site_id, kind, args, now=None):
    """Prepare one command for DEVICE and commit it, as every call site does."""
    with factory() as session:
        out = prepare(session, site_id=site_id, ttl_s=60, now=now,
                      commands=[Command(DEVICE, kind, args)])
        session.commit()
    return out


def verdicts(key_hex, payloads):
    """What the receiver does with these commands, in the order they reached it."""
    guard = CommandGuard(key_from_hex(key_hex), DEVICE)
    out = []
    for payload in payloads:
        try:
            cmd = guard.check(payload, now_ms())
        except ProtocolError as exc:
            out.append(exc.reason)
            continue
        guard.accept(cmd)
        out.append(cmd["k"])
    return out


def received(commune, app):
    return verdicts(commune.keys[DEVICE], [m.payload for m in app.state.publisher.sent
                                           if m.device_id == DEVICE])


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


def overtake(factory, site_id, publish_many, holds):
    """A commits counter n and is slow to publish; B gets n+1 and publishes at once; A
    publishes once B's publication returned, or the sequencer holds it back (``holds``)."""
    a_committed = threading.Event()
    b_went = holds

    def a():
        out = sign(factory, site_id, "volume", {"vol": 40})
        a_committed.set()
        assert b_went.wait(20), "B neither published nor was held"
        publish_many(out)

    def b():
        assert a_committed.wait(20)
        publish_many(sign(factory, site_id, "volume", {"vol": 60}))
        b_went.set()

    run(a, b)


def test_a_command_committed_first_is_not_overtaken_by_a_later_one(commune, app, holds):
    """The receiver must see n then n+1, so it acts on both (without the sequencer:
    ["volume", "replay"])."""
    overtake(app.state.session_factory, app.state.settings.site_id,
             app.state.publisher.publish_many, holds)
    assert received(commune, app) == ["volume", "volume"]


def test_the_mqtt_service_keeps_the_order_on_a_real_broker(tmp_path, mosquitto_broker, holds):
    url = "sqlite:///%s" % (tmp_path / "h.sqlite3")
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    settings = Settings(data_dir=tmp_path, database_url=url, site_id=SITE,
                        mqtt_host=mosquitto_broker.host, mqtt_port=mosquitto_broker.port)
    with factory() as session:
        key = provision_device(session, site_id=SITE, name=DEVICE, device_id=DEVICE,
                               settings=settings).device_key
    got, subscribed = [], threading.Event()
    board = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE)
    board.on_message = lambda _c, _u, m: got.append(m.payload)
    board.on_subscribe = lambda *_: subscribed.set()
    board.on_connect = lambda c, *_: c.subscribe(topics.device_topic(SITE, DEVICE, topics.CMD),
                                                 qos=1)
    board.connect(mosquitto_broker.host, mosquitto_broker.port)
    board.loop_start()
    service = MqttService(settings=settings, session_factory=factory).start()
    try:
        assert service.wait_connected(10), "head-end did not connect"
        assert subscribed.wait(10), "the receiver did not subscribe"
        overtake(factory, SITE, service.publish_many, holds)
        wait_for(lambda: len(got) == 2, what="both commands at the receiver")
        assert verdicts(key, got) == ["volume", "volume"]
    finally:
        service.stop()
        board.disconnect()
        board.loop_stop()
        engine.dispose()


def test_a_rolled_back_or_closed_preparation_holds_nothing_back(commune, app, holds):
    """A counter prepared in a session that rolls back (or closes without commit) was never
    stored: nothing waits for it."""
    factory, site = app.state.session_factory, app.state.settings.site_id
    start = now_ms()
    for end in ("rollback", "close"):
        session = factory()
        prepare(session, site_id=site, ttl_s=60, now=start,
                commands=[Command(DEVICE, "volume", {"vol": 10})])
        getattr(session, end)()
        session.close()
        start += 1000
        out = sign(factory, site, "volume", {"vol": 20}, now=start)  # a higher counter
        app.state.publisher.publish_many(out)
    assert not holds.is_set()
    assert SEQUENCER.pending_count() == 0
    assert received(commune, app) == ["volume", "volume"]


def test_a_counter_never_published_stalls_its_receiver_only_for_the_bound(
        commune, app, holds, caplog, monkeypatch):
    monkeypatch.setattr(SEQUENCER, "hold_s", 0.2)
    factory, site = app.state.session_factory, app.state.settings.site_id
    sign(factory, site, "volume", {"vol": 10})  # committed, then its caller died unpublished
    out = sign(factory, site, "volume", {"vol": 20})
    app.state.publisher.publish_many(out)  # held (unless this test was slower than the bound)
    assert [r for r in caplog.records if r.levelno == logging.WARNING
            and "not published within" in r.getMessage() and DEVICE in r.getMessage()]
    holds.clear()
    app.state.publisher.publish_many(sign(factory, site, "volume", {"vol": 30}))
    assert not holds.is_set()  # the lost counter was let go once, not waited for again
    assert SEQUENCER.pending_count() == 0
    assert received(commune, app) == ["volume", "volume"]


def batch(*ctrs):
    return [Outgoing(DEVICE, "loaxa/x/%s/cmd" % DEVICE, b"", 1, ctr) for ctr in ctrs]


def test_one_call_is_sent_in_counter_order_and_a_failed_send_holds_nothing_back():
    """The sequencer alone (an unbound session: only its transaction events count)."""
    sequencer, sent = Sequencer(), []
    with Session() as session:
        sequencer.register(session, batch(5, 6, 7))
        session.commit()
    sequencer.publish(batch(7, 6, 5), lambda m: sent.append(m.ctr))
    assert sent == [5, 6, 7] and sequencer.pending_count() == 0

    def broker_gone(_message):
        raise ConnectionError("broker gone")

    with Session() as session:
        sequencer.register(session, batch(8, 9))
        session.commit()
    with pytest.raises(ConnectionError):
        sequencer.publish(batch(8), broker_gone)
    assert sequencer.pending_count() == 1  # 9 only: 8 is abandoned
    sequencer.publish(batch(9), lambda m: sent.append(m.ctr))  # not held behind 8
    assert sent[-1] == 9 and sequencer.pending_count() == 0
