"""Field recovery on CPython (firmware/recovery.py, firmware/config.py, firmware/shell.py): a
corrupt config falls back to the last good one, a crash loop brings up safe mode, a receiver
offline too long reboots itself, and the birth says how the boot began (reset cause,
brown-outs) and what it recovered from. The board and the MQTT client are the fakes of
tests/test_shell_receiver.py; flash is a real temp directory."""

import asyncio
import importlib
import json
import os
import re
import sys
import types
from pathlib import Path

import pytest
from test_shell_receiver import (
    DEV,
    KEY,
    KEY_HEX,
    SITE,
    TOPIC,
    FakeMQTT,
    FakePlatform,
    Head,
    play_args,
    started,
    stop,
    until,
)

from firmware import config, shell
from firmware.recovery import CRASH_LOOP_BOOTS
from firmware.shell import Receiver
from protocol import messages as M
from simulator.host import HostPlatform

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"device": DEV, "site": SITE, "key": KEY_HEX, "broker": {"host": "127.0.0.1"},
          "amp_settle_ms": 30, "heartbeat_s": 3600}


class Board(FakePlatform):
    """A board whose reset cause the test sets (as machine.reset_cause() would read)."""

    def __init__(self, storage_dir, cause="power-on"):
        super().__init__(storage_dir)
        self.cause = cause

    def reset_cause(self):
        return self.cause


def boot(board, **overrides):
    return Receiver(dict(CONFIG, **overrides), board, mqtt_factory=FakeMQTT)


def birth_of(rx):
    return [M.open_report(KEY, "status", p) for t, p, _, _ in rx.mqtt.published
            if t == TOPIC + "status"][0]


def acks(rx):
    return [e for e in rx.mqtt.sent("evt") if e["k"] == "ack"]


# -- config.json damaged in the field ---------------------------------------------------------

def write_config(directory, text):
    (directory / config.CONFIG_FILE).write_text(text)


def test_a_corrupt_config_falls_back_to_the_last_good_one(tmp_path):
    write_config(tmp_path, json.dumps(CONFIG))
    assert config.load(str(tmp_path))["fallback"] is None
    assert config.remember_good(str(tmp_path))
    assert not config.remember_good(str(tmp_path))  # unchanged: no flash write
    write_config(tmp_path, json.dumps(CONFIG)[:40])  # torn
    cfg = config.load(str(tmp_path))
    assert cfg["device"] == DEV and cfg["fallback"]["file"] == "config.good.json"
    assert "not valid JSON" in cfg["fallback"]["error"]
    assert not config.remember_good(str(tmp_path))  # a bad config.json is never kept as good
    write_config(tmp_path, json.dumps(dict(CONFIG, key="00")))  # parses, does not validate
    assert "key" in config.load(str(tmp_path))["fallback"]["error"]
    os.remove(tmp_path / config.CONFIG_FILE)  # lost altogether
    assert config.load(str(tmp_path))["fallback"]["error"]
    os.remove(tmp_path / config.GOOD_CONFIG_FILE)
    write_config(tmp_path, "[1, 2]")
    with pytest.raises(config.ConfigError, match="JSON object"):
        config.load(str(tmp_path))  # no good copy: the error, as before


async def test_the_birth_names_the_fallback_and_a_good_config_is_kept_once_connected(tmp_path):
    write_config(tmp_path, json.dumps(CONFIG))
    rx = boot(FakePlatform(str(tmp_path)), **config.load(str(tmp_path)))
    task = await started(rx)
    assert "config" not in birth_of(rx)
    assert (tmp_path / config.GOOD_CONFIG_FILE).read_text() == json.dumps(CONFIG)
    await stop(rx, task)
    write_config(tmp_path, "{\x00")
    rx = boot(FakePlatform(str(tmp_path)), **config.load(str(tmp_path)))
    task = await started(rx)
    birth = birth_of(rx)
    assert birth["config"] == "config.good.json" and "JSON" in birth["config_error"]
    assert (tmp_path / config.GOOD_CONFIG_FILE).read_text() == json.dumps(CONFIG)
    await stop(rx, task)


# -- crash loop and safe mode -----------------------------------------------------------------

