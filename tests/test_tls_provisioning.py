"""The head-end's side of TLS to the broker (headend/services/tls.py, provisioning, the CLI).

Provisioning makes the site's CA once (EC P-256, keys 0600 in a 0700 folder, never logged) and
a broker certificate signed by it for the configured names; every receiver's config gets the
CA's certificate and the name to check, and nothing secret beyond its own key and broker
password; `loaxa headend export-broker-tls DIR` gives Mosquitto its files and listener.
"""

import base64
import ipaddress
import json
import logging
import stat
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from firmware import config as configuration
from headend.cli import main
from headend.db import make_engine, make_session_factory, migrate
from headend.services import tls
from headend.services.provisioning import provision_fleet, receiver_config
from headend.settings import Settings

NAMES = ["broker.xa-01.lan", "10.0.0.2"]


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "var", site_id="xa-01", broker_tls_names=NAMES)


@pytest.fixture
def session(settings):
    migrate(settings.resolved_database_url)
    session = make_session_factory(make_engine(settings.resolved_database_url))()
    yield session
    session.close()


def san(cert):
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (ext.get_values_for_type(x509.DNSName)
            + [str(a) for a in ext.get_values_for_type(x509.IPAddress)])


def secrets_of(settings):
    """Every private key's PEM text, its private scalar (hex and base64) and the PEM body's
    first line, which holds the scalar. The later lines hold the public key, which the
    certificates carry by design: one of them can match a line of a certificate's base64."""
    found = []
    for name in (tls.CA_KEY, tls.BROKER_KEY):
        text = (settings.resolved_tls_dir / name).read_text()
        scalar = serialization.load_pem_private_key(text.encode(), None) \
            .private_numbers().private_value.to_bytes(32, "big")
        body = [line for line in text.splitlines() if line and not line.startswith("-----")]
        found += [text, scalar.hex(), base64.b64encode(scalar).decode(), body[0]]
    return found


def test_the_site_ca_is_made_once_with_private_modes(settings):
    cert, key = tls.load_or_create_ca(settings=settings)
    again, _key = tls.load_or_create_ca(settings=settings)
    assert again.fingerprint(cert.signature_hash_algorithm) == \
        cert.fingerprint(cert.signature_hash_algorithm)
    folder = settings.resolved_tls_dir
    assert folder == settings.data_dir / "tls"
    assert mode(folder) == 0o700
    assert mode(folder / tls.CA_KEY) == 0o600
    assert mode(folder / tls.CA_CERT) == 0o644
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    # A board whose RTC restarted at 2000-01-01 must still accept it before its first sync.
    assert cert.not_valid_before_utc == datetime(2000, 1, 1, tzinfo=UTC)
    assert cert.not_valid_after_utc.year == 2049
    assert "xa-01" in cert.subject.rfc4514_string()


def test_half_a_ca_is_refused_rather_than_replaced(settings):
    tls.load_or_create_ca(settings=settings)
    (settings.resolved_tls_dir / tls.CA_KEY).unlink()
    with pytest.raises(tls.TlsError, match="half of the site's CA"):
        tls.load_or_create_ca(settings=settings)


def test_the_broker_certificate_is_signed_by_the_ca_for_its_names(settings):
    cert_path, key_path = tls.ensure_broker_certificate(settings=settings, names=NAMES)
    assert mode(key_path) == 0o600
    ca = tls.ca_certificate(settings=settings)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert set(san(cert)) == {"broker.xa-01.lan", "10.0.0.2"}
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ext.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.2")]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_before_utc.year == 2000
    # Kept while it serves; issued again for a new name, keeping the old ones.
    same, _ = tls.ensure_broker_certificate(settings=settings, names=["10.0.0.2"])
    assert same.read_bytes() == cert_path.read_bytes()
    tls.ensure_broker_certificate(settings=settings, names=["broker2.xa-01.lan"])
    renewed = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert set(san(renewed)) == {"broker2.xa-01.lan", "broker.xa-01.lan", "10.0.0.2"}
    assert tls.ca_certificate(settings=settings) == ca  # the CA itself never changes


