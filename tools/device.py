"""`loaxa device ...`: bundle the firmware, provision a receiver and its pole label, flash a board.

    loaxa device bundle [--out DIR] [--version V]
    loaxa device provision --device ID --config-dir DIR [--fleet FILE] [--wifi-ssid S ...]
    loaxa device flash --port /dev/ttyUSB0 --device ID [--firmware image.bin] [--config FILE]
                       [--bundle DIR] [--erase] [--dry-run] [--wait-headend URL --token T]

docs/flashing.md walks a technician through them. The parts: tools/device_bundle.py (the
bundle and its manifest), tools/device_flash.py (esptool and mpremote steps and the checks of
their answers), tools/device_label.py (claim code and label).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tools.mpbuild import REPO

DEFAULT_OUT = REPO / "build" / "device-bundle"
WAIT_POLL_S = 5


def cmd_bundle(args) -> int:
    from tools.device_bundle import write_bundle

    write_bundle(Path(args.out), version=args.version)
    return 0


def _write_private(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1))
    path.chmod(0o600)  # the receiver's key and broker password


def cmd_provision(args) -> int:
    from tools.device_flash import FlashError, load_config
    from tools.device_label import claim_code, label_svg

    configs = Path(args.config_dir)
    path = configs / ("%s.json" % args.device)
    name = None
    if args.fleet:
        # The head-end's own provisioning makes the config: one receiver_config, never a copy.
        from headend.services.provisioning import receiver_config

        fleet = json.loads(Path(args.fleet).read_text())
        entry = next((d for d in fleet.get("devices", []) if d.get("id") == args.device), None)
        if entry is None:
            raise FlashError("device %s is not in fleet file %s" % (args.device, args.fleet))
        configs.mkdir(parents=True, exist_ok=True)
        _write_private(path, receiver_config(fleet, entry))
        name = entry.get("name")
        print("wrote %s from %s (secrets!)" % (path, args.fleet))
    elif not path.exists():
        raise FlashError("no config %s: run `loaxa headend provision --config-dir %s` on the "
                         "head-end, or give --fleet FILE" % (path, configs))
    if args.wifi_ssid is not None:
        raw = json.loads(path.read_text())
        raw["link"] = {"type": "wifi", "ssid": args.wifi_ssid,
                       "password": args.wifi_password or ""}
        _write_private(path, raw)
        print("added Wi-Fi %r to %s" % (args.wifi_ssid, path))
    try:
        cfg = load_config(path, args.device)
    except FlashError as exc:
        if "link.ssid" not in str(exc):
            raise
        raw = json.loads(path.read_text())
        cfg = raw
        print("note: %s has no Wi-Fi yet; add it (--wifi-ssid) before flashing" % path)
    code = claim_code(cfg["key"], cfg["site"], cfg["device"])
    label = Path(args.label) if args.label else configs / ("%s.label.svg" % args.device)
    label.write_text(label_svg(device=cfg["device"], site=cfg["site"], code=code, name=name),
                     encoding="utf-8")
    print("label %s: receiver %s, site %s, claim code %s (print it for the pole; it holds no "
          "secret)" % (label, cfg["device"], cfg["site"], code))
    return 0


def api_device(client, url, token, device):
    """The head-end's view of a device (GET /api/v1/devices/{id}), with clear refusals."""
    import httpx

    from tools.device_flash import FlashError

    try:
        response = client.get("%s/api/v1/devices/%s" % (url.rstrip("/"), device),
                              headers={"Authorization": "Bearer %s" % token})
    except httpx.HTTPError as exc:
        raise FlashError("cannot reach the head-end at %s: %s" % (url, exc)) from None
    if response.status_code == 401:
        raise FlashError("the head-end refused the token (POST /api/v1/auth/token gives one)")
    if response.status_code == 404:
        raise FlashError("the head-end at %s does not know receiver %s: provision it there "
                         "first" % (url, device))
    if response.status_code != 200:
        raise FlashError("the head-end answered %d for receiver %s" % (response.status_code,
                                                                        device))
    return response.json()


def wait_online(client, url, token, device, before, timeout_s, say=print,
                sleep=time.sleep, clock=time.monotonic):
    """Poll the head-end until the receiver is online with a last_seen newer than ``before``
    (its birth after this reset); return the device's detail."""
    from tools.device_flash import FlashError

    deadline = clock() + timeout_s
    while True:
        detail = api_device(client, url, token, device)
        if detail.get("online") and detail.get("last_seen") != before:
            say("online: %s, firmware %s, link %s" % (device, detail.get("firmware"),
                                                      detail.get("link")))
            return detail
        if clock() >= deadline:
            raise FlashError("%s did not come online within %d s: look at its REPL "
                             "(`mpremote connect PORT repl`) for the reason" % (device, timeout_s))
        say("waiting for %s's birth (%s)" % (device, "online, old session" if detail.get("online")
                                             else "offline"))
        sleep(WAIT_POLL_S)