async def test_three_crashed_boots_in_a_row_bring_up_safe_mode(tmp_path):
    board = Board(str(tmp_path))
    rx = boot(board)
    task = await started(rx)
    head = Head()
    rx._on_message(TOPIC + "cmd", head.cmd(M.PLAY, play_args(rx.now() + 3600000)), False)
    await stop(rx, task)
    board.cause = "watchdog"
    for crashed in range(CRASH_LOOP_BOOTS):  # each boots, then dies without a shutdown
        rx = boot(board)
        assert rx.safe_mode is None and rx.boot_info["crashes"] == (crashed or None)
        assert len(rx.core.schedule) == 1
    rx = boot(board)
    assert rx.safe_mode == "crash-loop" and len(rx.core.schedule) == 0
    task = await started(rx)
    birth = birth_of(rx)
    assert (birth["safe"], birth["crashes"], birth["reset"]) == ("crash-loop", 3, "watchdog")
    assert not rx.fetching and rx.playing_item is None
    rx._on_message(TOPIC + "cmd", head.cmd(M.PLAY, play_args(rx.now() + 1000, "b2")), False)
    rx._on_message(TOPIC + "cmd", head.cmd(M.VOLUME, {"vol": 33}), False)
    wanted = ("c%d" % (head.ctr - 1), "c%d" % head.ctr)
    await until(lambda: len([a for a in acks(rx) if a["cmd"] in wanted]) == 2)
    assert [(a["ok"], a.get("reason")) for a in acks(rx) if a["cmd"] in wanted] == [
        (False, "safe-mode"), (True, None)]
    assert rx.core.volume == 33 and len(rx.core.schedule) == 0
    assert not rx.fetching and board.sink.log == [] and board.amp == []  # nothing played
    rx._on_message(TOPIC + "cmd", head.cmd(M.REBOOT, {}), False)
    await until(lambda: board.rebooted)
    await stop(rx, task)
    board.cause = "hard"  # machine.reset()
    rx = boot(board)
    assert rx.safe_mode is None and rx.boot_info["rebooted"] == "command"
    assert rx.boot_info["crashes"] is None


def test_a_power_cycle_ends_a_crash_loop(tmp_path):
    board = Board(str(tmp_path), "hard")
    for _ in range(CRASH_LOOP_BOOTS + 1):
        rx = boot(board)
    assert rx.safe_mode == "crash-loop"
    board.cause = "power-on"  # the technician switched it off and on: not a crash
    assert boot(board).safe_mode is None


async def test_a_boot_that_runs_long_enough_is_stable(tmp_path, monkeypatch):
    monkeypatch.setattr(shell, "STABLE_MS", 100)
    monkeypatch.setattr(shell, "_RECOVERY_POLL_MS", 10)
    board = Board(str(tmp_path), "watchdog")
    for _ in range(CRASH_LOOP_BOOTS - 1):
        boot(board)
    rx = boot(board)
    assert rx.boot_info["crashes"] == CRASH_LOOP_BOOTS - 1
    task = await started(rx)
    await until(lambda: read_state(tmp_path).get("unstable") == 0)
    await crash(rx, task)  # it dies now, but it had been stable: the count starts again
    assert boot(board).boot_info["crashes"] is None


def read_state(directory):
    with open(str(directory / "state.json")) as f:
        return json.load(f)


async def crash(rx, task):
    """The firmware dies where it stands: its tasks end, nothing is written on the way out."""
    rx._running = False
    for t in rx._tasks + rx._background + [task]:
        t.cancel()
    await asyncio.gather(task, *rx._tasks, return_exceptions=True)
    rx.outbox.close()


async def test_a_brown_out_is_counted_and_reported(tmp_path):
    board = Board(str(tmp_path), "brown-out")
    boot(board)
    rx = boot(board)
    assert rx.boot_info["brownouts"] == 2
    task = await started(rx)
    birth = birth_of(rx)
    assert birth["reset"] == "brown-out" and birth["brownouts"] == 2
    await stop(rx, task)
    board.cause = "nonsense"
    assert boot(board).boot_info == {"reset": "unknown", "brownouts": 2, "crashes": None,
                                     "safe": None, "config": None, "config_error": None,
                                     "state": None, "rebooted": None}


# -- offline too long: reboot ---------------------------------------------------------------

async def test_a_receiver_offline_for_too_long_reboots_itself_after_persisting(
        tmp_path, monkeypatch):
    monkeypatch.setattr(shell, "_MINUTE_MS", 200)
    monkeypatch.setattr(shell, "_RECOVERY_POLL_MS", 10)
    board = Board(str(tmp_path))
    rx = boot(board, offline_reboot_min=1)
    task = asyncio.ensure_future(rx.run())  # the broker never answers
    rx.player.item = object()  # something plays: the reboot waits for it
    await asyncio.sleep(0.4)
    assert not board.rebooted
    rx.player.item = None
    await until(lambda: board.rebooted, timeout=2)
    assert read_state(tmp_path)["rebooted"] == "offline"
    await stop(rx, task)
    board.cause = "hard"
    rx = boot(board)
    assert rx.boot_info["rebooted"] == "offline" and rx.boot_info["crashes"] is None
    task = await started(rx)
    assert birth_of(rx)["rebooted"] == "offline"
    await stop(rx, task)
    assert "rebooted" not in read_state(tmp_path)  # said once


