"""`loaxa headend ...`: serve, migrate, provision, create-user, add-cap-source, add-cap-feed,
export-mosquitto, export-broker-tls, rekey, rotate-device.

Configuration comes from LOAXA_* environment variables (headend/settings.py); the options
here override the few that are handy on a command line.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from headend.models import ROLES
from headend.settings import Settings


def _settings(args, **overrides) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "data_dir", None):
        values["data_dir"] = Path(args.data_dir)
    if getattr(args, "database_url", None):
        values["database_url"] = args.database_url
    return Settings(**values)


def _session(settings: Settings):
    from headend.db import make_engine, make_session_factory, migrate
    from headend.private_files import secure_storage

    secure_storage(settings)
    migrate(settings.resolved_database_url)
    return make_session_factory(make_engine(settings.resolved_database_url))()


def cmd_serve(args) -> int:
    import uvicorn

    from headend.app import create_app

    settings = _settings(args, mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port,
                         public_base_url=args.public_url or "http://%s:%d" % (args.host, args.port))
    app = create_app(settings)
    print("Loaxa head-end on http://%s:%d (site %s, MQTT %s:%d)"
          % (args.host, args.port, settings.site_id, settings.mqtt_host, settings.mqtt_port),
          flush=True)
    # uvicorn handles Ctrl-C / SIGTERM: the lifespan then stops the MQTT service cleanly.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())
    return 0


def cmd_migrate(args) -> int:
    from headend.db import migrate
    from headend.private_files import secure_storage

    settings = _settings(args)
    secure_storage(settings)
    migrate(settings.resolved_database_url)
    print("database at the newest schema: %s" % settings.resolved_database_url.split("@")[-1])
    return 0


def _zones(text: str) -> list[tuple[str, str]]:
    """"thon-1,thon-2" or "thon-1=Thôn Một,thon-2=Thôn Hai"."""
    zones = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        zone_id, _, name = part.partition("=")
        zones.append((zone_id.strip(), name.strip() or zone_id.strip().replace("-", " ").title()))
    return zones


def cmd_provision(args) -> int:
    from headend.errors import ServiceError
    from headend.services.provisioning import (
        amplifier_config,
        export_mosquitto,
        provision_fleet,
        receiver_config,
    )

    settings = _settings(args)
    session = _session(settings)
    tls = settings.broker_tls if args.tls is None else args.tls
    try:
        broker = (args.broker_host or settings.mqtt_host,
                  args.broker_port or (settings.broker_tls_port if tls else settings.mqtt_port))
        try:
            amplifier = amplifier_config(args.amp_hold, args.amp_mute_pin)
        except ValueError as exc:
            print("loaxa headend provision: %s" % exc, file=sys.stderr)
            return 2
        fleet = provision_fleet(session, settings=settings, receivers=args.receivers,
                                zones=_zones(args.zones), codecs=tuple(args.codecs.split(",")),
                                prefix=args.prefix, broker=broker, tls=tls, actor="cli")
        if amplifier:
            fleet["amplifier"] = amplifier  # each receiver's config gets it (receiver_config)
        if args.mosquitto_dir:
            for path in export_mosquitto(session, settings=settings,
                                         directory=Path(args.mosquitto_dir)):
                print("wrote %s" % path)
    except ServiceError as exc:
        print("loaxa headend provision: %s" % exc.message, file=sys.stderr)
        return 1
    finally:
        session.close()
    out = Path(args.fleet)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fleet, ensure_ascii=False, indent=1))
    out.chmod(0o600)  # it holds every receiver's key and password
    print("provisioned %d receivers in %d zones; fleet file (secrets!) %s"
          % (len(fleet["devices"]), len(_zones(args.zones)), out))
    if tls:
        print("receivers verify the broker (TLS on port %d, name %s) against the site's CA in %s"
              % (fleet["broker"]["port"], fleet["broker"]["server_name"],
                 settings.resolved_tls_dir))
    if args.config_dir:
        configs = Path(args.config_dir)
        configs.mkdir(parents=True, exist_ok=True)
        for device in fleet["devices"]:
            path = configs / ("%s.json" % device["id"])
            path.write_text(json.dumps(receiver_config(fleet, device), ensure_ascii=False,
                                       indent=1))
            path.chmod(0o600)  # the receiver's key and password
        print("wrote %d receiver configs (secrets!) to %s: add each pole's link, copy as "
              "/data/config.json (docs/flashing.md)" % (len(fleet["devices"]), configs))
    return 0


def cmd_export_mosquitto(args) -> int:
    from headend.services.provisioning import export_mosquitto

    settings = _settings(args)
    session = _session(settings)
    try:
        for path in export_mosquitto(session, settings=settings, directory=Path(args.dir)):
            print("wrote %s" % path)
    finally:
        session.close()
    return 0


def cmd_export_broker_tls(args) -> int:
    from headend.services.tls import TlsError, export_broker_tls

    settings = _settings(args)
    try:
        paths = export_broker_tls(settings=settings, directory=Path(args.dir),
                                  host=args.broker_host)
    except TlsError as exc:
        print("loaxa headend export-broker-tls: %s" % exc.message, file=sys.stderr)
        return 1
    for path in paths:
        print("wrote %s" % path)
    print("include %s from mosquitto.conf; the key file must be readable by the broker only"
          % paths[-1])
    return 0


def cmd_rotate_device(args) -> int:
    """Start the rotation of one receiver's key and broker password; the running head-end's
    MQTT service sends the offer (docs/security.md)."""
    from headend.errors import ServiceError
    from headend.services.rotation import start_rotation

    settings = _settings(args)
    with _session(settings) as session:
        try:
            started = start_rotation(session, settings=settings, publisher=None,
                                     device_id=args.device_id, actor="cli")
        except ServiceError as exc:
            print("loaxa headend rotate-device: %s" % exc, file=sys.stderr)
            return 1
    print("rotation %s of %s %s: the head-end sends it as soon as the receiver is online; "
          "both passwords stay valid until it is heard under its new key"
          % (started.rotation_id, started.device_id,
             "pending (offered again)" if started.resent else "started"))
    return 0


def cmd_rekey(args) -> int:
    """Rotate the key-encryption key that seals the receivers' keys (docs/security.md)."""
    import os

    from headend.keystore import RekeyError, rekey_file, rekey_given

    settings = _settings(args)
    new_hex = os.environ.pop("LOAXA_NEW_KEY_ENCRYPTION_KEY", "")
    with _session(settings) as session:
        try:
            if settings.key_encryption_key:
                if not new_hex:
                    print("loaxa headend rekey: the key-encryption key comes from "
                          "LOAXA_KEY_ENCRYPTION_KEY; give the new one in "
                          "LOAXA_NEW_KEY_ENCRYPTION_KEY", file=sys.stderr)
                    return 2
                count = rekey_given(session, settings, new_hex)
                where = "now set LOAXA_KEY_ENCRYPTION_KEY to the new key"
            else:
                count = rekey_file(session, settings)
                where = "new key-encryption key in %s" % settings.resolved_kek_file
        except RekeyError as exc:
            print("loaxa headend rekey: %s" % exc, file=sys.stderr)
            return 1
    print("resealed %d receiver keys; %s; back it up apart from the database and destroy the "
          "old one and the backups sealed under it" % (count, where))
    return 0


