"""Putting a bundle and a receiver's config onto a board: esptool for the chip and MicroPython,
mpremote for the files.

Every step is an argument list for an external tool (never a shell string), made before
anything runs, so ``--dry-run`` prints exactly what a real run would execute. The checks that
read a tool's answer (which chip, which MicroPython, how much heap, did every file arrive)
are plain functions of that text, tested without a board.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tools.device_bundle import FILES, MPY_ARCHS

# The chips whose Xtensa LX6/LX7 cores run the bundle's xtensawin code, and where MicroPython's
# image starts in their flash (MicroPython's download page gives the same offsets).
CHIPS = {"esp32": "0x1000", "esp32s3": "0x0"}
BAUD = "460800"
# The first boot after write-flash formats the file system before the REPL answers.
PROBE_ATTEMPTS = 3
RETRY_PAUSE_S = 3
# Asked of the board's MicroPython: which release and .mpy ABI, and how much heap (a SPIRAM
# build on a board with PSRAM has ~2 MB; without PSRAM ~110 KB, refused by firmware/heap.py).
PROBE = ('import sys, gc; gc.collect(); print(sys.implementation); '
         'print("heap", gc.mem_free(), gc.mem_alloc())')
# Scripts run by mpremote exec on the board; %-filled with JSON (valid Python literals), and in
# double quotes so the printed command lines stay readable.
PREPARE = """import os
def rmtree(p):
    try:
        mode = os.stat(p)[0]
    except OSError:
        return
    if mode & 0x4000:
        for name in os.listdir(p):
            rmtree(p + "/" + name)
        os.rmdir(p)
    else:
        os.remove(p)
for p in %(remove)s:
    rmtree(p)
for p in %(make)s:
    try:
        os.mkdir(p)
    except OSError:
        pass
print("loaxa-prepare: ok")
"""
VERIFY = """import hashlib, binascii
bad = 0
FILES = %(files)s
for path, want in FILES:
    h = hashlib.sha256()
    try:
        f = open(path, "rb")
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
        f.close()
        got = binascii.hexlify(h.digest()).decode()
    except OSError:
        got = "missing"
    if got != want:
        bad += 1
        print("loaxa-verify: bad", path, got)
