"""`loaxa sim` end to end: a fleet file in, receivers online on the broker, a status table out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.fleet import generate_specs, save_fleet_file
from simulator.operator import Operator

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

REPO = Path(__file__).resolve().parents[2]


def loaxa(*args, timeout):
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_sim_runs_a_fleet_file_until_stopped(embedded_broker, tmp_path):
    specs = generate_specs(3, zones=2, offset_ms=1000, seed=9)
    fleet_file = tmp_path / "fleet.json"
    save_fleet_file(str(fleet_file), "xa-thu", (embedded_broker.host, embedded_broker.port), specs)
    assert json.loads(fleet_file.read_text())["devices"][0]["zone"] == "thon-1"

    with Operator("xa-thu", [s.info() for s in specs], embedded_broker.host,
                  embedded_broker.port) as op:
        proc = loaxa("sim", "--fleet", str(fleet_file), "--status-every", "2", "--duration", "4",
                     timeout=60)
        assert proc.returncode == 0, proc.stderr
        # Every receiver was born on the broker, and the table showed them online.
        assert {b.device for b in op.births} == {s.id for s in specs}
        assert "3 receivers, 3 online" in proc.stdout


def test_sim_refuses_a_bad_broker_address():
    proc = loaxa("sim", "--broker", "nowhere", timeout=30)
    assert proc.returncode == 2 and "HOST:PORT" in proc.stderr


def test_sim_demo_passes():
    """`loaxa sim demo`: the device side end to end with a scripted operator."""
    proc = loaxa("sim", "demo", "--receivers", "4", "--zones", "2", timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "proof of play from 2/2" in proc.stdout
    assert "preempted by 4/4" in proc.stdout