def cmd_create_user(args) -> int:
    from headend.errors import ServiceError
    from headend.security import random_password
    from headend.services.users import create_user, get_user, update_user

    settings = _settings(args)
    session = _session(settings)
    password = args.password or random_password(9)
    try:
        if get_user(session, username=args.username) is not None:
            if not args.update:
                print("user %s exists (use --update to set its password and role)"
                      % args.username, file=sys.stderr)
                return 1
            update_user(session, username=args.username, role=args.role, password=password,
                        active=True, actor="cli")
        else:
            create_user(session, username=args.username, password=password, role=args.role,
                        full_name=args.full_name, actor="cli")
    except ServiceError as exc:
        print("loaxa headend create-user: %s" % exc.message, file=sys.stderr)
        return 1
    finally:
        session.close()
    print("user %s (%s)%s" % (args.username, args.role,
                              "" if args.password else ", password: %s" % password))
    return 0


def cmd_add_cap_source(args) -> int:
    """A warning source that may POST CAP alerts; its key is printed this once."""
    from headend.errors import ServiceError
    from headend.services.cap_alerts import add_source

    settings = _settings(args)
    with _session(settings) as session:
        try:
            source, secret = add_source(session, source_id=args.id, name=args.name or args.id,
                                        auth=args.auth, senders=args.sender, actor="cli")
        except ServiceError as exc:
            print("loaxa headend add-cap-source: %s" % exc.message, file=sys.stderr)
            return 1
    how = ("header X-Loaxa-Source-Key: %s" % secret if source.auth == "api-key" else
           "HMAC secret (X-Loaxa-Signature: sha256=HMAC(secret, X-Loaxa-Timestamp + '.' + "
           "body)): %s" % secret)
    # A site that takes CAP alerts keeps the alert tone on every receiver (pinned): they
    # are sent it when they next connect (this command has no broker link of its own).
    from headend.commands import RecordingPublisher
    from headend.services.pinned import ensure_alert_tone

    with _session(settings) as session:
        tone = ensure_alert_tone(session, settings=settings, publisher=RecordingPublisher(),
                                 actor="cli")
    print("alert tone %s pinned: every receiver keeps it from its next connect" % tone.id)
    print("CAP source %s (%s) for %s; shown once, keep it secret: %s"
          % (source.id, source.auth, ", ".join(source.senders), how))
    return 0


