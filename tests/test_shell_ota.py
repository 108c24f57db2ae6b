"""Firmware updates in the receiver's shell (firmware/updater.py, firmware/shell.py) on CPython:
a signed ``update`` downloads a bundle from a real HTTP server into the stage, checks the
manifest against the signed hash and every file against the manifest, switches the pointer and
reboots; the next boot (firmware/otaboot.py) runs the new version on trial and the birth
acknowledged confirms it; without the broker it goes back by itself. The board and the MQTT
client are the fakes of tests/test_shell_receiver.py; flash is a real temp directory.
Code that really changes between versions (a bundle that crashes) is tests/integration/."""

import asyncio

from ota_bundles import BundleServer, make_bundle, staged, tamper
from test_shell_receiver import (
    DEV,
    KEY_HEX,
    SITE,
    TOPIC,
    FakeMQTT,
    FakePlatform,
    Head,
    play_args,
    put_in_cache,
    started,
    stop,
    until,
)

from firmware import ota, otaboot, shell
from firmware.shell import Receiver
from protocol import messages as M


class Board(FakePlatform):
    """The fake board with a network for HTTP and a flash that may say it is nearly full."""

    free = None

    async def open_connection(self, host, port, ssl=None, server_hostname=None):
        return await asyncio.open_connection(host, port)

    def storage_space(self):
        return None if self.free is None else (self.free, 4096)


def boot(tmp_path, board=None, **overrides):
    """A boot as board/boot.py does it: the pointer step first, then the firmware."""
    otaboot.choose(str(tmp_path / "flash"))
    board = board or Board(str(tmp_path / "flash"))
    cfg = {"device": DEV, "site": SITE, "key": KEY_HEX, "broker": {"host": "127.0.0.1"},
           "amp_settle_ms": 30, "heartbeat_s": 3600}
    cfg.update(overrides)
    return Receiver(cfg, board, mqtt_factory=FakeMQTT)


def events(rx, kind):
    return [e for e in rx.mqtt.sent("evt") if e["k"] == kind]


def births(rx):
    return [b for b in rx.mqtt.sent("status") if b["k"] == M.BIRTH]


async def send_update(rx, head, args):
    rx._on_message(TOPIC + "cmd", head.cmd(M.UPDATE, args), False)
    await until(lambda: not rx.updater.busy and rx.updater.state is not None, 20)


async def test_an_update_switches_on_trial_and_the_acknowledged_birth_confirms_it(tmp_path):
    args = make_bundle(tmp_path / "www", "0.2.0")
    async with BundleServer(tmp_path / "www") as server:
        args["url"] = server.url("0.2.0")
        rx = boot(tmp_path)
        task = await started(rx)
        assert births(rx)[0]["fw"] == "0.1.0" and "ota" not in births(rx)[0]
        head = Head()
        await send_update(rx, head, args)
        assert rx.updater.state == "switched", rx.updater.reason
        # Another update while this one waits for its reboot is refused.
        assert rx.updater.start(dict(args, ver="0.2.1"), "0.1.0") == "updating"
        await until(lambda: rx.platform.rebooted)
        await stop(rx, task)
    assert [e["ok"] for e in events(rx, M.EV_UPDATE) if e["ver"] == "0.2.0"] == [True]
    assert events(rx, M.EV_ACK)[0]["ok"]
    flash = str(tmp_path / "flash")
    pointer = otaboot.read_pointer(flash)
    assert pointer["cur"] == "0.2.0" and pointer["prev"] is None and pointer["trial"]
    assert "fw/0.2.0/files/lib/firmware/shell.py" in staged(flash)
    assert not any(p.startswith("fw/stage") for p in staged(flash))
    assert rx.boot_info["rebooted"] is None and shell.REBOOT_UPDATE == "update"
    # The next boot runs 0.2.0 on trial; its birth, acknowledged, confirms it.
    rx = boot(tmp_path)
    task = await started(rx)
    assert births(rx)[0]["fw"] == "0.2.0"
    assert births(rx)[0]["ota"] == "trial" and births(rx)[0]["rebooted"] == "update"
    await until(lambda: not otaboot.read_pointer(flash).get("trial"))
    # ... and the birth goes again, saying so (same session), for the head-end's rollout.
    await until(lambda: len(births(rx)) == 2)
    assert (births(rx)[1]["ota"], births(rx)[1]["conn"]) == ("updated", births(rx)[0]["conn"])
    await stop(rx, task)
    rx = boot(tmp_path)
    task = await started(rx)
    birth = births(rx)[0]
    assert (birth["fw"], birth["ota"], birth["ota_ver"]) == ("0.2.0", "updated", "0.2.0")
    await stop(rx, task)


