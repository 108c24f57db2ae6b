"""The shell's side of a key rotation (firmware/shell.py, firmware/rotation.py), with the
fakes of tests/test_shell_receiver.py: the offer lands on flash beside config.json and the
receiver reconnects with the new account, sealing with the new key; a refusal sends it back to
the other set; the confirmation writes config.json; a reboot at each step comes up with a set
that the head-end accepts."""

import json
import os

from firmware import config as configuration
from firmware import rotation
from firmware.shell import Receiver
from protocol import messages as M
from protocol.rekey import seal_box
from tests.test_shell_receiver import (
    DEV,
    KEY,
    KEY_HEX,
    SITE,
    TOPIC,
    FakeMQTT,
    FakePlatform,
    started,
    stop,
    until,
    wall_ms,
)

NEW = bytes(range(32))
RID = "0123456789abcdef"


def write_config(tmp_path):
    with open(os.path.join(str(tmp_path), "config.json"), "w") as f:
        json.dump({"device": DEV, "site": SITE, "key": KEY_HEX, "amp_settle_ms": 30,
                   "heartbeat_s": 3600,
                   "broker": {"host": "127.0.0.1", "user": DEV, "password": "pw-old"}}, f)


def boot(tmp_path):
    return Receiver(configuration.load(str(tmp_path)), FakePlatform(str(tmp_path)),
                    mqtt_factory=FakeMQTT)


def command(key, kind, args, ctr):
    return M.sign_command(key, DEV, kind, args, ctr, wall_ms() + 60000, "c%d" % ctr)


def last_birth_opens_with(rx, key):
    payload = [p for t, p, _, _ in rx.mqtt.published if t == TOPIC + "status"][-1]
    return M.open_report(key, "status", payload)["k"] == "birth"


async def test_offer_reconnect_confirm_and_reboots(tmp_path):
    write_config(tmp_path)
    rx = boot(tmp_path)
    task = await started(rx)
    offer = command(KEY, M.REKEY, {"rid": RID, "user": DEV + ".b",
                                   "box": seal_box(KEY, RID, NEW, "pw-new")}, wall_ms())
    rx._on_message(TOPIC + "cmd", memoryview(offer), False)
    await until(lambda: len(rx.mqtt.wills) == 2)  # reconnected
    assert rotation.load_pending(str(tmp_path))["password"] == "pw-new"
    assert (rx.mqtt.user, rx.mqtt.password) == (DEV + ".b", "pw-new")
    assert last_birth_opens_with(rx, NEW)  # reports under the new key now
    # a reboot here (power cut before the confirmation): the new account first...
    rx2 = boot(tmp_path)
    assert rx2.credentials.in_use() == (NEW.hex(), DEV + ".b", "pw-new")
    # ...and the old one when the broker refuses it
    assert rx2._credentials_refused("bad_credentials") is True
    assert (rx2.mqtt.user, rx2.mqtt.password) == (DEV, "pw-old")
    # the confirmation (signed with the new key) makes it the only set
    confirm = command(NEW, M.REKEY, {"rid": RID}, wall_ms() + 1)
    rx._on_message(TOPIC + "cmd", memoryview(confirm), False)
    await until(lambda: rotation.load_pending(str(tmp_path)) is None)
    cfg = configuration.load(str(tmp_path))
    assert (cfg["key"], cfg["broker"]["user"], cfg["broker"]["password"]) \
        == (NEW.hex(), DEV + ".b", "pw-new")
    with open(os.path.join(str(tmp_path), configuration.GOOD_CONFIG_FILE)) as f:
        assert json.load(f)["key"] == NEW.hex()  # the fallback copy too
    # commands under the old key are refused now
    before = rx.core.counters["rejected"]
    rx._on_message(TOPIC + "cmd", memoryview(command(KEY, M.IDENTIFY, {"secs": 1},
                                                     wall_ms() + 2)), False)
    assert rx.core.counters["rejected"] == before + 1
    await stop(rx, task)
    rx3 = boot(tmp_path)
    assert rx3.credentials.in_use() == (NEW.hex(), DEV + ".b", "pw-new")
    assert rx3._credentials_refused("bad_credentials") is False  # nothing to go back to


async def test_without_a_rotation_a_refusal_changes_nothing(tmp_path):
    write_config(tmp_path)
    rx = boot(tmp_path)
    assert rx._credentials_refused("bad_credentials") is False
    assert rx.credentials.in_use() == (KEY_HEX, DEV, "pw-old")