def cmd_add_cap_feed(args) -> int:
    """A CAP feed (Atom or RSS) polled every --interval seconds, as a warning source's posts."""
    from headend.errors import ServiceError
    from headend.services.cap_feeds import add_feed

    settings = _settings(args)
    with _session(settings) as session:
        try:
            feed = add_feed(session, feed_id=args.id, url=args.url, source_id=args.source,
                            interval_s=args.interval, actor="cli")
        except ServiceError as exc:
            print("loaxa headend add-cap-feed: %s" % exc.message, file=sys.stderr)
            return 1
        print("CAP feed %s: %s every %d s, as source %s"
              % (feed.id, feed.url, feed.interval_s, feed.source_id))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loaxa headend", description="The commune head-end.")
    parser.add_argument("--data-dir", help="where the database and media live (LOAXA_DATA_DIR)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (LOAXA_DATABASE_URL)")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the API, pages and MQTT service")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--public-url", help="base URL receivers fetch media from "
                                        "(default http://HOST:PORT)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="bring the database to the newest schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("provision", help="create receivers and write a fleet file")
    p.add_argument("--receivers", type=int, required=True)
    p.add_argument("--zones", default="thon-1,thon-2,thon-3",
                   help='"thon-1,thon-2" or "thon-1=Thôn 1,thon-2=Thôn 2"')
    p.add_argument("--fleet", required=True, help="fleet JSON to write (holds secrets)")
    p.add_argument("--codecs", default="mp3,adpcm", help="assigned round-robin")
    p.add_argument("--prefix", default="r", help="device id prefix (r01, r02, ...)")
    p.add_argument("--broker-host")
    p.add_argument("--broker-port", type=int)
    p.add_argument("--mosquitto-dir", help="also write Mosquitto passwd/acl/conf here")
    p.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                   help="receivers verify the broker over TLS against the site's CA, made "
                        "once (default: LOAXA_BROKER_TLS)")
    p.add_argument("--config-dir", help="also write each receiver's config.json here "
                                        "(DIR/<id>.json, holds its secrets)")
    p.add_argument("--amp-hold", help='how the amplifiers are held when idle: "off" (the '
                   'default), "standby" or "HH:MM-HH:MM" local (docs/flashing.md)')
    p.add_argument("--amp-mute-pin", type=int,
                   help="the GPIO of the amplifier's mute line on these boards (standby needs it)")
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser("export-mosquitto", help="write Mosquitto passwd, acl and conf files")
    p.add_argument("dir")
    p.set_defaults(func=cmd_export_mosquitto)

    p = sub.add_parser("export-broker-tls",
                       help="write the broker's TLS certificate, key, the site's CA and a "
                            "Mosquitto listener (tls.conf) into DIR")
    p.add_argument("dir")
    p.add_argument("--broker-host", help="the receivers' broker host, put on the certificate "
                                         "with LOAXA_BROKER_TLS_NAMES (default LOAXA_MQTT_HOST)")
    p.set_defaults(func=cmd_export_broker_tls)

    p = sub.add_parser("rotate-device", help="rotate one receiver's key and broker password "
                                             "(no lock-out: both valid until it uses the new)")
    p.add_argument("device_id")
    p.set_defaults(func=cmd_rotate_device)

    p = sub.add_parser("rekey", help="rotate the key-encryption key sealing the receivers' "
                                     "keys (stop the head-end first)")
    p.set_defaults(func=cmd_rekey)

    p = sub.add_parser("create-user", help="add a user (or --update one)")
    p.add_argument("username")
    p.add_argument("--role", default="operator",
                   choices=ROLES)
    p.add_argument("--password", help="default: a random one, printed")
    p.add_argument("--full-name")
    p.add_argument("--update", action="store_true", help="set password/role if the user exists")
    p.set_defaults(func=cmd_create_user)

    p = sub.add_parser("add-cap-source", help="a warning source that may POST CAP alerts "
                                              "(prints its key once)")
    p.add_argument("id")
    p.add_argument("--name")
    p.add_argument("--auth", choices=("api-key", "hmac"), default="api-key")
    p.add_argument("--sender", action="append", required=True,
                   help="a CAP <sender> it uses (repeat for more)")
    p.set_defaults(func=cmd_add_cap_source)

    p = sub.add_parser("add-cap-feed", help="an Atom or RSS feed of CAP alerts the head-end "
                                            "polls, bound to a warning source")
    p.add_argument("id")
    p.add_argument("--url", required=True, help="the feed's http(s) URL")
    p.add_argument("--source", required=True, help="the warning source (add-cap-source) its "
                                                   "alerts count as")
    p.add_argument("--interval", type=int, default=60, help="seconds between polls (10-86400)")
    p.set_defaults(func=cmd_add_cap_feed)
    return parser


def main(argv=None) -> int:
    from headend.keystore import RekeyError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, RekeyError) as exc:  # settings refused (e.g. a default secret in
        print("loaxa headend: %s" % exc, file=sys.stderr)  # production), a rotation pending
        return 2


if __name__ == "__main__":
    sys.exit(main())