async def test_a_tampered_file_is_refused_before_the_switch(tmp_path):
    args = make_bundle(tmp_path / "www", "0.2.0")
    tamper(tmp_path / "www", "0.2.0", "/lib/firmware/core.py")
    async with BundleServer(tmp_path / "www") as server:
        args["url"] = server.url("0.2.0")
        rx = boot(tmp_path)
        task = await started(rx)
        await send_update(rx, Head(), args)
        await stop(rx, task)
    event = events(rx, M.EV_UPDATE)[-1]
    assert not event["ok"] and event["reason"] == "sha mismatch /lib/firmware/core.py"
    flash = str(tmp_path / "flash")
    assert otaboot.read_pointer(flash) == {} and not rx.platform.rebooted
    assert "fw/stage/files/lib/firmware/core.py" not in staged(flash)  # the bad file is gone
    assert "fw/stage/files/lib/firmware/cache.py" in staged(flash)  # the good ones stay


async def test_a_manifest_that_is_not_the_signed_one_is_refused(tmp_path):
    args = make_bundle(tmp_path / "www", "0.2.0")
    args["man"] = "00" * 32
    async with BundleServer(tmp_path / "www") as server:
        args["url"] = server.url("0.2.0")
        rx = boot(tmp_path)
        task = await started(rx)
        await send_update(rx, Head(), args)
        await stop(rx, task)
    assert events(rx, M.EV_UPDATE)[-1]["reason"] == "manifest sha mismatch"
    assert [p for p, _ in server.requests] == ["/fw/0.2.0/manifest.json"]  # no file fetched


async def test_a_cut_download_resumes_with_range_and_a_full_flash_is_refused_first(tmp_path):
    args = make_bundle(tmp_path / "www", "0.2.0")
    async with BundleServer(tmp_path / "www") as server:
        args["url"] = server.url("0.2.0")
        board = Board(str(tmp_path / "flash"))
        board.free = args["total"]  # the files fit, the reserve does not
        rx = boot(tmp_path, board)
        task = await started(rx)
        head = Head()
        await send_update(rx, head, args)
        assert events(rx, M.EV_UPDATE)[-1]["reason"] == "no-space"
        board.free = None
        server.cut_after["/fw/0.2.0/files/lib/firmware/core.py"] = 5000
        rx.updater.state = None
        await send_update(rx, head, args)
        assert rx.updater.state == "switched", rx.updater.reason
        await stop(rx, task)
    assert ("/fw/0.2.0/files/lib/firmware/core.py", 5000) in server.requests
    # The manifest was already staged by the refused attempt: not fetched whole again.
    assert server.requests.count(("/fw/0.2.0/manifest.json", 0)) == 1


async def test_refused_while_playing_and_for_the_version_that_runs(tmp_path):
    put_in_cache(tmp_path / "flash")
    rx = boot(tmp_path)
    task = await started(rx)
    head = Head()
    rx._on_message(TOPIC + "cmd", head.cmd(M.PLAY, play_args(None, prio=3)), False)
    await until(lambda: rx.playing_item is not None)
    args = {"ver": "0.2.0", "man": "00" * 32, "msize": 10, "url": "http://127.0.0.1:9/x",
            "total": 10}
    rx._on_message(TOPIC + "cmd", head.cmd(M.UPDATE, args), False)
    assert not rx.updater.busy
    await until(lambda: [e for e in events(rx, M.EV_ACK) if e["cmd"] == "c2"])
    assert [e for e in events(rx, M.EV_ACK) if e["cmd"] == "c2"][0]["reason"] == "busy"
    await until(lambda: rx.playing_item is None)
    rx._on_message(TOPIC + "cmd", head.cmd(M.UPDATE, dict(args, ver="0.1.0")), False)
    await until(lambda: events(rx, M.EV_UPDATE))
    await stop(rx, task)
    assert not rx.updater.busy and not rx.platform.rebooted
    event = events(rx, M.EV_UPDATE)[-1]
    assert (event["ver"], event["ok"], event["reason"]) == ("0.1.0", False, "same-version")


async def test_a_trial_version_without_the_broker_rolls_back_by_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(shell, "_RECOVERY_POLL_MS", 50)
    flash = str(tmp_path / "flash")
    otaboot.write_pointer(flash, ota.switched({"cur": "0.1.5"}, "0.2.0"))
    for ver in ("0.1.5", "0.2.0"):
        (tmp_path / "flash" / "fw" / ver / "files" / "lib").mkdir(parents=True)
    rx = boot(tmp_path, ota_trial_s=1)
    assert rx.firmware_version == "0.2.0"
    task = asyncio.ensure_future(rx.run())  # the broker never answers
    await until(lambda: rx.platform.rebooted, 10)
    await rx.shutdown()
    await asyncio.wait_for(task, 2)
    pointer = otaboot.read_pointer(flash)
    assert pointer["cur"] == "0.1.5" and pointer["last"]["why"] == "no-broker"
    rx = boot(tmp_path)
    task = await started(rx)
    birth = births(rx)[0]
    assert (birth["fw"], birth["ota"], birth["ota_ver"], birth["ota_why"]) == (
        "0.1.5", "rolled-back", "0.2.0", "no-broker")
    assert birth["rebooted"] == "rollback"
    await stop(rx, task)
