"""Fixtures of the fleet tests: ``runtime`` runs a test with CPython receivers (in this
process) and with MicroPython receivers (each its own process of the MicroPython that computes
like an ESP32, simulator/mp_runtime.py)."""

import pytest

MIN_MICROPYTHON_RECEIVERS = 10


@pytest.fixture(params=["cpython", "micropython"])
def runtime(request):
    if request.param == "micropython":
        from tools import mpbuild

        if mpbuild.esp32_model() is None:
            pytest.skip("no ESP32-model MicroPython: %s" % mpbuild.skip_reason())
    return request.param


@pytest.fixture
def fleet_size(runtime):
    """``fleet_size(n)``: n receivers, at least ``MIN_MICROPYTHON_RECEIVERS`` when they are
    MicroPython processes."""
    def size(count):
        return max(count, MIN_MICROPYTHON_RECEIVERS) if runtime == "micropython" else count
    return size
