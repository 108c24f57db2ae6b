"""`make test-micropython` cannot pass by accident: the MicroPython runner reports a failing,
an async or an unimportable test file, and exits non-zero unless every test passed."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "tools" / "mptest" / "run.mjs"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None
    or not (REPO / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").exists(),
    reason="needs Node and the npm packages (make setup)")


def run_under_micropython(*files):
    return subprocess.run(["node", str(RUNNER), *map(str, files)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_runner_reports_each_test_and_fails_on_any_failure(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import asyncio\n"
        "import sys\n"
        "def test_runs_on_micropython():\n"
        "    assert sys.implementation.name == 'micropython'\n"
        "def test_fails():\n"
        "    assert 1 == 2, 'one is not two'\n"
        "async def test_async_fails_after_awaiting():\n"
        "    await asyncio.sleep_ms(1)\n"
        "    raise ValueError('late')\n")
    result = run_under_micropython(probe)
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert lines[-1] == "1 passed, 2 failed"
    assert any(line.startswith("PASS") and "test_runs_on_micropython" in line for line in lines)
    assert any(line.startswith("FAIL") and "one is not two" in line for line in lines)
    assert any(line.startswith("FAIL") and "ValueError: late" in line for line in lines)


def test_runner_fails_on_an_import_error_or_no_tests(tmp_path):
    broken = tmp_path / "test_broken.py"
    broken.write_text("import socketserver\n")  # CPython-only: not on a receiver
    result = run_under_micropython(broken)
    assert result.returncode == 1
    assert "(import)" in result.stdout and result.stdout.splitlines()[-1] == "0 passed, 1 failed"

    empty = tmp_path / "test_empty.py"
    empty.write_text("X = 1\n")
    assert run_under_micropython(empty).returncode == 1




# -- the ESP32-model run (tools/mptest/run_unix.py) ---------------------------------------

def run_under_esp32_model(*args):
    from tools import mpbuild

    if mpbuild.esp32_model() is None:
        pytest.skip("no ESP32-model MicroPython: %s" % mpbuild.skip_reason())
    return subprocess.run([sys.executable, str(REPO / "tools" / "mptest" / "run_unix.py"),
                           "--require", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_esp32_model_run_computes_like_the_board_and_fails_on_any_failure(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import asyncio\n"
        "def test_epoch_ms_in_a_float_is_coarse():\n"
        "    x = 1.8e12\n"
        "    assert x + 1 == x  # float32: the reason time is integer ms in the firmware\n"
        "def test_fails():\n"
        "    assert 1 == 2, 'one is not two'\n"
        "async def test_async_fails_after_awaiting():\n"
        "    await asyncio.sleep_ms(1)\n"
        "    raise ValueError('late')\n")
    result = run_under_esp32_model(probe)
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert "number model: float32" in result.stdout
    assert lines[-1] == "1 passed, 2 failed"
    assert any(line.startswith("FAIL") and "one is not two" in line for line in lines)
    assert any(line.startswith("FAIL") and "ValueError: late" in line for line in lines)

