"""The receiver's side of TLS to the broker: what its config must hold, what the board builds.

- firmware/config.py refuses ``"tls": true`` without the site's CA (no silent unverified TLS),
  and a CA that is not a whole certificate, with a reason;
- the ESP32 platform (firmware/hw/esp32.py) builds ``ssl.SSLContext(PROTOCOL_TLS_CLIENT)`` with
  ``verify_mode = CERT_REQUIRED`` and the CA from ``load_verify_locations(cadata=DER)``, passes
  ``server_hostname`` to ``asyncio.open_connection`` and resolves with ``getaddrinfo`` (checked
  against a fake ``ssl`` module shaped like MicroPython's, whose contexts start at CERT_NONE,
  and against CPython's real one);
- the shell wires it: the same config on the simulator's board gives a verifying CPython
  context, the broker's name to check and the platform's resolver.
"""

import asyncio
import base64
import importlib
import ssl
import sys
import types

import pytest
from cryptography.hazmat.primitives import serialization

from firmware import config as configuration
from firmware.shell import Receiver
from headend.services import tls
from headend.settings import Settings
from simulator.host import HostPlatform

KEY = "ab" * 32


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    """(base64 DER, PEM, DER) of a site CA made by the provisioning code."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("headend"), site_id="xa-cfg")
    cert = tls.ca_certificate(settings=settings)
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return base64.b64encode(der).decode(), pem, der


def receiver_config(**broker):
    cfg = {"device": "rx-1", "site": "xa-cfg", "key": KEY, "link": {"type": "sim"},
           "broker": dict({"host": "broker.xa-cfg.lan", "port": 8883}, **broker)}
    return configuration.merge(configuration.DEFAULTS, cfg)


def refused(cfg):
    with pytest.raises(configuration.ConfigError) as info:
        configuration.validate(cfg)
    return str(info.value)


# -- validation ------------------------------------------------------------------------------

def test_tls_without_the_sites_ca_is_refused_with_a_clear_reason():
    reason = refused(receiver_config(tls=True))
    assert "broker.ca" in reason and "does not connect without it" in reason


def test_tls_with_the_ca_as_base64_der_or_pem_is_accepted(ca):
    b64, pem, der = ca
    for text in (b64, pem, "\n" + pem + "\n", b64[:40] + "\n" + b64[40:]):
        cfg = configuration.validate(receiver_config(tls=True, ca=text))
        assert configuration.ca_der(cfg["broker"]["ca"]) == der


def test_a_ca_that_is_not_a_whole_certificate_is_refused(ca):
    b64, pem, _der = ca
    key_pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n"
    for text, why in ((b64[:-20], "not a certificate"), ("bm90IGEgY2VydA==", "not a certificate"),
                      (pem.split("-----END")[0], "END line"), (key_pem, "private key"),
                      (12, "must be a string")):
        assert why in refused(receiver_config(tls=True, ca=text)), text


def test_tls_must_be_true_or_false_and_plain_mqtt_needs_no_ca():
    assert "true or false" in refused(receiver_config(tls="yes"))
    cfg = receiver_config(tls=False)
    assert configuration.validate(cfg)["broker"]["ca"] is None


def test_server_name_must_be_a_name(ca):
    assert "server_name" in refused(receiver_config(tls=True, ca=ca[0], server_name=""))


def test_the_ca_is_public_but_the_password_stays_redacted(ca):
    cfg = configuration.validate(receiver_config(tls=True, ca=ca[0], password="mat-khau"))
    shown = configuration.redacted(cfg)
    assert shown["broker"]["password"] == "***" and shown["broker"]["ca"] == ca[0]


# -- the board (firmware/hw/esp32.py) --------------------------------------------------------

class MicroPythonSSLContext:
    """Shaped like MicroPython's ssl.SSLContext: starts at CERT_NONE (micropython-lib ssl.py)."""

    made = []

    def __init__(self, protocol):
        self.protocol = protocol
        self.verify_mode = 0
        self.cadata = None
        MicroPythonSSLContext.made.append(self)

    def load_verify_locations(self, cafile=None, cadata=None):
        self.cadata = cadata


@pytest.fixture
def esp32(monkeypatch):
    """firmware.hw.esp32 imported over fake machine/network/esp32 modules."""
    machine = types.ModuleType("machine")
    for name in ("ADC", "WDT", "Pin", "RTC", "SPI", "I2S"):
        setattr(machine, name, object)
    machine.reset = lambda: None
    network = types.ModuleType("network")
    for name, module in (("machine", machine), ("network", network),
                         ("esp32", types.ModuleType("esp32"))):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "firmware.hw.esp32", raising=False)
    return importlib.import_module("firmware.hw.esp32")


