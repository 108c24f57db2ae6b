"""The site's certificate authority and the broker's TLS certificate, so receivers can verify
the broker they talk to (firmware/config.py: ``"tls": true`` needs the CA; the board checks
with CERT_REQUIRED and the broker's name).

Provisioning makes the CA once per site and a certificate for the broker signed by it, and
writes the CA's certificate (public) into every receiver's config; ``loaxa headend
export-broker-tls DIR`` gives Mosquitto its files (docs/architecture.md, "TLS"). The CA's key
signs broker certificates and nothing else: it never leaves ``tls_dir``, and no key is ever
logged (the log names files and SHA-256 fingerprints of certificates).

Files, in ``settings.resolved_tls_dir`` (default ``{data_dir}/tls``, mode 0700):

    ca.key      the CA's private key (PKCS#8 PEM)                     0600
    ca.pem      the CA certificate: into every receiver's config      0644
    broker.key  the broker's private key                              0600
    broker.pem  the broker's certificate, signed by the CA            0644

Choices:
- EC P-256 keys, ECDSA-SHA256 signatures: mbedtls on the ESP32 verifies them with little heap
  (a certificate is ~0.5 KB, against ~0.9 KB with RSA-2048), and Mosquitto's OpenSSL and CPython
  speak ECDHE-ECDSA-AES128-GCM-SHA256 over TLS 1.2.
- Valid from 2000-01-01: MicroPython's ESP32 build checks certificate dates against the board's
  RTC (CONFIG_MBEDTLS_HAVE_TIME_DATE), which reads 2000-01-01 after a power cut until the first
  time sync, and that sync comes over this very connection: a certificate dated from today
  would lock such a board out for good.
- The CA lasts until 2049-12-31 (the last UTCTime date): replacing it means giving every pole a
  new config. The broker's certificate lasts 10 years (never past the CA) and is issued again
  when its names change or it has less than 30 days left; receivers need nothing new for that.
"""

import base64
import ipaddress
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from headend.errors import ServiceError
from headend.private_files import PRIVATE_DIR, PRIVATE_FILE, write_atomically
from headend.settings import Settings

log = logging.getLogger(__name__)

CA_KEY = "ca.key"
CA_CERT = "ca.pem"
BROKER_KEY = "broker.key"
BROKER_CERT = "broker.pem"
MOSQUITTO_CONF = "tls.conf"
PUBLIC_MODE = 0o644

VALID_FROM = datetime(2000, 1, 1, tzinfo=UTC)
CA_VALID_UNTIL = datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
BROKER_VALIDITY = timedelta(days=3650)
RENEW_BEFORE = timedelta(days=30)


class TlsError(ServiceError):
    def __init__(self, message: str):
        super().__init__("tls", message)


# -- files ----------------------------------------------------------------------------------

def tls_dir(settings: Settings) -> Path:
    """The folder of the site's TLS files, made (0700) if missing and kept at 0700."""
    directory = settings.resolved_tls_dir
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, PRIVATE_DIR)
    return directory


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _same_key(cert: x509.Certificate, key) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":")


def _load(cert_path: Path, key_path: Path):
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as exc:
        raise TlsError("%s or %s cannot be read as PEM: %s" % (cert_path, key_path, exc)) from None
    if not _same_key(cert, key):
        raise TlsError("%s is not the certificate of the key in %s" % (cert_path, key_path))
    return cert, key


def _new_key():
    return ec.generate_private_key(ec.SECP256R1())


# -- the site's CA --------------------------------------------------------------------------

def load_or_create_ca(*, settings: Settings):
    """``(certificate, key)`` of the site's CA, made once: later calls load the same files."""
    directory = tls_dir(settings)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        return _load(cert_path, key_path)
    if cert_path.exists() or key_path.exists():
        raise TlsError("%s holds half of the site's CA (%s or %s is missing): restore it, or "
                       "remove both to make a new CA, which every receiver must then be given"
                       % (directory, CA_CERT, CA_KEY))
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Loaxa"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Loaxa %s CA" % settings.site_id)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(VALID_FROM).not_valid_after(CA_VALID_UNTIL)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    write_atomically(key_path, _key_pem(key), PRIVATE_FILE)
    write_atomically(cert_path, _cert_pem(cert), PUBLIC_MODE)
    log.info("made the CA of site %s in %s (certificate SHA-256 %s)", settings.site_id,
             directory, fingerprint(cert))
    return cert, key


def ca_certificate(*, settings: Settings) -> x509.Certificate:
    return load_or_create_ca(settings=settings)[0]


def ca_base64(*, settings: Settings) -> str:
    """The CA certificate as a receiver's ``broker.ca`` holds it: base64 of the DER, one line."""
    der = ca_certificate(settings=settings).public_bytes(serialization.Encoding.DER)
    return base64.b64encode(der).decode("ascii")


# -- the broker's certificate ---------------------------------------------------------------

def broker_names(settings: Settings, host: str | None = None) -> list[str]:
    """Names (and addresses) the broker's certificate carries: ``broker_tls_names``, then the
    host receivers are given, each once."""
    names = []
    for name in list(settings.broker_tls_names) + [host or settings.mqtt_host]:
        if name and name not in names:
            names.append(name)
    return names


