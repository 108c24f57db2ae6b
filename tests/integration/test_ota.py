"""Issue 13, acceptance 2: firmware over the air to simulated receivers, end to end.

A real Mosquitto, the scripted operator (simulator/operator.py) signing ``update`` commands as
the head-end does, bundles served over HTTP (tests/ota_bundles.py: the repository's sources laid
out as ``loaxa device bundle`` lays out its .mpy, with a version and, for the failure cases, a
patch). CPython receivers run in this process, so the code itself cannot change under them: for
them the test shows the download, the switch and the births. The MicroPython receivers are one
ESP32-model process per board that, like board/boot.py, put the version folder the pointer
names first on the path (simulator/mp_receiver.py): there the new code really runs, and a
bundle that crashes at boot or cannot reach the broker is left by the receiver itself.

A power cut is the process killed (``MpSimReceiver.kill``). Cuts at an exact instant of the
switch (between the folder's rename and the pointer's, and between the pointer's temp file and
its rename) are made by leaving the flash as that instant would, then booting.
"""

import asyncio
import json
import os

import pytest
from ota_bundles import BundleServer, make_bundle, tamper

from firmware import ota, otaboot
from protocol import messages
from simulator.fleet import generate_specs
from simulator.scenario import FleetScenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FACTORY = "0.1.0"


def address(broker):
    return (broker.host, broker.port)


def crash_at_boot(text):
    return text.replace('        cfg = configuration.validate(', '        raise RuntimeError('
                        '"this version crashes at boot")\n        cfg = configuration.validate(', 1)


def wrong_broker_port(text):
    return text.replace('cfg["device"], broker["host"], broker["port"],',
                        'cfg["device"], broker["host"], 9,', 1)


def births(sc, device, **fields):
    return [b.msg for b in sc.operator.births_of(device)
            if all(b.msg.get(k) == v for k, v in fields.items())]


def update_events(sc, device):
    """One per seq: after a reboot the outbox may send a delivered event again (the head-end
    drops such duplicates by seq)."""
    out = {}
    for e in sc.operator.events_of(device, messages.EV_UPDATE):
        out.setdefault(e.msg["seq"], e.msg)
    return [out[seq] for seq in sorted(out)]


def flash_of(sc, device):
    return sc.fleet[device].platform.storage_dir


async def scenario(broker, runtime, count=2, **kwargs):
    specs = generate_specs(count, seed=13)
    sc = FleetScenario(address(broker), specs, items=(), runtime=runtime, settle_s=0, **kwargs)
    await sc.start()
    return sc


async def send_update(sc, server, args, ids):
    full = dict(args, url=server.url(args["ver"]))
    return [sc.operator.send(d, messages.UPDATE, full) for d in ids]


async def test_an_update_moves_receivers_to_the_new_version(mosquitto_broker, runtime,
                                                           tmp_path):
    args = make_bundle(tmp_path / "www", "0.2.0")
    async with BundleServer(tmp_path / "www") as server:
        sc = await scenario(mosquitto_broker, runtime)
        try:
            ids = sc.fleet.ids()
            assert all(births(sc, d, fw=FACTORY) for d in ids)
            await send_update(sc, server, args, ids)
            await sc.operator.until(lambda: all(births(sc, d, fw="0.2.0", ota="trial")
                                                for d in ids), 90)
            for d in ids:
                assert [e["ok"] for e in update_events(sc, d)] == [True]
                await sc.operator.until(
                    lambda d=d: not otaboot.read_pointer(flash_of(sc, d)).get("trial"), 20)
                pointer = otaboot.read_pointer(flash_of(sc, d))
                assert pointer["cur"] == "0.2.0" and pointer["last"]["ota"] == ota.UPDATED
            # Confirmed, the birth goes again saying so; the next boot's says it too.
            await sc.operator.until(lambda: all(births(sc, d, fw="0.2.0", ota="updated")
                                                for d in ids), 20)
            before = len(births(sc, ids[0], fw="0.2.0", ota="updated"))
            await sc.fleet.restart(ids[0])
            await sc.operator.until(
                lambda: len(births(sc, ids[0], fw="0.2.0", ota="updated")) > before, 60)
            assert not sc.fleet.crashed()
        finally:
            await sc.stop()


@pytest.fixture
def micropython():
    from tools import mpbuild

    if mpbuild.esp32_model() is None:
        pytest.skip("no ESP32-model MicroPython: %s" % mpbuild.skip_reason())
    return "micropython"


async def test_a_bundle_that_crashes_at_boot_rolls_back_by_itself(mosquitto_broker, micropython,
                                                                 tmp_path):
    args = make_bundle(tmp_path / "www", "0.3.0", {"firmware/shell.py": crash_at_boot})
    async with BundleServer(tmp_path / "www") as server:
        sc = await scenario(mosquitto_broker, micropython, count=1)
        try:
            device = sc.fleet.ids()[0]
            sim = sc.fleet[device]
            sim.reset_on_crash = True  # board/main.py: a crash resets the board
            await send_update(sc, server, args, [device])
            await sc.operator.until(lambda: births(sc, device, ota="rolled-back"), 120)
            birth = births(sc, device, ota="rolled-back")[0]
            assert (birth["fw"], birth["ota_ver"], birth["ota_why"]) == (
                FACTORY, "0.3.0", ota.WHY_CRASH)
            # It really ran the new code: each trial boot crashed, then the factory came back.
            assert len(sim.boot_crashes) == ota.TRIAL_BOOTS, sim.output[-20:]
            assert all("crashes at boot" in c for c in sim.boot_crashes)
            assert not births(sc, device, fw="0.3.0")
        finally:
            await sc.stop()


