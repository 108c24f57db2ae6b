"""The periodic test in the firmware shell (firmware/shell.py) with the fakes of
test_shell_receiver: the relay on before the tone and off after, what the board reads
reported, a sink without a check of its own failing, and a broadcast cutting the tone short
(the sink stopped before the play opens it; the cut test's result never reported)."""

import asyncio

import test_shell_receiver
from test_shell_receiver import (
    TOPIC,
    FakeSink,
    Head,
    make_receiver,
    play_args,
    put_in_cache,
    started,
    stop,
    until,
    wall_ms,
)

from firmware.platform import SinkError
from protocol import messages as M


class ToneSink(FakeSink):
    """A sink whose self-test takes the tone's time (or fails with ``error``)."""

    error = None

    async def self_test(self, level_dbfs, ms):
        self.log.append(("selftest", level_dbfs, ms))
        if self.error:
            raise SinkError(self.error)
        await asyncio.sleep(ms / 1000)
        self.log.append(("selftest-done",))


def tone_receiver(tmp_path, monkeypatch):
    """A receiver whose board has a ToneSink (the player takes the board's sink when made)."""
    monkeypatch.setattr(test_shell_receiver, "FakeSink", ToneSink)
    return make_receiver(tmp_path)


def selftests(rx):
    return [e for e in rx.mqtt.sent("evt") if e["k"] == M.EV_SELFTEST]


async def test_the_relay_is_on_for_the_tone_and_the_readings_are_reported(tmp_path, monkeypatch):
    rx = tone_receiver(tmp_path, monkeypatch)
    task = await started(rx)
    rx._on_message(TOPIC + "cmd", Head().cmd(M.SELFTEST, {"run": "r1", "ms": 100}), False)
    await until(lambda: selftests(rx))
    (ev,) = selftests(rx)
    assert ev["ok"] is True and ev["run"] == "r1" and ev["fault"] is False
    assert ev["relay"] is None  # the fake board cannot read its relay back: not a failure
    assert ev["flash"] > 0 and ev["synced"] is True
    assert rx.sink.log == [("selftest", -30, 100), ("selftest-done",)]
    assert rx.platform.amp == [True, False]
    await stop(rx, task)


async def test_a_sink_without_a_self_test_fails_it_with_its_name(tmp_path):
    rx = make_receiver(tmp_path)  # FakeSink: no self_test of its own
    task = await started(rx)
    rx._on_message(TOPIC + "cmd", Head().cmd(M.SELFTEST, {"run": "r1"}), False)
    await until(lambda: selftests(rx))
    (ev,) = selftests(rx)
    assert ev["ok"] is False and ev["reason"] == "sink" and ev["detail"] == "fake: no self-test"
    await until(lambda: rx.platform.amp == [True, False])
    await stop(rx, task)


async def test_an_emergency_cuts_the_tone_short_and_plays_at_once(tmp_path, monkeypatch):
    put_in_cache(tmp_path)
    rx = tone_receiver(tmp_path, monkeypatch)
    task = await started(rx)
    head = Head()
    rx._on_message(TOPIC + "cmd", head.cmd(M.SELFTEST, {"run": "r1", "ms": 3000}), False)
    await until(lambda: ("selftest", -30, 3000) in rx.sink.log)
    rx._on_message(TOPIC + "cmd", head.cmd(M.PLAY, play_args(wall_ms(), prio=3)), False)
    await until(lambda: any(e["k"] == M.EV_ENDED for e in rx.mqtt.sent("evt")))
    (ev,) = selftests(rx)
    assert ev["ok"] is False and ev["reason"] == "interrupted"
    log = rx.sink.log
    opened = [i for i, entry in enumerate(log) if entry[0] == "open"]
    assert opened and log.index(("stop",)) < opened[0]  # the tone stopped, then the play
    await asyncio.sleep(0.1)
    assert ("selftest-done",) not in rx.sink.log and len(selftests(rx)) == 1
    await stop(rx, task)
