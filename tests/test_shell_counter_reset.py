"""The shell's part of ``reset_floor`` (firmware/guard.py) on CPython: a nonce from the board's
RNG in every birth of a boot until it is used, a new one each boot, and a lowered floor that is
in every copy of the state file before the receiver says it took the reset. The board and the
MQTT client are the fakes of tests/test_shell_receiver.py; flash is a real temp directory."""

import json
import re

from test_recovery import boot, crash
from test_shell_receiver import DEV, KEY, TOPIC, FakePlatform, started, stop, until, wall_ms

from protocol import messages as M

STUCK_YEARS = 10


def stuck_flash(directory, floor):
    for name in ("state.json", "state.json.bak"):  # both copies: no older one says less
        (directory / name).write_text(json.dumps({"boot": 5, "core": {"ctr": floor}}))


def floors(directory):
    out = []
    for name in ("state.json", "state.json.tmp", "state.json.bak"):
        path = directory / name
        if path.exists():
            out.append(json.loads(path.read_text())["core"]["ctr"])
    return out


def births(rx):
    return [b for b in rx.mqtt.sent("status") if b["k"] == "birth"]


def reset(nonce, ctr):
    return M.sign_command(KEY, DEV, M.RESET_FLOOR, {"nonce": nonce}, ctr, wall_ms() + 60000,
                          "rst-%d" % ctr)


def acks(rx):
    return [e for e in rx.mqtt.sent("evt") if e["k"] == "ack"]


async def test_a_reset_for_the_births_nonce_lowers_the_floor_in_every_copy_first(tmp_path):
    stuck = wall_ms() + STUCK_YEARS * 365 * 86400000
    stuck_flash(tmp_path, stuck)
    board = FakePlatform(str(tmp_path))
    rx = boot(board)
    task = await started(rx)
    nonce = births(rx)[0]["nonce"]
    assert re.fullmatch("[0-9a-f]{64}", nonce) and nonce == rx.core.reset_nonce
    # When the ack reaches the outbox (flash), the floor must already be in every copy: a
    # power cut between the two must not bring the old floor back with an "ok" on its way.
    seen = []
    append = rx.outbox.append
    rx.outbox.append = lambda event: (seen.append((event, floors(tmp_path))), append(event))
    ctr = wall_ms()
    rx._on_message(TOPIC + "cmd", reset(nonce, ctr), False)
    await until(lambda: any(a.get("cmd") == "rst-%d" % ctr for a in acks(rx)))
    ack, at_ack = [(e, f) for e, f in seen if e.get("cmd") == "rst-%d" % ctr][0]
    assert ack["ok"] is True and at_ack == [ctr, ctr]
    assert rx.core.reset_nonce is None
    # A reconnect in the same boot: the birth carries no nonce any more.
    rx.mqtt.published.clear()
    await rx._on_connect()
    assert "nonce" not in births(rx)[-1]
    await crash(rx, task)  # a power cut: nothing written on the way out

    rx = boot(FakePlatform(str(tmp_path)))
    task = await started(rx)
    assert rx.core.export_state()["ctr"] == ctr
    again = births(rx)[0]["nonce"]
    assert re.fullmatch("[0-9a-f]{64}", again) and again != nonce
    rx._on_message(TOPIC + "cmd", reset(nonce, ctr + 1), False)
    await until(lambda: any(a.get("cmd") == "rst-%d" % (ctr + 1) for a in acks(rx)))
    refused = [a for a in acks(rx) if a.get("cmd") == "rst-%d" % (ctr + 1)][0]
    assert refused["ok"] is False and refused["reason"] == "bad-nonce"
    assert rx.core.export_state()["ctr"] == ctr and rx.core.reset_nonce == again
    await stop(rx, task)
