"""`loaxa device`: the bundle (real mpy-cross, real files), the flash steps (dry run, and a real
run against fake esptool/mpremote executables that only record their arguments: the boundary
with the board), the label's QR code, and mpremote against the ESP32-model MicroPython's REPL
on a pseudo-terminal (no board: what needs one is in docs/flashing.md)."""

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tools import device
from tools.device_bundle import (
    BundleError,
    build_contents,
    device_sources,
    mpy_header,
    read_bundle,
    write_bundle,
)
from tools.device_flash import (
    PROBE,
    FlashError,
    check_chip,
    check_micropython,
    mpremote_steps,
    run_steps,
)
from tools.device_label import claim_code, label_svg, qr_payload
from tools.mpbuild import REPO, esp32_model, skip_reason

KEY = "ab" * 32

def mpy_abi(version, sub_version, arch):
    """sys.implementation._mpy: the .mpy version, and the feature byte (arch << 2 | sub)."""
    return version | (sub_version | arch << 2) << 8


XTENSAWIN, RV32IMC = 10, 11
PROBE_ANSWER = ("(name='micropython', version=(1, 28, 0, ''), _machine='Generic ESP32 module "
                "with SPIRAM with ESP32', _mpy=%d)\nheap 2000000 60000\n"
                % mpy_abi(6, 3, XTENSAWIN))


def bundle_at(out):
    return write_bundle(out, progress=lambda _: None)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return bundle_at(tmp_path_factory.mktemp("bundle"))


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_two_bundles_of_the_same_source_are_byte_identical(tmp_path):
    first, second = bundle_at(tmp_path / "a"), bundle_at(tmp_path / "b")
    assert tree_bytes(first) == tree_bytes(second)
    tar = first.name + ".tar"
    assert (tmp_path / "a" / tar).read_bytes() == (tmp_path / "b" / tar).read_bytes()
    # The archive holds the same files as the folder.
    unpacked = device.unpack_bundle(tmp_path / "a" / tar, tmp_path / "unpacked")
    assert tree_bytes(unpacked) == tree_bytes(first)