def test_the_board_requires_the_certificate_against_the_sites_ca(esp32, ca, monkeypatch):
    fake = types.ModuleType("ssl")
    fake.PROTOCOL_TLS_CLIENT, fake.CERT_NONE, fake.CERT_REQUIRED = 0, 0, 2
    fake.SSLContext = MicroPythonSSLContext
    monkeypatch.setitem(sys.modules, "ssl", fake)
    context = esp32.Esp32Platform.tls_context(None, ca[2])
    assert context.protocol == fake.PROTOCOL_TLS_CLIENT
    assert context.verify_mode == fake.CERT_REQUIRED  # not MicroPython's CERT_NONE default
    assert context.cadata == ca[2]


def test_the_boards_context_under_cpythons_ssl_holds_the_ca(esp32, ca):
    context = esp32.Esp32Platform.tls_context(None, ca[2])
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.get_ca_certs(binary_form=True) == [ca[2]]


def test_the_board_dials_the_address_and_checks_the_name(esp32, monkeypatch):
    calls = []

    async def open_connection(host, port, ssl=None, server_hostname=None):
        calls.append((host, port, ssl, server_hostname))
        return "reader", "writer"

    monkeypatch.setattr(esp32.asyncio, "open_connection", open_connection)
    context = object()
    board = esp32.Esp32Platform.__new__(esp32.Esp32Platform)
    assert asyncio.run(board.open_connection("10.0.0.2", 8883, context,
                                             server_hostname="broker.xa-01.lan"))
    assert asyncio.run(board.open_connection("10.0.0.9", 80))
    assert calls == [("10.0.0.2", 8883, context, "broker.xa-01.lan"), ("10.0.0.9", 80, None, None)]


def test_the_board_resolves_with_getaddrinfo(esp32, monkeypatch):
    asked = []

    def getaddrinfo(host, port, family=0, kind=0):
        asked.append((host, port, kind))
        return [(2, 1, 0, "", ("10.0.0.2", port))]  # the ESP32 port's shape

    monkeypatch.setattr(esp32.socket, "getaddrinfo", getaddrinfo)
    board = esp32.Esp32Platform.__new__(esp32.Esp32Platform)
    assert asyncio.run(board.resolve("broker.xa-01.lan", 8883)) == "10.0.0.2"
    assert asked == [("broker.xa-01.lan", 8883, esp32.socket.SOCK_STREAM)]
    # A port whose getaddrinfo gives a raw sockaddr: the name goes to the dial.
    monkeypatch.setattr(esp32.socket, "getaddrinfo", lambda *a: [(2, 1, 0, "", b"\x02\x00")])
    assert asyncio.run(board.resolve("broker.xa-01.lan", 8883)) == "broker.xa-01.lan"


# -- the shell, on the simulator's board ----------------------------------------------------

async def test_the_shell_builds_a_verifying_client_for_a_tls_config(ca, tmp_path):
    platform = HostPlatform("rx-1", storage_dir=str(tmp_path / "flash"))
    rx = Receiver(receiver_config(tls=True, ca=ca[1]), platform)
    mqtt = rx.mqtt
    assert isinstance(mqtt.ssl, ssl.SSLContext)
    assert mqtt.ssl.verify_mode == ssl.CERT_REQUIRED and mqtt.ssl.check_hostname
    assert mqtt.ssl.get_ca_certs(binary_form=True) == [ca[2]]
    assert mqtt.server_hostname == "broker.xa-cfg.lan"  # server_name defaults to the host
    assert mqtt._resolve_host == platform.resolve
    rx = Receiver(receiver_config(tls=True, ca=ca[0], server_name="mqtt.xa-cfg.lan"), platform)
    assert rx.mqtt.server_hostname == "mqtt.xa-cfg.lan"
    rx = Receiver(receiver_config(), platform)
    assert rx.mqtt.ssl is None and rx.mqtt.server_hostname is None


async def test_the_simulators_dns_counts_lookups_and_fails_while_cut(tmp_path):
    platform = HostPlatform("rx-1", storage_dir=str(tmp_path / "flash"))
    platform.link.hosts["broker.xa-cfg.lan"] = "10.0.0.2"
    assert await platform.resolve("broker.xa-cfg.lan", 8883) == "10.0.0.2"
    assert await platform.resolve("127.0.0.1", 8883) == "127.0.0.1"
    assert await platform.resolve("localhost", 8883) == "127.0.0.1"  # IPv4, as on the board
    platform.link.cut()
    with pytest.raises(OSError):
        await platform.resolve("broker.xa-cfg.lan", 8883)
    assert platform.link.resolves == 4