def receiver_server_name(settings: Settings, host: str) -> str:
    """The name a receiver checks on the broker's certificate."""
    return settings.broker_tls_names[0] if settings.broker_tls_names else host


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def issue_server_certificate(ca_cert: x509.Certificate, ca_key, public_key, names: list[str],
                             *, now: datetime | None = None,
                             validity: timedelta = BROKER_VALIDITY) -> x509.Certificate:
    """A TLS server certificate for ``names`` (DNS names and/or IP addresses) signed by the CA."""
    if not names:
        raise TlsError("the broker's certificate needs at least one name")
    now = now or datetime.now(UTC)
    until = min(now + validity, ca_cert.not_valid_after_utc)
    # ECDHE-ECDSA signs the handshake; an RSA key (if someone brought one) also encrypts.
    encipher = isinstance(public_key, rsa.RSAPublicKey)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Loaxa"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(VALID_FROM).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=encipher, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))


def _names_from(cert: x509.Certificate, ca_cert: x509.Certificate) -> list[str] | None:
    """The names on a broker certificate signed by this CA; None for any other certificate."""
    try:
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # another CA's, no SAN, a key type it cannot check
        return None
    return ([str(n) for n in san.get_values_for_type(x509.DNSName)]
            + [str(a) for a in san.get_values_for_type(x509.IPAddress)])


def _normal(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def ensure_broker_certificate(*, settings: Settings, names: list[str]) -> tuple[Path, Path]:
    """``(certificate path, key path)`` of the broker's certificate for ``names``, issued by the
    site's CA (made first if missing); an existing one is kept while it still serves."""
    ca_cert, ca_key = load_or_create_ca(settings=settings)
    directory = tls_dir(settings)
    cert_path, key_path = directory / BROKER_CERT, directory / BROKER_KEY
    names = [_normal(name) for name in names]
    if cert_path.exists() and key_path.exists():
        try:
            cert = _load(cert_path, key_path)[0]
        except TlsError:  # unreadable, or a key that is not its own: issue a new pair
            cert = None
        have = _names_from(cert, ca_cert) if cert is not None else None
        if cert is not None and have is not None:
            fresh = cert.not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE
            if fresh and set(names) <= set(have):
                return cert_path, key_path
            # Issued again (new names, or about to expire): keep every name it had, since
            # receivers provisioned earlier may check any of them.
            names = names + [name for name in have if name not in names]
    key = _new_key()
    cert = issue_server_certificate(ca_cert, ca_key, key.public_key(), names)
    write_atomically(key_path, _key_pem(key), PRIVATE_FILE)
    write_atomically(cert_path, _cert_pem(cert), PUBLIC_MODE)
    log.info("issued the broker certificate for %s in %s (SHA-256 %s)", ", ".join(names),
             directory, fingerprint(cert))
    return cert_path, key_path


def receiver_tls(*, settings: Settings, host: str) -> dict:
    """What each receiver's ``broker`` gets for TLS: ``tls``, the CA certificate, the name to
    check. Makes the CA and the broker's certificate (for ``host`` too) when missing, so the
    broker can be given its files before the first receiver connects."""
    ensure_broker_certificate(settings=settings, names=broker_names(settings, host))
    return {"tls": True, "ca": ca_base64(settings=settings),
            "server_name": receiver_server_name(settings, host)}


def export_broker_tls(*, settings: Settings, directory: Path,
                      host: str | None = None) -> list[Path]:
    """Write Mosquitto's TLS files into ``directory``: ``ca.pem``, ``broker.pem``,
    ``broker.key`` (0600) and ``tls.conf``, a listener on ``broker_tls_port`` using them.
    Never the CA's key."""
    cert_src, key_src = ensure_broker_certificate(settings=settings,
                                                  names=broker_names(settings, host))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = directory / CA_CERT, directory / BROKER_CERT, directory / BROKER_KEY
    write_atomically(ca_path, _cert_pem(ca_certificate(settings=settings)), PUBLIC_MODE)
    write_atomically(cert_path, cert_src.read_bytes(), PUBLIC_MODE)
    write_atomically(key_path, key_src.read_bytes(), PRIVATE_FILE)
    conf = directory / MOSQUITTO_CONF
    conf.write_text("\n".join(mosquitto_tls_lines(settings.broker_tls_port, ca_path.resolve(),
                                                  cert_path.resolve(), key_path.resolve()))
                    + "\n")
    return [ca_path, cert_path, key_path, conf]


def mosquitto_tls_lines(port: int, cafile: Path, certfile: Path, keyfile: Path,
                        bind: str | None = None) -> list[str]:
    """A Mosquitto listener for receivers over TLS (the test brokers use the same lines)."""
    return [
        "# Loaxa: the receivers' TLS listener (include from mosquitto.conf, with loaxa.conf).",
        "# Receivers check this certificate against the site's CA and its name; they log in",
        "# with their accounts (password_file), not with certificates of their own.",
        "listener %d%s" % (port, " " + bind if bind else ""),
        "cafile %s" % cafile,
        "certfile %s" % certfile,
        "keyfile %s" % keyfile,
        "require_certificate false",
        "tls_version tlsv1.2",
    ]