def test_provisioning_gives_receivers_the_ca_and_nothing_secret_beyond_their_own(
        settings, session, caplog):
    caplog.set_level(logging.DEBUG)
    fleet = provision_fleet(session, settings=settings, receivers=3, zones=[("thon-1", "Thôn 1")],
                            broker=("broker.xa-01.lan", 8883), tls=True, actor="test")
    broker = fleet["broker"]
    ca = tls.ca_certificate(settings=settings)
    assert broker == {"host": "broker.xa-01.lan", "port": 8883, "tls": True,
                      "ca": base64.b64encode(ca.public_bytes(serialization.Encoding.DER))
                      .decode(), "server_name": "broker.xa-01.lan"}
    text = json.dumps(fleet)
    logged = caplog.text
    for secret in secrets_of(settings):
        assert secret not in text and secret not in logged
    assert "PRIVATE" not in text and "PRIVATE" not in logged
    assert "made the CA of site xa-01" in logged  # logged: that it happened, and where

    devices = fleet["devices"]
    for device in devices:
        config = receiver_config(fleet, device)
        assert set(config) == {"device", "site", "key", "broker", "sink"}
        assert set(config["broker"]) == {"host", "port", "tls", "ca", "server_name", "user",
                                         "password"}
        # The receiver's own secrets, and no other receiver's.
        others = [d for d in devices if d is not device]
        dumped = json.dumps(config)
        assert device["key"] in dumped and device["mqtt_password"] in dumped
        assert not any(o["key"] in dumped or o["mqtt_password"] in dumped for o in others)
        # What the firmware accepts, and the CA it will verify with.
        cfg = configuration.validate(configuration.merge(configuration.DEFAULTS, config))
        assert configuration.ca_der(cfg["broker"]["ca"]) == \
            ca.public_bytes(serialization.Encoding.DER)


def test_provisioning_without_tls_leaves_the_broker_plain(settings, session):
    fleet = provision_fleet(session, settings=settings, receivers=1, zones=[], actor="test")
    assert fleet["broker"] == {"host": "127.0.0.1", "port": 1883}
    assert not settings.resolved_tls_dir.exists()  # no CA made for nothing


def test_the_cli_provisions_tls_configs_and_exports_the_brokers_files(tmp_path, monkeypatch,
                                                                      capsys):
    data, configs, out = tmp_path / "var", tmp_path / "configs", tmp_path / "mosquitto"
    monkeypatch.setenv("LOAXA_BROKER_TLS_NAMES", json.dumps(NAMES))
    assert main(["--data-dir", str(data), "provision", "--receivers", "2", "--zones", "thon-1",
                 "--fleet", str(tmp_path / "fleet.json"), "--broker-host", "10.0.0.2",
                 "--tls", "--config-dir", str(configs)]) == 0
    fleet = json.loads((tmp_path / "fleet.json").read_text())
    assert fleet["broker"]["port"] == 8883 and fleet["broker"]["server_name"] == NAMES[0]
    written = sorted(configs.iterdir())
    assert [p.name for p in written] == ["r01.json", "r02.json"]
    for path in written:
        assert mode(path) == 0o600
        assert json.loads(path.read_text())["broker"]["tls"] is True

    assert main(["--data-dir", str(data), "export-broker-tls", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["broker.key", "broker.pem", "ca.pem",
                                                     "tls.conf"]
    assert mode(out / "broker.key") == 0o600
    conf = (out / "tls.conf").read_text().splitlines()
    for line in ("listener 8883", "cafile %s" % (out / "ca.pem").resolve(),
                 "certfile %s" % (out / "broker.pem").resolve(),
                 "keyfile %s" % (out / "broker.key").resolve(),
                 "require_certificate false", "tls_version tlsv1.2"):
        assert line in conf
    assert (out / "ca.pem").read_bytes() == (data / "tls" / "ca.pem").read_bytes()
    printed = capsys.readouterr().out
    assert "PRIVATE" not in printed and "receivers verify the broker" in printed
