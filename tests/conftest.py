"""Shared fixtures: real MQTT brokers on free ports of 127.0.0.1, stopped after each test.

Every fixture gives a fresh broker (no retained messages or sessions left by another test).
A broker handle has ``.host``, ``.port``, ``.stop()`` (graceful), ``.kill()`` (power cut),
``.start()`` and ``.restart()`` (same port), and ``.log_text()`` for failure messages.
A restarted broker starts empty (no persistence): no retained messages, no sessions.
The implementation lives in ``tools/testbrokers.py`` so benchmarks can use it too.
"""

import sys

import pytest

from tools.testbrokers import (
    HEADEND_USER,
    BrokerUnavailable,
    start_embedded_broker,
    start_mosquitto,
)

BROKER_KINDS = ("mosquitto", "amqtt")


class _Brokers:
    """Starts brokers for one test and stops every one of them afterwards."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._started = []

    def mosquitto(self, port=None, accounts=None, extra_conf=()):
        try:
            broker = start_mosquitto(self._tmp.mktemp("mosquitto"), port=port, accounts=accounts,
                                     extra_conf=extra_conf)
        except BrokerUnavailable as exc:
            pytest.skip(str(exc))
        self._started.append(broker)
        return broker

    def amqtt(self, port=None):
        broker = start_embedded_broker(self._tmp.mktemp("amqtt"), port=port)
        self._started.append(broker)
        return broker

    def of_kind(self, kind, port=None):
        return self.mosquitto(port=port) if kind == "mosquitto" else self.amqtt(port=port)

    def stop_all(self):
        for broker in self._started:
            broker.stop()


@pytest.fixture
def broker_factory(tmp_path_factory):
    """``broker_factory.mosquitto(port=None, accounts=None)``, ``.amqtt(port=None)``,
    ``.of_kind("mosquitto" | "amqtt")``: as many brokers as a test needs, all stopped after."""
    brokers = _Brokers(tmp_path_factory)
    yield brokers
    brokers.stop_all()


@pytest.fixture
def mosquitto_broker(broker_factory):
    """A fresh anonymous Mosquitto on 127.0.0.1."""
    return broker_factory.mosquitto()


@pytest.fixture
def embedded_broker(broker_factory):
    """A fresh embedded broker (`loaxa broker`, amqtt) in its own process on 127.0.0.1."""
    return broker_factory.amqtt()


# The fleet's scenarios (tests/integration/test_fleet.py) run on both brokers; `make test`
# keeps their Mosquitto runs and `make test-slow` (CI) the embedded broker's, to stay under
# 20 minutes. The embedded broker keeps its own suites in `make test` (tests/test_brokers.py,
# test_mqtt_client.py, test_embedded_broker_security.py, security/test_broker_attacks.py).
SLOW_ON_AMQTT = ("test_fleet.py",)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("mqtt_broker") == "amqtt" \
                and item.path.name in SLOW_ON_AMQTT:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=BROKER_KINDS)
def mqtt_broker(request, broker_factory):
    """Each test using it runs twice: against Mosquitto and against the embedded broker."""
    return broker_factory.of_kind(request.param)


@pytest.fixture
def secure_mosquitto_factory(broker_factory):
    """``secure_mosquitto_factory({"dev1": "pw1", ...})`` starts a Mosquitto that refuses
    anonymous clients and holds each device account to its own topics (protocol/topics.py).
    The "headend" account (random password unless given; see ``broker.accounts``) may read
    and write all of ``loaxa/v1/#``."""

    def start(accounts, port=None):
        return broker_factory.mosquitto(port=port, accounts=accounts)

    start.headend_user = HEADEND_USER
    return start


# -- the receivers' runtime, for the fleet tests ----------------------------------------------
# ``runtime`` runs a test with CPython receivers (in this process) and with MicroPython
# receivers, each its own process of the MicroPython that computes like an ESP32
# (simulator/mp_runtime.py).

MIN_MICROPYTHON_RECEIVERS = 10


@pytest.fixture(params=["cpython", "micropython"])
def runtime(request):
    if request.param == "micropython":
        from tools import mpbuild

        if mpbuild.esp32_model() is None:
            pytest.skip("no ESP32-model MicroPython: %s" % mpbuild.skip_reason())
    return request.param


@pytest.fixture
def fleet_size(runtime):
    """``fleet_size(n)``: n receivers, at least ``MIN_MICROPYTHON_RECEIVERS`` when they are
    MicroPython processes."""
    def size(count):
        return max(count, MIN_MICROPYTHON_RECEIVERS) if runtime == "micropython" else count
    return size


@pytest.fixture(autouse=True)
def _fresh_command_sequencer():
    """A test that prepared commands it never published leaves their counters pending in
    headend/commands.py's sequencer: forget them, not to hold back the next test's."""
    yield
    commands = sys.modules.get("headend.commands")
    if commands is not None:
        commands.SEQUENCER.clear()