def test_every_device_source_is_compiled_into_the_manifest_with_its_hash_and_size(bundle):
    manifest = read_bundle(bundle)
    by_source = {e["source"]: e for e in manifest["files"]}
    for rel in device_sources(REPO):
        if rel.startswith("firmware/board/"):
            continue
        entry = by_source[rel]
        assert entry["path"] == "/lib/" + rel[:-3] + ".mpy"
        data = (bundle / "files" / entry["path"][1:]).read_bytes()
        assert data[:2] == b"M\x06"  # .mpy version 6
        assert (entry["size"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    for name in ("boot.py", "main.py"):  # run by name as source on the board
        entry = by_source["firmware/board/" + name]
        assert entry["path"] == "/" + name and "source" in entry["kept_as_source"]
        assert (bundle / "files" / name).read_bytes() == (REPO / entry["source"]).read_bytes()
    assert set(by_source) == set(device_sources(REPO))
    assert manifest["version"] == "0.1.0" or re.fullmatch(r"[\d.]+\S*", manifest["version"])
    # The viper decoder carries Xtensa code: the ABI is the native one, MicroPython 1.23+.
    viper = (bundle / "files/lib/firmware/adpcm_viper.mpy").read_bytes()
    assert mpy_header(viper) == (6, 3, "xtensawin")
    assert manifest["mpy"] == {"version": 6, "sub_version": 3, "native_arch": "xtensawin"}
    assert manifest["micropython_min"] == "1.23"


def test_a_tampered_bundle_file_is_refused(tmp_path):
    bundle = bundle_at(tmp_path)
    (bundle / "files/lib/protocol/topics.mpy").write_bytes(b"M\x06\x00\x1fnot it")
    with pytest.raises(BundleError, match="topics.mpy does not match"):
        read_bundle(bundle)


def test_a_changed_source_changes_the_manifest_hash(tmp_path):
    for package in ("firmware", "protocol"):
        shutil.copytree(REPO / package, tmp_path / "src" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    quiet = lambda _: None  # noqa: E731
    before = build_contents(tmp_path / "src", progress=quiet)[1]
    assert before["source_commit"] is None  # not a git checkout
    with open(tmp_path / "src/protocol/topics.py", "a") as f:
        f.write("\nCHANGED = 1\n")
    after = build_contents(tmp_path / "src", progress=quiet)[1]
    assert after["manifest_sha256"] != before["manifest_sha256"]
    changed = [a["path"] for a, b in zip(after["files"], before["files"], strict=True) if a != b]
    assert changed == ["/lib/protocol/topics.mpy"]


def test_the_bundle_loads_under_the_esp32_model_micropython(bundle):
    binary = esp32_model()
    if binary is None:
        pytest.skip("ESP32-model MicroPython: " + skip_reason())
    script = ("import sys, firmware, firmware.core, protocol.messages, firmware.config\n"
              "print('loaded', firmware.FIRMWARE_VERSION, sys.path)\n")
    # From a folder with no source in reach: only the bundle's .mpy files can be imported.
    result = subprocess.run([str(binary), "-X", "heapsize=2m", "-c", script],
                            env={**os.environ, "MICROPYPATH": str(bundle / "files" / "lib")},
                            cwd=bundle, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded %s ['', '%s']" % (read_bundle(bundle)["version"],
                                                          bundle / "files" / "lib")


# -- flash ------------------------------------------------------------------------------------

FAKE_TOOL = r'''#!%(python)s
import json, os, re, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\n")
args = sys.argv[1:]
if "chip-id" in args:
    print("Chip type:          ESP32-D0WD-V3 (revision v3.1)")
if "exec" in args:
    script = args[args.index("exec") + 1]
    if "sys.implementation" in script:
        sys.stdout.write(os.environ["FAKE_PROBE"])
    elif "loaxa-prepare" in script:
        print("loaxa-prepare: ok")
    elif "loaxa-verify" in script:
        files = json.loads(re.search(r"^FILES = (.*)$", script, re.M).group(1))
        print("loaxa-verify: %%d of %%d files ok" %% (len(files), len(files)))
'''


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """esptool and mpremote first on PATH: they record their argument lists and answer as a
    board would."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name in ("esptool", "mpremote"):
        path = bin_dir / name
        path.write_text(FAKE_TOOL % {"python": sys.executable})
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", "%s%s%s" % (bin_dir, os.pathsep, os.environ["PATH"]))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_PROBE", PROBE_ANSWER)

    def calls():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]
    return calls


def write_config(path, device_id="r01", **extra):
    cfg = {"device": device_id, "site": "xa-01", "key": KEY,
           "broker": {"host": "broker.xa-01.lan", "port": 1883, "user": device_id,
                      "password": "pw"},
           "link": {"type": "wifi", "ssid": "Nha van hoa", "password": "wifi-pass"}, **extra}
    path.write_text(json.dumps(cfg))
    return path


def test_dry_run_prints_the_exact_commands_and_runs_none(tmp_path, bundle, fake_tools, capsys):
    config = write_config(tmp_path / "r01.json")
    image = tmp_path / "ESP32_GENERIC-SPIRAM-v1.28.0.bin"
    image.write_bytes(b"\xe9" + bytes(100))
    code = device.main(["flash", "--port", "/dev/ttyUSB7", "--device", "r01", "--bundle",
                        str(bundle), "--config", str(config), "--firmware", str(image),
                        "--erase", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert fake_tools() == []  # nothing ran, and no board (the port does not exist)
    fake = str(tmp_path / "fakebin")
    commands = [line[4:] for line in out.splitlines() if line.startswith("  $ ")]
    assert commands[:3] == [
        "%s/esptool --port /dev/ttyUSB7 chip-id" % fake,
        "%s/esptool --chip esp32 --port /dev/ttyUSB7 erase-flash" % fake,
        "%s/esptool --chip esp32 --port /dev/ttyUSB7 --baud 460800 write-flash -z 0x1000 %s"
        % (fake, image)]
    assert commands[3].startswith("%s/mpremote connect /dev/ttyUSB7 exec " % fake)
    assert "cp -r %s/files/lib/firmware :/lib/ + cp -r %s/files/lib/protocol :/lib/" % (
        bundle, bundle) in out
    assert commands[-2] == "%s/mpremote connect /dev/ttyUSB7 cp %s :/data/config.json" % (
        fake, config)
    assert commands[-1] == "%s/mpremote connect /dev/ttyUSB7 reset" % fake
    assert "dry run: nothing was run" in out
    # The same from the bundle's .tar, as a technician is sent it.
    assert device.main(["flash", "--port", "/dev/ttyUSB7", "--device", "r01", "--bundle",
                        str(bundle) + ".tar", "--dry-run"]) == 0
    assert "copy bundle %s" % read_bundle(bundle)["version"] in capsys.readouterr().out
    assert fake_tools() == []


def test_a_real_run_calls_esptool_then_mpremote_in_order(tmp_path, bundle, fake_tools, capsys):
    port = tmp_path / "ttyUSB0"  # stands for the device node; only the fakes use it
    port.touch()
    config = write_config(tmp_path / "r01.json")
    image = tmp_path / "mp.bin"
    image.write_bytes(b"\xe9" + bytes(100))
    assert device.main(["flash", "--port", str(port), "--device", "r01", "--bundle", str(bundle),
                        "--config", str(config), "--firmware", str(image)]) == 0
    calls = fake_tools()
    p = str(port)
    assert calls[0] == ["esptool", "--port", p, "chip-id"]
    assert calls[1] == ["esptool", "--chip", "esp32", "--port", p, "--baud", "460800",
                        "write-flash", "-z", "0x1000", str(image)]
    assert [c[:4] for c in calls[2:5]] == [["mpremote", "connect", p, "exec"]] * 2 + [
        ["mpremote", "connect", p, "cp"]]
    assert calls[2][4] == PROBE and "loaxa-prepare" in calls[3][4]
    # A new identity: the previous one's fallback copy goes before the new config comes.
    assert '"/data/config.good.json"' in calls[3][4]
    assert "loaxa-verify" in calls[5][4]
    assert calls[6] == ["mpremote", "connect", p, "cp", str(config), ":/data/config.json"]
    assert calls[7] == ["mpremote", "connect", p, "reset"]
    assert len(calls) == 8
    out = capsys.readouterr().out
    assert "[1/8] check the chip is an ESP32" in out and "ok: ESP32-D0WD-V3" in out
    assert "ok: 1.28.0" in out and "done: r01 has bundle" in out


def test_no_port_is_a_clear_error_and_nothing_runs(tmp_path, bundle, fake_tools, capsys):
    code = device.main(["flash", "--port", str(tmp_path / "ttyUSB9"), "--device", "r01",
                        "--bundle", str(bundle)])
    assert code == 1
    assert "no serial port %s: is the board plugged in" % (tmp_path / "ttyUSB9") in \
        capsys.readouterr().err
    assert fake_tools() == []


def test_a_config_for_another_device_is_refused_before_anything_runs(tmp_path, bundle,
                                                                     fake_tools, capsys):
    config = write_config(tmp_path / "r02.json", device_id="r02")
    code = device.main(["flash", "--port", "/dev/ttyUSB0", "--device", "r01", "--bundle",
                        str(bundle), "--config", str(config), "--dry-run"])
    assert code == 1
    assert "is for device 'r02', not 'r01': wrong file for this board" in capsys.readouterr().err
    assert fake_tools() == []


def test_a_config_the_receiver_would_refuse_is_refused_here(tmp_path):
    from tools.device_flash import load_config

    with pytest.raises(FlashError, match="would be refused by the receiver: key must be 64 hex"):
        load_config(write_config(tmp_path / "c.json", key="abc"), "r01")
    no_wifi = write_config(tmp_path / "d.json", link={"type": "wifi"})
    with pytest.raises(FlashError, match="no Wi-Fi for the pole"):
        load_config(no_wifi, "r01")


def test_a_failing_step_stops_the_run_with_its_reason(tmp_path, bundle, fake_tools,
                                                      monkeypatch):
    monkeypatch.setenv("FAKE_PROBE", "Traceback: no such board\n")
    steps = mpremote_steps(["/dev/ttyUSB0"], bundle, read_bundle(bundle))
    pauses = []
    with pytest.raises(FlashError, match="no MicroPython answers on the board"):
        run_steps(steps, dry_run=False, say=lambda _: None, sleep=pauses.append)
    assert len(fake_tools()) == 3 and len(pauses) == 2  # the probe, tried 3 times; no more


def test_wrong_chip_micropython_and_heap_are_named():
    with pytest.raises(FlashError, match="wrong chip: the board is an ESP32-C3, not an ESP32"):
        check_chip("Chip type:          ESP32-C3 (QFN32) (revision v0.4)", "esp32")
    with pytest.raises(FlashError, match="found no chip"):
        check_chip("A fatal error occurred: Failed to connect to ESP32", "esp32")
    manifest = {"micropython_min": "1.23", "mpy": {"version": 6, "sub_version": 3,
                                                   "native_arch": "xtensawin"}}
    assert check_micropython(PROBE_ANSWER, manifest, psram=True) == "1.28.0"
    old = PROBE_ANSWER.replace("(1, 28, 0", "(1, 22, 2").replace(
        str(mpy_abi(6, 3, XTENSAWIN)), str(mpy_abi(6, 2, XTENSAWIN)))
    with pytest.raises(FlashError, match="MicroPython 1.22.2 on the board .*needs 1.23 or newer"):
        check_micropython(old, manifest, psram=True)
    riscv = PROBE_ANSWER.replace(str(mpy_abi(6, 3, XTENSAWIN)), str(mpy_abi(6, 3, RV32IMC)))
    with pytest.raises(FlashError, match="loads .mpy 6.3 for rv32imc; the bundle is .mpy 6.3 "
                                         "for xtensawin"):
        check_micropython(riscv, manifest, psram=True)
    small = PROBE_ANSWER.replace("heap 2000000 60000", "heap 90000 20000")
    with pytest.raises(FlashError, match="no PSRAM: this board has 107 KB of heap"):
        check_micropython(small, manifest, psram=True)
    assert check_micropython(small, manifest, psram=False) == "1.28.0"


# -- provision and label ----------------------------------------------------------------------

def qr_matrix(svg_text):
    """The QR code drawn in the label, module by module, from segno's path in the SVG (rows
    of horizontal strokes: "M x y" / "m dx dy" moves, "h n" dark runs)."""
    import numpy as np

    ns = {"s": "http://www.w3.org/2000/svg"}
    qr = ET.fromstring(svg_text.encode()).find(".//s:svg[@class='segno']", ns)
    size = int(qr.get("width"))
    cells = np.zeros((size, size), dtype=bool)
    x = y = 0.0
    for op, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?",
                               qr.find("s:path[@class='qrline']", ns).get("d")):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            cells[int(y), int(x):int(x + float(a))] = True
            x += float(a)
    return cells


def decode_qr(cells):
    import numpy as np
    zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp (dev dependency) decodes QR")
    image = np.where(np.kron(cells, np.ones((8, 8), dtype=bool)), 0, 255).astype(np.uint8)
    return [r.text for r in zxingcpp.read_barcodes(image)]


def test_the_claim_code_is_the_keyed_hmac_and_never_the_key():
    code = claim_code(KEY, "xa-01", "r01")
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", code)
    assert code == claim_code(KEY, "xa-01", "r01")
    assert len({code, claim_code(KEY, "xa-01", "r02"), claim_code(KEY, "xa-02", "r01"),
                claim_code("cd" * 32, "xa-01", "r01")}) == 4


def test_provision_writes_the_config_from_the_headend_and_a_label_whose_qr_decodes(tmp_path,
                                                                                    capsys):
    from headend.cli import main as headend_main

    data, configs = tmp_path / "headend", tmp_path / "configs"
    assert headend_main(["--data-dir", str(data), "provision", "--receivers", "2", "--fleet",
                         str(data / "fleet.json")]) == 0
    # From the fleet file the head-end wrote: its receiver_config, plus the pole's Wi-Fi.
    assert device.main(["provision", "--device", "r02", "--config-dir", str(configs),
                        "--fleet", str(data / "fleet.json"), "--wifi-ssid", "Nhà văn hoá",
                        "--wifi-password", "wifi-pass"]) == 0
    config = json.loads((configs / "r02.json").read_text())
    fleet = json.loads((data / "fleet.json").read_text())
    entry = next(d for d in fleet["devices"] if d["id"] == "r02")
    assert (config["device"], config["key"], config["broker"]["user"]) == (
        "r02", entry["key"], entry["mqtt_user"])
    assert config["link"] == {"type": "wifi", "ssid": "Nhà văn hoá", "password": "wifi-pass"}
    assert stat.S_IMODE((configs / "r02.json").stat().st_mode) == 0o600
    code = claim_code(entry["key"], fleet["site"], "r02")
    assert "claim code %s" % code in capsys.readouterr().out

    svg = (configs / "r02.label.svg").read_text(encoding="utf-8")
    texts = [t.text for t in ET.fromstring(svg.encode()).iter("{http://www.w3.org/2000/svg}text")]
    assert texts[:9] == ["Mã cụm loa", "Receiver ID", "r02", "Mã nhận", "Claim code", code,
                         "Xã / điểm", "Site", fleet["site"]]
    assert entry["key"] not in svg and entry["mqtt_password"] not in svg
    assert decode_qr(qr_matrix(svg)) == [qr_payload(fleet["site"], "r02", code)]


def test_provision_without_a_config_says_where_it_comes_from(tmp_path, capsys):
    assert device.main(["provision", "--device", "r09", "--config-dir", str(tmp_path)]) == 1
    assert "run `loaxa headend provision --config-dir" in capsys.readouterr().err


def test_the_label_qr_matrix_is_segnos_for_the_payload():
    import segno

    svg = label_svg(device="r01", site="xa-01", code="ABCD-EFGH")
    expected = segno.make(qr_payload("xa-01", "r01", "ABCD-EFGH"), error="m")
    assert qr_matrix(svg).tolist() == [[bool(v) for v in row]
                                       for row in expected.matrix_iter(border=4)]


# -- mpremote through a pseudo-terminal to the ESP32-model MicroPython -----------------------

class PtyRepl:
    """MicroPython's unix port (the ESP32-model build) with its REPL on one pseudo-terminal,
    bridged to a second one whose path mpremote opens as if it were a board's USB serial port.
    mpremote must be told ``resume``: its soft reset (Ctrl-D) would end the unix REPL."""

    def __init__(self, binary, cwd, heap="2m"):
        import pty
        import threading
        import tty

        self._mp, mp_side = pty.openpty()
        tty.setraw(mp_side)
        self.proc = subprocess.Popen([str(binary), "-X", "heapsize=" + heap], stdin=mp_side,
                                     stdout=mp_side, stderr=mp_side, cwd=cwd, close_fds=True)
        os.close(mp_side)
        self._user, self._user_side = pty.openpty()  # the side kept open: no EIO between runs
        tty.setraw(self._user)
        tty.setraw(self._user_side)
        self.path = os.ttyname(self._user_side)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._bridge, daemon=True)
        self._thread.start()

    def _bridge(self):
        import select

        other = {self._mp: self._user, self._user: self._mp}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(other), [], [], 0.2)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return  # MicroPython ended
                os.write(other[fd], data)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.proc.kill()
        self.proc.wait(timeout=10)
        for fd in (self._mp, self._user, self._user_side):
            os.close(fd)


@pytest.fixture
def pty_board(tmp_path):
    binary = esp32_model()
    if binary is None:
        pytest.skip("ESP32-model MicroPython: " + skip_reason())
    board = tmp_path / "board"  # the "board's" file system root: MicroPython's unix port
    board.mkdir()             # writes where it is told, so every path is under this folder
    repl = PtyRepl(binary, cwd=board)
    yield repl, board
    repl.close()


def test_mpremote_installs_the_bundle_through_a_pseudo_terminal(tmp_path, bundle, pty_board):
    repl, board = pty_board
    stale = board / "lib" / "firmware" / "removed_module.mpy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"M\x06old")
    (board / "data").mkdir()
    (board / "data" / "config.good.json").write_text('{"device": "r02"}')  # its old identity
    # A version an update installed, and the pointer that would boot it instead.
    (board / "data" / "fw" / "0.9.0" / "files" / "lib").mkdir(parents=True)
    (board / "data" / "fw" / "ota.json").write_text('{"cur": "0.9.0"}')
    config = write_config(tmp_path / "r01.json")
    manifest = read_bundle(bundle)
    steps = mpremote_steps([repl.path, "resume"], bundle, manifest, config=config,
                           root=str(board), reset=False)
    quiet = lambda _: None  # noqa: E731
    # The probe reads a real MicroPython's answer: 1.28, whose .mpy ABI is x86's here, so the
    # bundle's Xtensa code is refused by name.
    with pytest.raises(FlashError, match="loads .mpy 6.3 for x86; the bundle is .mpy 6.3 for "
                                         "xtensawin"):
        run_steps(steps[:1], dry_run=False, say=quiet, sleep=lambda _: None)
    run_steps(steps[1:], dry_run=False, say=quiet)  # prepare, copy, verify, config
    installed = tree_bytes(board)
    assert installed.pop("data/config.json") == config.read_bytes()
    assert installed == tree_bytes(bundle / "files")  # the stale module is gone, and data/fw
    result = subprocess.run([str(esp32_model()), "-X", "heapsize=2m", "-c",
                             "import firmware.core, protocol.messages; print('ok')"],
                            env={**os.environ, "MICROPYPATH": str(board / "lib")}, cwd=board,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
    # A file damaged on the board is caught by the on-board check against the manifest.
    (board / "lib/protocol/topics.mpy").write_bytes(b"M\x06\x00\x1fdamaged")
    with pytest.raises(FlashError, match="loaxa-verify: bad %s/lib/protocol/topics.mpy" % board):
        run_steps([s for s in steps if "against the manifest" in s.title], dry_run=False,
                  say=quiet)


# -- waiting for the birth: the real head-end's API and ingest --------------------------------

@pytest.fixture
def headend(tmp_path, monkeypatch):
    """A head-end on a temp SQLite file (MQTT side off), a technician's token, receiver r01."""
    from fastapi.testclient import TestClient

    from headend.app import create_app
    from headend.services.users import create_user
    from headend.settings import Settings

    monkeypatch.setattr("headend.security.BCRYPT_ROUNDS", 4)
    settings = Settings(data_dir=tmp_path / "var", mqtt_enabled=False, site_id="xa-test")
    app = create_app(settings)
    with TestClient(app) as client:
        with app.state.session_factory() as session:
            create_user(session, username="kythuat1", password="correct horse battery",
                        role="technician")
        token = client.post("/api/v1/auth/token", data={
            "username": "kythuat1", "password": "correct horse battery"}).json()["access_token"]
        made = client.post("/api/v1/devices", json={"id": "r01", "name": "Cụm loa 1"},
                           headers={"Authorization": "Bearer " + token})
        assert made.status_code == 201, made.text
        yield app, client, token, made.json()["device_key"]
    app.state.engine.dispose()


def ingest_birth(app, key, boot):
    """r01's birth, sealed with its key, through the head-end's own ingest."""
    import time as clock

    from headend.mqtt.ingest import Report, apply_batch
    from protocol import messages
    from protocol.signing import key_from_hex

    body = messages.birth("r01", boot, 1, "0.1.0", {"codecs": ["mp3"], "sink": "vs1053"}, "wifi")
    report = Report("status", "r01", messages.seal_report(key_from_hex(key), "status", body),
                    clock.time_ns() // 1_000_000, qos=1)
    with app.state.session_factory() as session:
        apply_batch(session, settings=app.state.settings, reports=[report])
        session.commit()


def test_waiting_ends_when_the_headend_has_the_new_birth(headend):
    app, client, token, key = headend
    before = device.api_device(client, "", token, "r01")["last_seen"]
    polls = []

    def board_boots(_seconds):  # between two polls, the flashed board's birth arrives
        polls.append(1)
        if len(polls) == 2:
            ingest_birth(app, key, boot=1)

    detail = device.wait_online(client, "", token, "r01", before, timeout_s=600,
                                say=lambda _: None, sleep=board_boots)
    assert detail["online"] and detail["firmware"] == "0.1.0" and detail["link"] == "wifi"
    assert len(polls) == 2
    # Online already before the reset: only a newer birth (a new last_seen) ends the wait.
    ticks = iter(range(0, 100, 10))
    with pytest.raises(FlashError, match="r01 did not come online within 30 s"):
        device.wait_online(client, "", token, "r01", detail["last_seen"], timeout_s=30,
                           say=lambda _: None, sleep=lambda _: None, clock=lambda: next(ticks))


def test_waiting_refuses_an_unknown_device_and_a_bad_token(headend):
    _, client, token, _ = headend
    with pytest.raises(FlashError, match="does not know receiver r99: provision it there"):
        device.api_device(client, "", token, "r99")
    with pytest.raises(FlashError, match="refused the token"):
        device.api_device(client, "", "not-a-token", "r01")


def test_flash_help_names_every_option(capsys):
    with pytest.raises(SystemExit):
        device.main(["flash", "--help"])
    out = capsys.readouterr().out
    for option in ("--port", "--device", "--firmware", "--config", "--bundle", "--erase",
                   "--dry-run", "--wait-headend", "--token"):
        assert option in out


def test_loaxa_dispatches_device(tmp_path, capsys):
    from tools.cli import main as loaxa

    assert loaxa(["device", "bundle", "--out", str(tmp_path), "--version", "0.1.0-test"]) == 0
    assert (tmp_path / "loaxa-firmware-0.1.0-test.tar").exists()
    assert read_bundle(tmp_path / "loaxa-firmware-0.1.0-test")["version"] == "0.1.0-test"