def unpack_bundle(archive: Path, into: Path) -> Path:
    """A bundle's .tar (as `loaxa device bundle` writes and a technician is sent) unpacked
    into ``into``; read_bundle then checks every file against the manifest."""
    import tarfile

    from tools.device_flash import FlashError

    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")  # no paths outside, no links, no devices
    except (OSError, tarfile.TarError) as exc:
        raise FlashError("cannot unpack bundle %s: %s" % (archive, exc)) from None
    return into


def cmd_flash(args) -> int:
    from tools.device_flash import FlashError

    bundle = Path(args.bundle) if args.bundle else None
    if bundle is None:
        found = sorted(DEFAULT_OUT.glob("loaxa-firmware-*/manifest.json"))
        if len(found) != 1:
            raise FlashError("give --bundle DIR (%s): `loaxa device bundle` makes one"
                             % ("several bundles in %s" % DEFAULT_OUT if found
                                else "none in %s" % DEFAULT_OUT))
        bundle = found[0].parent
    if bundle.suffix == ".tar":
        with tempfile.TemporaryDirectory(prefix="loaxa-bundle-") as scratch:
            return flash(args, unpack_bundle(bundle, Path(scratch)))
    return flash(args, bundle)


def flash(args, bundle: Path) -> int:
    from tools.device_bundle import read_bundle
    from tools.device_flash import (
        FlashError,
        check_image,
        check_port,
        esptool_steps,
        load_config,
        mpremote_steps,
        run_steps,
    )

    manifest = read_bundle(bundle)
    cfg = load_config(args.config, args.device) if args.config else None
    if cfg is None:
        print("note: no --config: the board gets the firmware only and will say 'not "
              "provisioned' until /data/config.json is written")
    if args.firmware:
        check_image(args.firmware)
    token = args.token or os.environ.get("LOAXA_API_TOKEN")
    if args.wait_headend and not token:
        raise FlashError("--wait-headend needs --token (or LOAXA_API_TOKEN)")
    if not args.dry_run:
        check_port(args.port)
    print("%s receiver %s on %s with bundle %s (manifest %s)"
          % ("dry run: would flash" if args.dry_run else "flashing", args.device, args.port,
             manifest["version"], manifest["manifest_sha256"][:16]))
    steps = esptool_steps(args.port, args.chip, args.firmware, args.erase) + mpremote_steps(
        [args.port], bundle, manifest, config=args.config,
        psram=cfg["psram"] if cfg else True)
    client = before = None
    if args.wait_headend and not args.dry_run:
        import httpx

        client = httpx.Client(timeout=10)
        before = api_device(client, args.wait_headend, token, args.device).get("last_seen")
    run_steps(steps, args.dry_run)
    if args.dry_run:
        print("dry run: nothing was run")
        return 0
    if client is not None:
        wait_online(client, args.wait_headend, token, args.device, before, args.wait_s)
    print("done: %s has bundle %s" % (args.device, manifest["version"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tools.device_flash import CHIPS

    parser = argparse.ArgumentParser(prog="loaxa device", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bundle", help="compile protocol/ and firmware/ for the ESP32 into a "
                                      "versioned, reproducible bundle")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the bundle and its .tar")
    p.add_argument("--version", help="bundle version (default: firmware FIRMWARE_VERSION)")
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("provision", help="a receiver's config.json and its pole label (SVG)")
    p.add_argument("--device", required=True, help="receiver id, e.g. r01")
    p.add_argument("--config-dir", required=True,
                   help="where `loaxa headend provision --config-dir` wrote <id>.json")
    p.add_argument("--fleet", help="make <id>.json from this fleet file (headend provision)")
    p.add_argument("--wifi-ssid", help="the pole's Wi-Fi, written into the config")
    p.add_argument("--wifi-password")
    p.add_argument("--label", help="label file (default: DIR/<id>.label.svg)")
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser("flash", help="put MicroPython, the bundle and the config on a board")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--device", required=True, help="receiver id the config must name")
    p.add_argument("--firmware", help="MicroPython image to write (ESP32_GENERIC-SPIRAM-*.bin); "
                                      "without it the MicroPython on the board is checked")
    p.add_argument("--config", help="the receiver's config.json (loaxa device provision)")
    p.add_argument("--bundle", help="bundle folder or its .tar (default: the one in %s)"
                                    % DEFAULT_OUT)
    p.add_argument("--chip", default="esp32", choices=sorted(CHIPS))
    p.add_argument("--erase", action="store_true", help="erase the whole flash first")
    p.add_argument("--dry-run", action="store_true",
                   help="print the esptool and mpremote commands; run none (no board needed)")
    p.add_argument("--wait-headend", metavar="URL",
                   help="then wait until the head-end at URL sees the receiver's birth")
    p.add_argument("--token", help="head-end API token for --wait-headend "
                                   "(default: LOAXA_API_TOKEN)")
    p.add_argument("--wait-s", type=int, default=300, help="how long to wait (s)")
    p.set_defaults(func=cmd_flash)
    return parser


def main(argv=None) -> int:
    from tools.device_bundle import BundleError
    from tools.device_flash import FlashError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (BundleError, FlashError) as exc:
        print("loaxa device %s: %s" % (args.command, exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("loaxa device %s: interrupted" % args.command, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
