"""firmware/board/main.py, the board's entry point, under MicroPython computing like an ESP32 with
the heap of the board: a board without PSRAM is refused before the firmware is even imported
(importing it would run out of memory), with the reason on the REPL; a WROVER's heap goes on to
the configuration. ``machine`` is a stand-in with the pins main.py touches."""

import subprocess

import pytest

from tools import mpbuild

pytestmark = pytest.mark.skipif(mpbuild.esp32_model() is None,
                                reason="no ESP32-model MicroPython: %s" % mpbuild.skip_reason())

FAKE_MACHINE = '''
class Pin:
    OUT = 1
    IN = 0

    def __init__(self, *args, **kwargs):
        self._v = 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = v


def reset():
    raise SystemExit(9)
'''


def run_main(tmp_path, heap):
    (tmp_path / "machine.py").write_text(FAKE_MACHINE)
    env = {"MICROPYPATH": ":".join([".frozen", str(tmp_path), str(mpbuild.REPO)])}
    return subprocess.run([str(mpbuild.esp32_model()), "-X", "heapsize=" + heap,
                           str(mpbuild.REPO / "firmware" / "board" / "main.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_a_board_without_psram_is_refused_with_the_reason(tmp_path):
    result = run_main(tmp_path, mpbuild.HEAP_NO_PSRAM)
    assert "loaxa: not starting: this board has" in result.stdout
    assert "PSRAM" in result.stdout and "MemoryError" not in result.stdout + result.stderr


def test_a_wrover_heap_goes_on_to_the_configuration(tmp_path):
    result = run_main(tmp_path, mpbuild.HEAP_PSRAM)
    assert "not starting" not in result.stdout
    assert "loaxa: not provisioned" in result.stdout  # no /data/config.json here