print("loaxa-verify: %%d of %%d files ok" %% (len(FILES) - bad, len(FILES)))
"""


class FlashError(Exception):
    pass


def tool(name):
    """An external tool: from PATH first, else beside this Python (the .venv's)."""
    path = os.environ.get("PATH", "") + os.pathsep + str(Path(sys.executable).parent)
    return shutil.which(name, path=path) or name


class Step:
    """One external command, its title for the progress line, and what checks its output
    (None: its output goes straight to the terminal, as esptool's progress bar does)."""

    def __init__(self, title, argv, check=None, attempts=1):
        self.title, self.argv, self.check, self.attempts = title, argv, check, attempts


def esptool_steps(port, chip, firmware=None, erase=False):
    esptool = tool("esptool")
    steps = [Step("check the chip is an %s" % chip.upper(), [esptool, "--port", port, "chip-id"],
                  lambda out: check_chip(out, chip))]
    if erase:
        steps.append(Step("erase the whole flash",
                          [esptool, "--chip", chip, "--port", port, "erase-flash"]))
    if firmware:
        steps.append(Step("write MicroPython %s" % Path(firmware).name,
                          [esptool, "--chip", chip, "--port", port, "--baud", BAUD,
                           "write-flash", "-z", CHIPS[chip], str(firmware)]))
    return steps


def mpremote_steps(connect, bundle, manifest, config=None, psram=True, root="", reset=True):
    """The mpremote commands that install ``bundle`` (and ``config``) under ``root`` ("" on a
    board; a scratch folder when the board is MicroPython's unix port on a pseudo-terminal)."""
    mpremote = tool("mpremote")
    base = [mpremote, "connect", *connect]
    files = Path(bundle) / FILES
    # The packages under /lib, as the manifest has them: each is replaced whole.
    packages = sorted({e["path"].split("/")[2] for e in manifest["files"]
                       if e["path"].startswith("/lib/")})
    copy = []
    for package in packages:
        copy += ["cp", "-r", str(files / "lib" / package), ":%s/lib/" % root, "+"]
    for entry in manifest["files"]:
        if not entry["path"].startswith("/lib/"):
            copy += ["cp", str(files / entry["path"].lstrip("/")), ":%s%s" % (root, entry["path"]),
                     "+"]
    pairs = [[root + e["path"], e["sha256"]] for e in manifest["files"]]
    # The versions an update installed (firmware/ota.py) go too: their pointer would boot one
    # of them instead of the firmware flashed now.
    remove = [root + "/lib/" + package for package in packages] + [root + "/data/fw"]
    if config:
        # The last config that reached the broker is the receiver's fallback (firmware/config.py):
        # one left from the board's previous identity must not outlive the new config.
        remove.append(root + "/data/config.good.json")
    prepare = PREPARE % {"remove": json.dumps(remove),
                         "make": json.dumps([root + "/lib", root + "/data"])}
    steps = [
        Step("check MicroPython on the board", base + ["exec", PROBE],
             lambda out: check_micropython(out, manifest, psram), attempts=PROBE_ATTEMPTS),
        Step("remove the old firmware%s, make /lib and /data"
             % (" and the old config's fallback copy" if config else ""),
             base + ["exec", prepare], lambda out: expect(out, "loaxa-prepare: ok")),
        Step("copy bundle %s (%d files)" % (manifest["version"], len(manifest["files"])),
             base + copy[:-1]),
        Step("check every file on the board against the manifest",
             base + ["exec", VERIFY % {"files": json.dumps(pairs)}],
             lambda out: check_verified(out, len(pairs))),
    ]
    if config:
        steps.append(Step("copy the receiver's config", base + ["cp", str(config),
                                                                ":%s/data/config.json" % root]))
    if reset:
        steps.append(Step("reset the board", base + ["reset"]))
    return steps


def expect(out, line):
    if line not in out:
        raise FlashError("the board did not answer %r:\n%s" % (line, out.strip()))


def check_chip(out, chip):
    """esptool's chip-id answer names the chip ("Chip type: ESP32-D0WD-V3", "Chip is ..." in
    esptool 4); refuse any other than ``chip``."""
    found = re.search(r"Chip (?:is|type:)\s*(ESP32[-\w]*)", out)
    if not found:
        raise FlashError("esptool found no chip on the port: is it an ESP32 in reach (hold BOOT "
                         "while it connects)?\n%s" % out.strip()[-500:])
    name = found.group(1)
    # ESP32-D0WD-V3, ESP32-PICO-D4, ESP32-U4WDH: the classic ESP32; the other families say so.
    other = re.match(r"ESP32-(S\d|C\d+|H\d+|P\d+)(?![A-Z])", name.upper())
    family = "esp32" + other.group(1).lower() if other else "esp32"
    if family != chip:
        raise FlashError("wrong chip: the board is an %s, not an %s (supported: %s)"
                         % (name, chip.upper(), ", ".join(c.upper() for c in CHIPS)))
    return name


def parse_probe(out):
    """(version tuple, _mpy or None, machine, heap bytes or None) from the PROBE's output."""
    if "name='micropython'" not in out:
        raise FlashError("no MicroPython answers on the board: write one with --firmware "
                         "(docs/flashing.md)\n%s" % out.strip()[-500:])
    version = re.search(r"version=\((\d+), (\d+), (\d+)", out)
    mpy = re.search(r"_mpy=(\d+)", out)
    machine = re.search(r"_machine='([^']*)'", out)
    heap = re.search(r"^heap (\d+) (\d+)", out, re.M)
    return (tuple(int(v) for v in version.groups()) if version else (0, 0, 0),
            int(mpy.group(1)) if mpy else None, machine.group(1) if machine else "?",
            (int(heap.group(1)), int(heap.group(2))) if heap else None)


def version_tuple(text):
    return tuple(int(p) for p in text.split("."))


def check_micropython(out, manifest, psram):
    """Refuse a MicroPython that cannot load the bundle, or a heap the receiver refuses."""
    version, mpy, machine, heap = parse_probe(out)
    shown = "%d.%d.%d" % version
    need = manifest["micropython_min"]
    if version[:2] < version_tuple(need):
        raise FlashError("MicroPython %s on the board (%s): this bundle needs %s or newer; "
                         "write a newer one with --firmware" % (shown, machine, need))
    if mpy is not None:
        abi, feature = manifest["mpy"], mpy >> 8
        board_arch = MPY_ARCHS.get((feature >> 2) & 0x2F)
        if (mpy & 0xFF) != abi["version"] or abi["native_arch"] and (
                board_arch != abi["native_arch"] or (feature & 3) != abi["sub_version"]):
            raise FlashError("MicroPython %s on the board loads .mpy %d.%d for %s; the bundle is "
                             ".mpy %d.%d for %s" % (shown, mpy & 0xFF, feature & 3, board_arch,
                                                    abi["version"], abi["sub_version"],
                                                    abi["native_arch"]))
    if psram and heap:
        from firmware.heap import heap_refusal  # the very check the board makes at boot

        refusal = heap_refusal(*heap)
        if refusal:
            raise FlashError("no PSRAM: %s (the config says \"psram\": true)" % refusal)
    return shown


def check_verified(out, count):
    found = re.search(r"loaxa-verify: (\d+) of (\d+) files ok", out)
    if not found or int(found.group(1)) != count:
        bad = re.findall(r"loaxa-verify: bad .*", out)
        raise FlashError("files on the board differ from the bundle (flash full or failing?):\n"
                         + "\n".join(bad or [out.strip()[-500:]]))


def load_config(path, device):
    """The receiver's config.json, checked as the receiver will check it, and for ``device``."""
    from firmware import config as receiver_config

    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise FlashError("cannot read config %s: %s" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise FlashError("config %s is not valid JSON: %s" % (path, exc)) from None
    if not isinstance(raw, dict):
        raise FlashError("config %s is not a JSON object" % path)
    if raw.get("device") != device:
        raise FlashError("config %s is for device %r, not %r: wrong file for this board"
                         % (path, raw.get("device"), device))
    try:
        cfg = receiver_config.validate(receiver_config.merge(receiver_config.DEFAULTS, raw))
    except receiver_config.ConfigError as exc:
        raise FlashError("config %s would be refused by the receiver: %s" % (path, exc)) from None
    link = cfg["link"]
    if link.get("type") == "wifi" and not link.get("ssid"):
        raise FlashError("config %s has no Wi-Fi for the pole (link.ssid): add it with `loaxa "
                         "device provision --wifi-ssid NAME --wifi-password PASS`" % path)
    return cfg


def check_port(port):
    if not os.path.exists(port):
        seen = sorted(str(p) for pattern in ("ttyUSB*", "ttyACM*") for p in Path("/dev").glob(pattern))
        raise FlashError("no serial port %s: is the board plugged in (and its USB cable one that "
                         "carries data)? Ports seen: %s" % (port, ", ".join(seen) or "none"))


def check_image(path):
    try:
        with open(path, "rb") as f:
            first = f.read(1)
    except OSError as exc:
        raise FlashError("cannot read firmware image %s: %s" % (path, exc.strerror)) from None
    if first != b"\xe9":  # every ESP32 application/bootloader image starts with magic 0xE9
        raise FlashError("%s is not an ESP32 firmware image (.bin from micropython.org)" % path)


def run_steps(steps, dry_run, say=print, sleep=time.sleep):
    """Run (or, dry, print) each step in order; stop at the first failure with its reason."""
    for number, step in enumerate(steps, 1):
        say("[%d/%d] %s" % (number, len(steps), step.title))
        say("  $ " + shlex.join(step.argv))
        if dry_run:
            continue
        for attempt in range(1, step.attempts + 1):
            try:
                answer = run_step(step)
                break
            except FlashError as exc:
                if attempt == step.attempts:
                    raise
                say("  not yet (%s); again in %d s" % (str(exc).split("\n")[0], RETRY_PAUSE_S))
                sleep(RETRY_PAUSE_S)
        if isinstance(answer, str):
            say("  ok: " + answer)


def run_step(step):
    """One command; its check's answer, or FlashError saying why it failed."""
    try:
        if step.check is None:
            result = subprocess.run(step.argv, timeout=900)
            out = ""
        else:
            result = subprocess.run(step.argv, capture_output=True, text=True, timeout=300)
            out = result.stdout + result.stderr
    except FileNotFoundError:
        raise FlashError("%s is not installed: make setup (or pip install esptool mpremote)"
                         % step.argv[0]) from None
    except subprocess.TimeoutExpired:
        raise FlashError("%s did not finish: is the board still connected?" % step.title) from None
    if result.returncode != 0:
        raise FlashError("%s failed (exit %d)%s" % (step.title, result.returncode,
                                                    (":\n" + out.strip()[-800:]) if out else ""))
    return step.check(out) if step.check is not None else None