async def test_a_bundle_that_cannot_reach_the_broker_rolls_back_by_itself(
        mosquitto_broker, micropython, tmp_path):
    args = make_bundle(tmp_path / "www", "0.4.0", {"firmware/shell.py": wrong_broker_port})
    async with BundleServer(tmp_path / "www") as server:
        sc = await scenario(mosquitto_broker, micropython, count=1,
                            config_overrides={"ota_trial_s": 10})
        try:
            device = sc.fleet.ids()[0]
            await send_update(sc, server, args, [device])
            await sc.operator.until(lambda: births(sc, device, ota="rolled-back"), 120)
            birth = births(sc, device, ota="rolled-back")[0]
            assert (birth["fw"], birth["ota_ver"], birth["ota_why"], birth["rebooted"]) == (
                FACTORY, "0.4.0", ota.WHY_NO_BROKER, "rollback")
            assert not births(sc, device, fw="0.4.0")  # it never got through
        finally:
            await sc.stop()


async def test_a_tampered_file_is_refused_before_the_switch(mosquitto_broker, micropython,
                                                           tmp_path):
    args = make_bundle(tmp_path / "www", "0.2.0")
    tamper(tmp_path / "www", "0.2.0", "/lib/firmware/mqtt.py")
    async with BundleServer(tmp_path / "www") as server:
        sc = await scenario(mosquitto_broker, micropython, count=1)
        try:
            device = sc.fleet.ids()[0]
            await send_update(sc, server, args, [device])
            await sc.operator.until(lambda: update_events(sc, device), 60)
            event = update_events(sc, device)[0]
            assert not event["ok"] and event["reason"] == "sha mismatch /lib/firmware/mqtt.py"
            assert otaboot.read_pointer(flash_of(sc, device)) == {}
            assert sc.fleet[device].boots == 1
        finally:
            await sc.stop()


async def test_power_cuts_during_download_switch_and_first_boot(mosquitto_broker, micropython,
                                                               tmp_path):
    args = make_bundle(tmp_path / "www", "0.2.0")
    async with BundleServer(tmp_path / "www") as server:
        sc = await scenario(mosquitto_broker, micropython, count=1)
        try:
            device = sc.fleet.ids()[0]
            sim = sc.fleet[device]
            flash = flash_of(sc, device)

            async def cut_and_boot():
                await sim.kill()
                before = len(births(sc, device))
                await sim.start()
                await sc.operator.until(lambda: len(births(sc, device)) > before, 60)
                return births(sc, device)[before]  # this boot's first

            # 1. During the download: the old version boots and reports.
            server.hold = asyncio.Event()
            await send_update(sc, server, args, [device])
            await sc.operator.until(lambda: any("/files/" in p for p, _ in server.requests), 30)
            await asyncio.sleep(0.5)  # the first half on flash
            birth = await cut_and_boot()
            assert birth["fw"] == FACTORY and "ota" not in birth
            assert os.path.isdir(os.path.join(flash, "fw", "stage"))  # kept for a resume
            first = [p for p, _ in server.requests if "/files/" in p][0]
            server.hold.set()
            server.hold = None
            # ... and the same update again resumes the half-downloaded file.
            await send_update(sc, server, args, [device])
            await sc.operator.until(lambda: births(sc, device, fw="0.2.0"), 90)
            assert [s for p, s in server.requests if p == first][-1] > 0
            # 2. During the switch: the folder moved, the pointer not yet written.
            await sc.operator.until(lambda: not otaboot.read_pointer(flash).get("trial"), 20)
            await sim.kill()
            fw = os.path.join(flash, "fw")
            os.rename(os.path.join(fw, "0.2.0"), os.path.join(fw, "stage"))
            os.remove(os.path.join(fw, "ota.json"))
            birth = await cut_and_boot()
            assert birth["fw"] == FACTORY  # nothing names the new folder yet
            # ... the pointer's temp file written whole, not yet renamed over the old one
            # (FAT drops the old file first): the new pointer is taken.
            os.rename(os.path.join(fw, "stage"), os.path.join(fw, "0.2.0"))
            with open(os.path.join(fw, "ota.json.tmp"), "w") as f:
                json.dump(ota.switched({}, "0.2.0"), f)
            # 3. During the first boot of the new version: killed before its birth.
            await sim.kill()
            await sim.start()
            await sc.operator.until(lambda: otaboot.read_pointer(flash).get("tries") == 1, 20)
            birth = await cut_and_boot()  # killed once the boot step has counted it
            assert birth["fw"] == "0.2.0" and birth["ota"] == "trial"
            await sc.operator.until(lambda: not otaboot.read_pointer(flash).get("trial"), 20)
            assert otaboot.read_pointer(flash)["last"] == {"ota": ota.UPDATED, "ver": "0.2.0"}
        finally:
            await sc.stop()
