"""The amplifier held in standby (firmware/config.py ``amp_hold``), on the simulator's board
model (simulator/host.py: a relay that needs ``relay_settle_ms`` and a mute line that needs
``unmute_ms`` before sound passes): an emergency's first sample is heard sooner than the
relay's settle, and never before the amplifier passes sound; by default, and on a board
without a mute line, it waits the settle as before."""

import time

from firmware.shell import Receiver
from protocol import messages as M
from simulator.host import HostPlatform
from tests.test_shell_receiver import (
    DEV,
    KEY_HEX,
    SITE,
    FakeMQTT,
    Head,
    play_args,
    put_in_cache,
    started,
    stop,
    until,
)

SETTLE_MS = 300
UNMUTE_MS = 20


async def first_sample_after_command(tmp_path, name, **config):
    """(seconds from the command to the first sample, the board) for one emergency play."""
    put_in_cache(tmp_path / name)
    board = HostPlatform(DEV, storage_dir=str(tmp_path / name), codecs=("adpcm",),
                         ticks_near_wrap=False)
    board.relay_settle_ms, board.unmute_ms = SETTLE_MS, UNMUTE_MS
    cfg = {"device": DEV, "site": SITE, "key": KEY_HEX, "broker": {"host": "127.0.0.1"},
           "heartbeat_s": 3600, "sink": "sim", "amp_settle_ms": SETTLE_MS,
           "amp_unmute_ms": UNMUTE_MS}
    cfg.update(config)
    rx = Receiver(cfg, board, mqtt_factory=FakeMQTT)
    task = await started(rx)
    rx.mqtt.answer_time = False
    await until(lambda: time.time() - max([t for t, _on in board.amp_changes] or [0]) > 0.4)
    args = play_args(None, "e1", prio=M.PRIO_EMERGENCY)
    del args["at"]
    sent = time.time()
    rx._on_message("loaxa/v1/%s/dev/%s/cmd" % (SITE, DEV), Head().cmd(M.PLAY, args), False)
    await until(lambda: board.sink.playbacks and board.sink.playbacks[0].started_true)
    first = board.sink.playbacks[0].started_true
    # What a listener hears: the amplifier passed sound when the first sample went out.
    heard = board.audible_from(first)
    assert heard is not None and heard - first < 0.002, (first, heard)
    await stop(rx, task)
    return first - sent, board


async def test_standby_on_a_board_with_a_mute_line_skips_the_relay_settle(tmp_path):
    took, board = await first_sample_after_command(tmp_path, "standby", amp_hold="standby",
                                                   pins={"amp_mute": 21})
    assert took < (SETTLE_MS - 100) / 1000.0, took
    assert board.amp_changes[0][1] is True and board.amp_changes[0][0] < time.time() - took
    assert [m for _t, m in board.mute_changes][:1] == [False]  # released for the play


async def test_by_default_and_without_a_mute_line_the_first_sample_waits_the_settle(tmp_path):
    for name, config in (("default", {"pins": {"amp_mute": 21}}),
                         ("no-line", {"amp_hold": "standby"})):
        took, board = await first_sample_after_command(tmp_path, name, **config)
        assert took >= SETTLE_MS / 1000.0 - 0.002, (name, took)
        if name == "no-line":
            assert board.mute_changes == []  # nothing drives a line the board lacks
