"""Receivers as MicroPython processes (simulator/mp_runtime.py): the board's number model and
heap are in force in each one, and a heap too small for the receiver is refused at boot with
the reason, as board/main.py refuses it on an ESP32 without PSRAM."""

import asyncio
import time

import pytest

from simulator.fleet import Fleet, generate_specs
from tools import mpbuild
from tools.testbrokers import free_port

pytestmark = pytest.mark.skipif(mpbuild.esp32_model() is None,
                                reason="no ESP32-model MicroPython: %s" % mpbuild.skip_reason())


async def until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_each_receiver_computes_like_an_esp32_in_its_own_process(tmp_path):
    fleet = Fleet(generate_specs(2, seed=3), site="t", broker=("127.0.0.1", free_port()),
                  workdir=str(tmp_path), runtime="micropython")
    await fleet.start()
    try:
        await until(lambda: all(sim.boot_report for sim in fleet))
        for sim in fleet:
            assert sim.boot_report["impl"] == "micropython"
            assert sim.boot_report["maxsize"] == 2 ** 31 - 1  # 31-bit small ints
        assert len({sim.process.pid for sim in fleet}) == 2
        assert not fleet.crashed()
    finally:
        await fleet.stop()


async def test_a_board_without_psram_is_refused_at_boot_with_the_reason(tmp_path):
    fleet = Fleet(generate_specs(1, seed=4), site="t", broker=("127.0.0.1", free_port()),
                  workdir=str(tmp_path), runtime="micropython", heap=mpbuild.HEAP_NO_PSRAM)
    sim = fleet[fleet.ids()[0]]
    await fleet.start()
    try:
        await until(lambda: sim.refused is not None)
        assert "PSRAM" in sim.refused and "KB of heap" in sim.refused
        assert sim.boot_report is None  # the firmware was never imported
    finally:
        await fleet.stop()
