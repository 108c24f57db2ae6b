"""`make test-micropython`, second half: tests/mpy under MicroPython computing like an ESP32.

    python tools/mptest/run_unix.py [--mpy] [--mem] [--heap 2m] [tests/mpy/test_x.py ...]

The binary is MicroPython's unix port built with the ESP32's float and int model
(tools/mpbuild.py; ``make setup`` builds it). Each test module runs in that interpreter with the
heap capped at ``--heap`` (a WROVER's 2 MB by default), its tests printed PASS/FAIL, then
exactly "N passed, N failed". ``--mpy`` loads protocol/ and firmware/ as mpy-cross bytecode, as
deployed. Exits 1 on any failure. With no binary (setup could not build one) it prints that the
ESP32-model run was SKIPPED and why, and exits 0, unless ``--require`` is given.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools import mpbuild  # noqa: E402

REPO = mpbuild.REPO
TEST_DIR = REPO / "tests" / "mpy"
RUN_TIMEOUT_S = 900


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mpy", action="store_true", help="protocol/ and firmware/ as .mpy")
    parser.add_argument("--mem", action="store_true", help="heap each test left allocated")
    parser.add_argument("--heap", default=mpbuild.HEAP_PSRAM, help="heap size (-X heapsize)")
    parser.add_argument("--require", action="store_true",
                        help="fail instead of skipping when there is no ESP32-model binary")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args(argv)

    binary = mpbuild.esp32_model()
    if binary is None:
        print("SKIPPED the ESP32-model MicroPython run: %s" % mpbuild.skip_reason())
        return 1 if args.require else 0
    files = [Path(f).resolve() for f in args.files] or sorted(TEST_DIR.glob("test_*.py"))
    dirs = sorted({str(f.parent) for f in files})
    specs = ["%s=%s" % (f.stem, f.relative_to(REPO) if f.is_relative_to(REPO) else f)
             for f in files]
    with tempfile.TemporaryDirectory(prefix="mptest-") as scratch:
        lib = str(mpbuild.device_tree(scratch, mpy=True)) if args.mpy else str(REPO)
        # .frozen first (asyncio is frozen in), the device code, then tests and the harness.
        path = ":".join([".frozen", lib] + dirs + [str(REPO / "tools" / "mptest")])
        env = dict(os.environ, MICROPYPATH=path)
        cmd = [str(binary), "-X", "heapsize=" + args.heap,
               str(REPO / "tools" / "mptest" / "unix_main.py")] + specs
        if args.mem:
            cmd.append("--mem")
        label = "ESP32 model (float32, 31-bit ints, heap %s, %s)" % (
            args.heap, "mpy-cross bytecode" if args.mpy else "source")
        print("== tests/mpy under MicroPython %s" % label, flush=True)
        try:
            result = subprocess.run(cmd, cwd=scratch, env=env, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print("FAIL the run did not finish within %d s" % RUN_TIMEOUT_S)
            return 1
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