async def test_offline_reboot_zero_never_reboots(tmp_path, monkeypatch):
    monkeypatch.setattr(shell, "_MINUTE_MS", 20)
    monkeypatch.setattr(shell, "_RECOVERY_POLL_MS", 10)
    board = Board(str(tmp_path))
    rx = boot(board, offline_reboot_min=0)
    task = asyncio.ensure_future(rx.run())
    await asyncio.sleep(0.3)
    assert not board.rebooted
    await stop(rx, task)
    with pytest.raises(config.ConfigError, match="offline_reboot_min"):
        boot(board, offline_reboot_min=-1)


# -- the boards: reset cause on the ESP32, settable in the simulator ---------------------------

@pytest.fixture
def esp32_module(monkeypatch):
    """firmware.hw.esp32 imported over fake ``machine``/``esp32`` modules."""
    machine = types.ModuleType("machine")
    machine.Pin = machine.ADC = machine.WDT = object
    machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET = 1, 2, 3
    machine.DEEPSLEEP_RESET, machine.SOFT_RESET = 4, 5
    machine.cause = 1
    machine.reset_cause = lambda: machine.cause
    machine.mem32 = {}
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "esp32", types.ModuleType("esp32"))
    monkeypatch.delitem(sys.modules, "firmware.hw.esp32", raising=False)
    module = importlib.import_module("firmware.hw.esp32")
    yield module, machine
    sys.modules.pop("firmware.hw.esp32", None)


def test_the_esp32_reads_a_brown_out_that_machine_reset_cause_calls_power_on(
        esp32_module, monkeypatch):
    hw, machine = esp32_module
    monkeypatch.setattr(hw.os, "uname", lambda: types.SimpleNamespace(
        machine="Generic ESP32 module with SPIRAM with ESP32"))
    machine.mem32[0x3FF48034] = (15 << 6) | 15  # PRO and APP CPU: RTCWDT_BROWN_OUT_RESET
    assert hw.read_reset_cause() == "brown-out"
    machine.mem32[0x3FF48034] = 1  # POWERON_RESET
    assert hw.read_reset_cause() == "power-on"
    for cause, name in ((2, "hard"), (3, "watchdog"), (4, "deep-sleep"), (5, "soft"), (0, "unknown")):
        machine.cause = cause
        assert hw.read_reset_cause() == name
    # An ESP32-S3 keeps that register elsewhere: it is never read there.
    monkeypatch.setattr(hw.os, "uname", lambda: types.SimpleNamespace(
        machine="ESP32S3 module with ESP32S3"))
    machine.cause = 1
    machine.mem32 = None
    assert hw.read_reset_cause() == "power-on"


def test_the_simulated_board_has_a_settable_reset_cause_and_flash(tmp_path):
    board = HostPlatform("rx-9", storage_dir=str(tmp_path))
    assert board.reset_cause() == "power-on"
    board.reboot()
    assert board.reset_cause() == "hard"  # what machine.reset() reads on the next boot
    free, block = board.storage_space()  # the real directory's statvfs
    assert free > 0 and block > 0
    board.flash_free = 123456
    assert board.storage_space() == (123456, 4096)


# -- the protocol: birth fields in code and docs ------------------------------------------------

def test_every_birth_field_is_in_the_docs_table_and_unknown_ones_are_refused():
    text = (REPO / "docs" / "protocol.md").read_text()
    section = text[text.index("## Presence"):text.index("## Heartbeat")]
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    for name in M.BIRTH_FIELDS + M.BIRTH_BOOT_FIELDS:
        assert name in documented, name
    msg = json.loads(M.birth("d1", 1, 1, "0.1.0", {}, "wifi",
                             {"reset": "watchdog", "brownouts": 0, "safe": None}))
    assert msg["reset"] == "watchdog" and msg["brownouts"] == 0 and "safe" not in msg
    with pytest.raises(ValueError):
        M.birth("d1", 1, 1, "0.1.0", {}, "wifi", {"mood": "grumpy"})

