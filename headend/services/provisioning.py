"""Provisioning in bulk: a fleet file for the simulator (or a flashing station), each
receiver's ``config.json``, and the broker's password and ACL files for production Mosquitto.

With TLS (``settings.broker_tls`` or ``tls=True``) the fleet's ``broker`` also holds ``"tls":
true``, the site's CA certificate (``ca``, base64 DER: public) and the ``server_name`` receivers
check; the CA and the broker's certificate are made on the way (headend/services/tls.py). The
only secrets in a fleet file are each receiver's own key and broker password.
"""

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.models import Receiver, User, Zone
from headend.security import mosquitto_hash
from headend.services.devices import provision_device
from headend.services.sites import create_zone, ensure_site
from headend.services.tls import receiver_tls
from headend.settings import Settings
from protocol import topics


def provision_fleet(session: Session, *, settings: Settings, receivers: int,
                    zones: list[tuple[str, str]], codecs: tuple[str, ...] = ("mp3", "adpcm"),
                    prefix: str = "r", broker: tuple[str, int] | None = None,
                    tls: bool | None = None,
                    actor: User | str | None = None) -> dict[str, Any]:
    """Create the zones that are missing and ``receivers`` new receivers spread over them
    round-robin (codecs alternating); return the fleet JSON object, secrets included.
    ``tls`` (default ``settings.broker_tls``): receivers verify the broker against the site's
    CA, on ``settings.broker_tls_port`` unless ``broker`` names a port."""
    if tls is None:
        tls = settings.broker_tls
    host, port = broker or (settings.mqtt_host,
                            settings.broker_tls_port if tls else settings.mqtt_port)
    broker_config: dict[str, Any] = {"host": host, "port": port}
    if tls:
        # First: a CA that cannot be made must not leave receivers whose secrets (shown once)
        # never reached a fleet file.
        broker_config.update(receiver_tls(settings=settings, host=host))
    ensure_site(session, site_id=settings.site_id, name=settings.site_name)
    for new_zone, name in zones:
        if session.get(Zone, new_zone) is None:
            create_zone(session, site_id=settings.site_id, zone_id=new_zone, name=name,
                        actor=actor)
    taken = set(session.scalars(select(Receiver.id)))
    width = max(2, len(str(receivers + len(taken))))
    devices = []
    number = 0
    for i in range(receivers):
        number += 1
        while "%s%0*d" % (prefix, width, number) in taken:
            number += 1
        device_id = "%s%0*d" % (prefix, width, number)
        zone_id: str | None = None
        zone_name = ""
        if zones:
            zone_id, zone_name = zones[i % len(zones)]
        made = provision_device(session, site_id=settings.site_id, device_id=device_id,
                                name="Cụm loa %s %d" % (zone_name, i // max(1, len(zones)) + 1),
                                zone_id=zone_id, codec=codecs[i % len(codecs)], actor=actor,
                                commit=False, settings=settings)
        devices.append({"id": device_id, "name": made.receiver.name, "zone": zone_id,
                        "key": made.device_key, "mqtt_user": made.mqtt_user,
                        "mqtt_password": made.mqtt_password, "codec": made.receiver.codec})
    session.commit()
    refresh_broker_accounts(session, settings=settings)
    return {"site": settings.site_id, "broker": broker_config, "devices": devices}


def receiver_config(fleet: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
    """One receiver's ``config.json`` (firmware/config.py) from a fleet file's entry: its own
    identity, key and broker account, the site's broker (with the CA when TLS), its sink. The
    technician adds the link (Wi-Fi name and password) of the pole's site."""
    broker = dict(fleet["broker"])
    broker.update({"user": device["mqtt_user"], "password": device["mqtt_password"]})
    config = {"device": device["id"], "site": fleet["site"], "key": device["key"],
              "broker": broker, "sink": "i2s" if device.get("codec") == "adpcm" else "vs1053"}
    config.update(fleet.get("amplifier") or {})  # the installation's, from amplifier_config
    return config


def amplifier_config(amp_hold: str | None, amp_mute_pin: int | None) -> dict[str, Any]:
    """How the site's amplifiers are held when idle, for every receiver's config.json
    (firmware/config.py ``amp_hold``, ``pins.amp_mute``), checked as the receiver will check
    it: {} leaves the firmware's defaults (relay off when idle, no mute line)."""
    from firmware import config as receiver

    out: dict[str, Any] = {}
    if amp_hold is not None:
        receiver.amp_standby({"amp_hold": amp_hold})  # ConfigError (a ValueError) if malformed
        out["amp_hold"] = amp_hold
    if amp_mute_pin is not None:
        pins = dict(receiver.DEFAULT_PINS, amp_mute=amp_mute_pin)
        for sink in receiver.SINK_PINS:  # receivers get either sink (receiver_config)
            receiver.validate_pins({"pins": pins, "sink": sink})
        out["pins"] = {"amp_mute": amp_mute_pin}
    return out


def device_acl_lines() -> list[str]:
    """Mosquitto ACL patterns for device accounts, from the topic layout (protocol/topics.py)."""
    lines = ["pattern write %s/+/dev/%%u/%s" % (topics.ROOT, leaf) for leaf in topics.DEVICE_UPLINK]
    lines += ["pattern read %s/+/dev/%%u/%s" % (topics.ROOT, leaf)
              for leaf in topics.DEVICE_DOWNLINK]
    lines.append("pattern read %s/+/stream/#" % topics.ROOT)
    return lines


def device_accounts(session: Session) -> list[tuple[str, str, str]]:
    """(broker user, device id, password hash) of every receiver's account, and of its
    rotation's new account beside it while one is pending (headend/services/rotation.py)."""
    accounts = []
    for device_id, user, hashed, new_user, new_hash in session.execute(
            select(Receiver.id, Receiver.mqtt_user, Receiver.mqtt_password_hash,
                   Receiver.pending_mqtt_user, Receiver.pending_mqtt_password_hash)):
        accounts.append((user, device_id, hashed))
        if new_user and new_hash:
            accounts.append((new_user, device_id, new_hash))
    return sorted(accounts)


def named_account_acl_lines(accounts: list[tuple[str, str, str]]) -> list[str]:
    """The device topics of each account not named as its device (a rotation's ``{id}.b``):
    the ``%u`` patterns do not reach them."""
    lines: list[str] = []
    for user, device_id, _ in accounts:
        if user == device_id:
            continue
        lines += ["", "user %s" % user]
        lines += ["topic write %s/+/dev/%s/%s" % (topics.ROOT, device_id, leaf)
                  for leaf in topics.DEVICE_UPLINK]
        lines += ["topic read %s/+/dev/%s/%s" % (topics.ROOT, device_id, leaf)
                  for leaf in topics.DEVICE_DOWNLINK]
        lines.append("topic read %s/+/stream/#" % topics.ROOT)
    return lines


def export_mosquitto(session: Session, *, settings: Settings, directory: Path) -> list[Path]:
    """Write ``passwd``, ``acl`` and a ``loaxa.conf`` snippet for production Mosquitto.

    Device passwords are exported as the hashes stored at provisioning; the head-end's own
    account is hashed from settings.mqtt_password.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    accounts = device_accounts(session)
    lines = ["%s:%s" % (user, hashed) for user, _, hashed in accounts]
    headend_user = settings.mqtt_username or "headend"
    if settings.mqtt_password:
        lines.append("%s:%s" % (headend_user, mosquitto_hash(settings.mqtt_password)))
    passwd = directory / "passwd"
    passwd.write_text("\n".join(lines) + "\n")
    passwd.chmod(0o600)
    acl = directory / "acl"
    acl.write_text("\n".join(["# receivers: only their own topics"] + device_acl_lines()
                             + named_account_acl_lines(accounts)
                             + ["", "user %s" % headend_user, "topic readwrite %s/#"
                                % topics.ROOT]) + "\n")
    conf = directory / "loaxa.conf"
    conf.write_text("\n".join([
        "# Loaxa: include from mosquitto.conf; receivers' TLS listener: `loaxa headend "
        "export-broker-tls DIR` writes DIR/tls.conf",
        "allow_anonymous false",
        "# one client id per account: nobody can take over the head-end's (or a receiver's) session",
        "use_username_as_clientid true",
        "password_file %s" % passwd.resolve(),
        "acl_file %s" % acl.resolve(),
        "# the head-end's persistent session keeps receivers' reports while it restarts",
        "persistence true",
        "# saved at every change: a receiver deletes a report from its flash once the broker has",
        "# it, so what the broker acknowledged must outlive a power cut",
        "autosave_on_changes true",
        "autosave_interval 1",
        "max_queued_messages 100000",
        "max_inflight_messages 1000",
    ]) + "\n")
    return [passwd, acl, conf]


def refresh_broker_accounts(session: Session, *, settings: Settings) -> list[Path]:
    """Rewrite the broker's account files after provisioning, when the head-end manages them
    (``settings.broker_accounts_dir``); otherwise the operator exports them by hand."""
    if settings.broker_accounts_dir is None:
        return []
    return export_mosquitto(session, settings=settings, directory=settings.broker_accounts_dir)
