# The MQTT client's connect path (firmware/mqtt.py): DNS once per connect cycle, and TLS
# failures told from TCP ones. A counting resolver and a dialer that refuses every address but
# the broker's stand in for the platform; the broker is the scripted one of test_mqtt_packets.
# Runs under CPython pytest and under MicroPython (tools/mptest): plain asserts, no pytest.

import asyncio

try:
    from test_mqtt_packets import _client, _ScriptedBroker, _until
except ImportError:  # CPython: tests/mpy is a package there
    from .test_mqtt_packets import _client, _ScriptedBroker, _until

BROKER = "10.0.0.2"
_ECONNREFUSED = 111
_MBEDTLS_X509_CERT_VERIFY_FAILED = -0x2700


class _Resolver:
    """Answers lookups from a script (None: the lookup fails); the last answer repeats."""

    def __init__(self, answers, log):
        self.answers = answers
        self.asked = 0
        self.log = log

    async def resolve(self, host, port):
        self.asked += 1
        self.log.append("R")
        answer = self.answers[min(self.asked, len(self.answers)) - 1]
        if answer is None:
            raise OSError(-2)  # what the ESP32 port raises for a name it cannot find
        return answer


class _Dialer:
    """Connects to the scripted broker at ``address`` only; anything else is refused. While
    ``errors`` holds some, each dial fails with the next one instead."""

    def __init__(self, broker, log, address=BROKER):
        self.broker = broker
        self.log = log
        self.address = address
        self.errors = []
        self.names = []  # server_hostname of each dial that had one

    async def open_connection(self, host, port, ssl, server_hostname=None):
        self.log.append(host)
        if server_hostname is not None:
            self.names.append(server_hostname)
        if self.errors:
            raise self.errors.pop(0)
        if host != self.address:
            raise OSError(_ECONNREFUSED)
        return await self.broker.open_connection(host, port, ssl)


def _rig(answers, **options):
    log = []
    broker = _ScriptedBroker()
    resolver = _Resolver(answers, log)
    dialer = _Dialer(broker, log)
    client, _messages, _reasons = _client(broker, open_connection=dialer.open_connection,
                                          resolve=resolver.resolve, **options)
    return client, resolver, dialer, broker, log


async def _stop(client, runner):
    await client.close()
    await _until(lambda: runner.done())
    assert runner.done()


def _groups(log):
    """The dials that followed each lookup, from the event log: [[address, ...], ...]."""
    groups = []
    for entry in log:
        if entry == "R":
            groups.append([])
        else:
            groups[-1].append(entry)
    return groups


async def _exercise_one_lookup_per_cycle():
    # DNS gives a stale address: every attempt fails, and a cycle ends after three of them.
    client, resolver, _dialer, _broker, log = _rig(["10.0.0.9"])
    runner = asyncio.create_task(client.run())
    assert await _until(lambda: client.stats["connect_failures"] >= 10)
    await _stop(client, runner)
    groups = _groups(log)
    assert len(groups) >= 4, log
    for group in groups[:-1]:
        assert group == ["10.0.0.9"] * 3, log  # one lookup, then its address three times
    assert 1 <= len(groups[-1]) <= 3, log
    assert client.stats["resolves"] == resolver.asked == len(groups)
    assert client.stats["dns_failures"] == 0 and client.stats["tls_failures"] == 0


async def test_a_connect_cycle_asks_dns_once_for_its_attempts():
    await asyncio.create_task(_exercise_one_lookup_per_cycle())


async def _exercise_new_cycle_after_loss():
    client, resolver, dialer, broker, log = _rig([BROKER, "10.0.0.3"])
    runner = asyncio.create_task(client.run())
    assert await client.wait_connected(3000)
    assert resolver.asked == 1 and broker.connections == 1
    # The broker moves to another address; the connection to the old one is lost.
    dialer.address = "10.0.0.3"
    client.abort()
    assert await _until(lambda: broker.connections == 2 and client.connected)
    assert resolver.asked == 2, log  # a new cycle asked again, and followed the broker
    assert log == ["R", BROKER, "R", "10.0.0.3"], log
    await _stop(client, runner)


async def test_a_lost_connection_starts_a_new_cycle_that_follows_a_moved_broker():
    await asyncio.create_task(_exercise_new_cycle_after_loss())


async def _exercise_dns_down():
    client, resolver, _dialer, broker, log = _rig([BROKER, None])
    runner = asyncio.create_task(client.run())
    assert await client.wait_connected(3000)
    client.abort()
    # The lookup fails now: the address the last one gave still serves.
    assert await _until(lambda: broker.connections == 2 and client.connected)
    assert client.stats["dns_failures"] == 1 and resolver.asked == 2
    assert log == ["R", BROKER, "R", BROKER], log
    await _stop(client, runner)


async def test_a_failed_lookup_keeps_the_last_address_that_resolved():
    await asyncio.create_task(_exercise_dns_down())


async def _exercise_never_resolved():
    client, resolver, _dialer, broker, log = _rig([None])
    runner = asyncio.create_task(client.run())
    assert await _until(lambda: client.stats["connect_failures"] >= 3)
    await _stop(client, runner)
    # Nothing to dial without an answer: each attempt asks again (after its backoff).
    assert "R" in log and all(entry == "R" for entry in log), log
    assert client.stats["dns_failures"] == resolver.asked == client.stats["connect_failures"]
    assert broker.connections == 0


async def test_with_no_answer_yet_each_attempt_asks_again():
    await asyncio.create_task(_exercise_never_resolved())


class SSLError(OSError):
    """Stands in for CPython's ssl.SSLError (an OSError subclass named so)."""


async def _exercise_tls_failures():
    client, _resolver, dialer, _broker, _log = _rig([BROKER], ssl=object(),
                                                   server_hostname="broker.xa-01.lan")
    # What the board's mbedtls raises for a certificate it refuses (the reasons, as ValueError),
    # what it raises with an mbedtls code, then what CPython raises; last a plain TCP refusal.
    dialer.errors = [ValueError("The certificate is not correctly signed by the trusted CA"),
                     OSError(_MBEDTLS_X509_CERT_VERIFY_FAILED),
                     SSLError(1, "certificate verify failed"), OSError(_ECONNREFUSED)]
    dialer.address = "10.0.0.9"  # then refused by TCP, forever
    runner = asyncio.create_task(client.run())
    assert await _until(lambda: client.stats["connect_failures"] >= 6)
    await _stop(client, runner)
    assert client.stats["tls_failures"] == 3, client.stats
    assert client.stats["connect_failures"] >= 6 and client.stats["connects"] == 0
    # Every dial named the broker for the certificate check, though it went to an address.
    assert dialer.names and all(name == "broker.xa-01.lan" for name in dialer.names)


async def test_tls_failures_are_told_from_tcp_ones():
    await asyncio.create_task(_exercise_tls_failures())


async def _exercise_plain_dial():
    client, _resolver, dialer, _broker, _log = _rig([BROKER])
    runner = asyncio.create_task(client.run())
    assert await client.wait_connected(3000)
    await _stop(client, runner)
    assert dialer.names == []  # no TLS, no server_hostname: the dial is as it always was


async def test_without_tls_no_server_name_is_passed():
    await asyncio.create_task(_exercise_plain_dial())
