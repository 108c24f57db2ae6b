"""The firmware shell (firmware/shell.py) on CPython with fakes at its two unit boundaries:
the board (a Platform with a recording sink and relay) and the MQTT client (records what is
published, answers time requests as a head-end would). Flash is a real temp directory.

The integration tests (tests/integration/) run the same Receiver against real brokers.
"""

import asyncio
import errno
import hashlib
import json
import os
import time

from firmware.cache import MediaCache
from firmware.platform import Platform, Sink
from firmware.shell import Receiver
from protocol import messages as M
from protocol.frames import CODEC_ADPCM, FLAG_LAST, pack_frame
from protocol.signing import HmacKey, seal

KEY_HEX = "11" * 32
KEY = bytes.fromhex(KEY_HEX)
DEV, SITE = "rx-1", "xa"
TOPIC = "loaxa/v1/xa/dev/rx-1/"
ADPCM = bytes(256) * 6  # six silent 505-sample blocks: 3030 samples, ~190 ms at 16 kHz
SHA = hashlib.sha256(ADPCM).hexdigest()


def wall_ms():
    return int(time.time() * 1000)


class FakeSink(Sink):
    codecs = ("adpcm",)
    name = "fake"

    def __init__(self):
        self.log = []
        self.bytes = 0

    def open(self, codec, rate, skip_samples=0):
        self.log.append(("open", codec, rate, skip_samples))

    async def write(self, buf):
        self.bytes += len(buf)
        await asyncio.sleep(0)

    async def drain(self):
        await asyncio.sleep(0)

    def close(self):
        self.log.append(("close",))

    def stop(self):
        self.log.append(("stop",))

    def set_volume(self, volume):
        self.log.append(("volume", volume))


class FakePlatform(Platform):
    def __init__(self, storage_dir):
        self.storage_dir = storage_dir
        self.sink = FakeSink()
        self.amp = []
        self.leds = []
        self.rebooted = False

    def ticks_ms(self):
        return int(time.monotonic() * 1000) & 0x3FFFFFFF

    def ticks_diff(self, a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d >= 0x20000000 else d

    def ticks_add(self, a, delta):
        return (a + delta) & 0x3FFFFFFF

    def rtc_ms(self):
        return wall_ms() - 5000  # the board's clock is 5 s slow until synced

    async def link_up(self):
        pass

    def link_info(self):
        return {"type": "wifi", "rssi": -61}

    def amplifier(self, on):
        self.amp.append(on)

    def led(self, pattern):
        self.leds.append(pattern)

    def supply(self):
        return {"mains": 0, "dc": 12.4}

    def mem_free(self):
        return 81234

    def random_below(self, n):
        return 0

    def reboot(self):
        self.rebooted = True


class FakeMQTT:
    """Stands in for firmware.mqtt.MQTTClient; answers time requests like the head-end."""

    def __init__(self, receiver, cfg, will):
        self.receiver = receiver
        self.will = will
        self.wills = []
        self.published = []
        self.subscriptions = {}
        self.connected = False
        self.online = asyncio.Event()
        self._up = asyncio.Event()
        self._closed = asyncio.Event()
        self.answer_time = True

    async def run(self):
        await self._up.wait()
        self.wills.append(self.will)
        await self.receiver._on_connect()
        self.connected = True
        self.online.set()
        await self._closed.wait()

    def come_up(self):
        self._up.set()

    def drop(self):
        self.connected = False
        self.online.clear()
        self._up.clear()
        self.receiver._on_disconnect("eof")
        self.wills.append("dropped")

    async def reconnect(self):
        self.wills.append(self.will)
        await self.receiver._on_connect()
        self.connected = True
        self.online.set()

    async def close(self):
        self.connected = False
        self._closed.set()

    async def subscribe(self, topic, qos=0):
        self.subscriptions[topic] = qos
        return self.connected

    async def unsubscribe(self, topic):
        self.subscriptions.pop(topic, None)
        return self.connected

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=10000):
        if not self.connected and not topic.endswith("/status"):
            return False
        self.published.append((topic, bytes(payload), qos, retain))
        if topic.endswith("/treq") and self.answer_time:
            t0 = json.loads(payload)["t0"]
            now = wall_ms()
            reply = M.time_reply(KEY, DEV, t0, now, now)
            asyncio.get_running_loop().call_soon(
                self.receiver._on_message, TOPIC + "time", memoryview(reply), False)
        return True

    async def wait_connected(self, timeout_ms=None):
        await self.online.wait()
        return True

    def sent(self, leaf):
        return [M.open_report(KEY, leaf, p) for t, p, _, _ in self.published
                if t == TOPIC + leaf]


def make_receiver(tmp_path, **overrides):
    config = {"device": DEV, "site": SITE, "key": KEY_HEX, "broker": {"host": "127.0.0.1"},
              "amp_settle_ms": 30, "heartbeat_s": 3600}
    config.update(overrides)
    return Receiver(config, FakePlatform(str(tmp_path)), mqtt_factory=FakeMQTT)


class Head:
    def __init__(self):
        self.ctr = 0

    def cmd(self, kind, args):
        self.ctr += 1
        return M.sign_command(KEY, DEV, kind, args, self.ctr, wall_ms() + 60000, "c%d" % self.ctr)


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def started(rx):
    task = asyncio.ensure_future(rx.run())
    rx.mqtt.come_up()
    await until(lambda: rx.core.synced and rx.mqtt.connected)
    return task


async def stop(rx, task):
    await rx.shutdown()
    await asyncio.wait_for(task, 2)


def put_in_cache(tmp_path):
    cache = MediaCache(str(tmp_path / "cache"), 10 ** 6)
    with open(cache.part_path(SHA), "wb") as f:
        f.write(ADPCM)
    cache.add(SHA, len(ADPCM), "adpcm")


def play_args(at, bid="b1", prio=0):
    return {"bid": bid, "item": "m1", "url": "http://127.0.0.1:9/m1", "sha": SHA,
            "size": len(ADPCM), "dur": 190, "codec": "adpcm", "rate": 16000, "at": at,
            "prio": prio}


async def test_birth_will_and_subscriptions(tmp_path):
    rx = make_receiver(tmp_path)
    task = await started(rx)
    topic, payload, qos, retain = rx.mqtt.published[0]
    birth = M.open_report(KEY, "status", payload)  # sealed with the device's key
    assert topic == TOPIC + "status" and qos == 1 and retain
    assert birth["k"] == "birth" and (birth["boot"], birth["conn"]) == (1, 1)
    assert birth["caps"]["codecs"] == ["adpcm"] and birth["caps"]["sink"] == "fake"
    assert birth["caps"]["cache_total"] == 2000000 and birth["link"] == "wifi"
    # The will of a connection names that connection; the next one is ready for a reconnect.
    assert M.open_report(KEY, "status", rx.mqtt.wills[0][1]) == {"v": 1, "k": "death", "dev": DEV, "boot": 1,
                                               "conn": 1}
    assert M.open_report(KEY, "status", rx.mqtt.will[1])["conn"] == 2
    assert rx.mqtt.subscriptions == {TOPIC + "cmd": 1, TOPIC + "time": 0}
    rx.mqtt.drop()
    await rx.mqtt.reconnect()
    births = [b for b in rx.mqtt.sent("status") if b["k"] == "birth"]
    assert [b["conn"] for b in births] == [1, 2]
    await stop(rx, task)
    rx2 = make_receiver(tmp_path)  # a reboot: same flash
    assert rx2.boot == 2


async def test_time_sync_sets_the_clock_and_forged_replies_are_counted(tmp_path):
    rx = make_receiver(tmp_path)
    assert abs(rx.now() - wall_ms()) > 4000  # the board's own clock, 5 s slow
    task = await started(rx)
    await until(lambda: rx.stats["time_samples"] >= 5)  # the connect burst
    assert abs(rx.now() - wall_ms()) < 1000
    rx._on_message(TOPIC + "time", seal(b"\x22" * 32, b'{"v":1}'), False)
    rx._on_message(TOPIC + "time", M.time_reply(KEY, DEV, 123, 1, 1), False)  # no such request
    assert rx.stats["bad_time"] == 1 and rx.stats["time_unmatched"] == 1
    await stop(rx, task)


async def test_malformed_payloads_on_every_topic_are_counted_and_dropped(tmp_path):
    rx = make_receiver(tmp_path)
    task = await started(rx)
    junk = (b"", b"\x00\xff", b"{", b"0" * 64 + b"\n{}", memoryview(b"LF\x01\x02"))
    for leaf in ("cmd", "time", "nonsense"):
        for payload in junk:
            rx._on_message(TOPIC + leaf, payload, False)
    for payload in junk:
        rx._on_message("loaxa/v1/xa/stream/s9", payload, False)
    rx._on_message("elsewhere/entirely", b"x", True)
    stats = rx.stats
    assert stats["errors"] == 0
    assert stats["rejected"] == 5 and stats["malformed"] >= 10
    assert stats["stray_frames"] == 5
    assert rx.core.current is None and len(rx.core.schedule) == 0
    await stop(rx, task)


async def test_play_at_a_time_with_relay_and_proof_of_play(tmp_path):
    put_in_cache(tmp_path)
    rx = make_receiver(tmp_path)
    task = await started(rx)
    head = Head()
    at = rx.now() + 400
    rx._on_message(TOPIC + "cmd", head.cmd(M.PLAY, play_args(at)), False)
    await until(lambda: any(e["k"] == "ended" for e in rx.mqtt.sent("evt")))
    sink, amp = rx.platform.sink, rx.platform.amp
    assert sink.log[0] == ("volume", 70) and sink.log[1][:3] == ("open", "adpcm", 16000)
    assert sink.log[-1] == ("close",) and sink.bytes == len(ADPCM)
    assert amp == [True, False]
    kinds = [e["k"] for e in rx.mqtt.sent("evt")]
    assert kinds == ["ack", "started", "ended"]
    ended = rx.mqtt.sent("evt")[-1]
    assert ended["reason"] == "finished" and ended["bid"] == "b1"
    assert len(rx.outbox) == 0
    await stop(rx, task)


async def test_late_start_seeks_whole_blocks_and_skips_the_rest(tmp_path):
    put_in_cache(tmp_path)
    rx = make_receiver(tmp_path, amp_settle_ms=0)
    task = await started(rx)
    rx._on_message(TOPIC + "cmd", Head().cmd(M.PLAY, play_args(rx.now() - 40)), False)
    await until(lambda: ("close",) in rx.platform.sink.log)
    (_, _, _, skip), = [e for e in rx.platform.sink.log if e[0] == "open"]
    skipped_samples = (len(ADPCM) - rx.platform.sink.bytes) // 256 * 505 + skip
    assert skipped_samples >= 40 * 16  # at least the 40 ms it was late, at 16 samples/ms
    assert 0 <= skip < 505
    await stop(rx, task)


async def test_events_wait_in_flash_while_offline_and_go_out_in_order(tmp_path):
    rx = make_receiver(tmp_path)
    task = await started(rx)
    rx.mqtt.drop()
    head = Head()
    for vol in (10, 20, 30):
        rx._on_message(TOPIC + "cmd", head.cmd(M.VOLUME, {"vol": vol}), False)
    assert len(rx.outbox) == 3
    await stop(rx, task)
    rx2 = make_receiver(tmp_path)  # power cut while offline: the acks are still in flash
    assert len(rx2.outbox) == 3 and rx2.core.volume == 30
    task2 = await started(rx2)
    await until(lambda: len(rx2.outbox) == 0)
    seqs = [e["seq"] for e in rx2.mqtt.sent("evt")]
    assert seqs == sorted(seqs) and len(seqs) == 3
    await stop(rx2, task2)


async def test_heartbeat_is_compact_and_complete(tmp_path):
    rx = make_receiver(tmp_path)
    task = await started(rx)
    payload = rx.heartbeat()
    hb = M.decode(payload)
    assert M.session_of(hb) == (1, 1)
    assert hb["mains"] == 0 and hb["dc"] == 12.4 and hb["ln"] == "wifi" and hb["rssi"] == -61
    assert hb["sy"] == 1 and hb["heap"] == 81234 and "play" not in hb
    assert len(payload) < 160, payload
    await stop(rx, task)


async def test_reboot_command_acks_first_then_reboots(tmp_path):
    rx = make_receiver(tmp_path)
    task = await started(rx)
    rx._on_message(TOPIC + "cmd", Head().cmd(M.REBOOT, {}), False)
    await until(lambda: rx.platform.rebooted)
    assert rx.mqtt.sent("evt")[0]["k"] == "ack"
    assert rx.mqtt.sent("status")[-1]["k"] == "death"
    await stop(rx, task)


async def test_live_stream_frames_play_in_order_and_a_lost_one_is_skipped(tmp_path):
    rx = make_receiver(tmp_path, amp_settle_ms=0)
    task = await started(rx)
    head = Head()
    skey = "5a" * 32
    rx._on_message(TOPIC + "cmd", head.cmd(M.STREAM, {
        "bid": "live", "sid": "s1", "sno": 3, "key": skey, "codec": "adpcm", "rate": 16000,
        "prio": M.PRIO_LIVE}), False)
    await until(lambda: "loaxa/v1/xa/stream/s1" in rx.mqtt.subscriptions)
    hkey = HmacKey(bytes.fromhex(skey))
    first = rx.now() + 500  # a margin for a loaded test machine: no frame may be late
    for seq in (1, 0, 3, 2, 4):  # out of order; frame 2 never arrives
        if seq == 2:
            continue
        block = bytes([seq]) * 256  # one 505-sample block, ~32 ms
        payload = pack_frame(hkey, CODEC_ADPCM, 3, seq, first + seq * 32, 505, block,
                             FLAG_LAST if seq == 4 else 0)
        rx._on_message("loaxa/v1/xa/stream/s1", memoryview(payload), False)
    await until(lambda: any(e["k"] == "ended" for e in rx.mqtt.sent("evt")))
    sink = rx.platform.sink
    # Opened once (the skip is whatever the loop was late writing the first frame: in step).
    assert [e[:3] for e in sink.log if e[0] == "open"] == [("open", "adpcm", 16000)]
    assert sink.bytes == 4 * 256 and sink.log[-1] == ("close",)
    assert rx.core.jitter.stats["lost"] == 1
    ended = rx.mqtt.sent("evt")[-1]
    assert ended["sid"] == "s1" and ended["reason"] == "finished"
    assert "loaxa/v1/xa/stream/s1" not in rx.mqtt.subscriptions
    # The technician sees the loss in the heartbeat, counted since boot across streams.
    assert M.decode(rx.heartbeat())["lost"] == 1
    rx._on_message(TOPIC + "cmd", head.cmd(M.STREAM, {
        "bid": "live2", "sid": "s2", "sno": 4, "key": skey, "codec": "adpcm", "rate": 16000,
        "prio": M.PRIO_LIVE}), False)
    await until(lambda: "loaxa/v1/xa/stream/s2" in rx.mqtt.subscriptions)
    first = rx.now() + 500
    for seq in (0, 2):  # frame 1 never arrives
        payload = pack_frame(hkey, CODEC_ADPCM, 4, seq, first + seq * 32, 505,
                             bytes([seq]) * 256, FLAG_LAST if seq == 2 else 0)
        rx._on_message("loaxa/v1/xa/stream/s2", memoryview(payload), False)
    await until(lambda: rx.mqtt.sent("evt")[-1].get("sid") == "s2"
                and rx.mqtt.sent("evt")[-1]["k"] == "ended")
    assert M.decode(rx.heartbeat())["lost"] == 2
    await stop(rx, task)


# -- wall time before the first sync --------------------------------------------------------

class RtcBoard(FakePlatform):
    """A board whose RTC the shell sets at each sync, and which a power cut resets to 2000."""

    def __init__(self, storage_dir, rtc_error_ms=-5000):
        super().__init__(storage_dir)
        self.rtc_error_ms = rtc_error_ms
        self.rtc_sets = 0

    def rtc_ms(self):
        return wall_ms() + self.rtc_error_ms

    def set_rtc_ms(self, ms):
        self.rtc_error_ms = ms - wall_ms()
        self.rtc_sets += 1

    def lose_power(self):
        self.rtc_error_ms = 946684800000 - wall_ms()


def boot(tmp_path, board):
    config = {"device": DEV, "site": SITE, "key": KEY_HEX, "broker": {"host": "127.0.0.1"},
              "amp_settle_ms": 30, "heartbeat_s": 3600}
    return Receiver(config, board, mqtt_factory=FakeMQTT)


async def test_a_reset_with_the_link_down_plays_on_time_from_the_rtc(tmp_path):
    put_in_cache(tmp_path)
    board = RtcBoard(str(tmp_path))
    rx = boot(tmp_path, board)
    task = await started(rx)
    assert board.rtc_sets and abs(board.rtc_error_ms) < 50  # set by the sync
    at = wall_ms() + 1500
    rx._on_message(TOPIC + "cmd", Head().cmd(M.PLAY, play_args(at)), False)
    await until(lambda: rx.mqtt.sent("evt"))
    await stop(rx, task)

    rx = boot(tmp_path, board)  # a watchdog reset: the RTC kept time; the link stays down
    assert rx.core.synced and abs(rx.now() - wall_ms()) < 100
    task = asyncio.ensure_future(rx.run())
    await until(lambda: ("close",) in board.sink.log, timeout=5)
    assert not rx.mqtt.connected
    assert rx.core.export_state()["done"] == ["b1"]
    await stop(rx, task)


async def test_after_a_power_cut_nothing_is_judged_until_the_sync(tmp_path):
    board = RtcBoard(str(tmp_path))
    rx = boot(tmp_path, board)
    task = await started(rx)
    await stop(rx, task)

    board.lose_power()
    rx = boot(tmp_path, board)
    assert not rx.core.synced  # the RTC says 2000: not time anyone kept
    task = asyncio.ensure_future(rx.run())
    await asyncio.sleep(0.2)
    head = Head()
    rx._on_message(TOPIC + "cmd", head.cmd(M.VOLUME, {"vol": 33}), False)
    await asyncio.sleep(0.2)
    assert rx.core.volume == 70 and not rx.mqtt.sent("evt")  # held, not judged on year 2000
    rx.mqtt.come_up()
    await until(lambda: rx.core.volume == 33)
    assert rx.mqtt.sent("evt")[0]["ok"] is True
    await stop(rx, task)


# -- flash: the counter durable before a command acts, torn state, a full flash ----------------

def fetch_args():
    return {"item": "m1", "url": "http://127.0.0.1:9/m1", "sha": SHA, "size": len(ADPCM),
            "dur": 190, "codec": "adpcm", "rate": 16000}


async def test_the_counter_is_in_flash_before_the_command_acts(tmp_path):
    rx = make_receiver(tmp_path)
    task = await started(rx)
    written = []
    save = rx._state_file.save

    def spy(data):
        written.append((data["core"]["ctr"], rx.core.volume))
        save(data)

    rx._state_file.save = spy
    head = Head()
    rx._on_message(TOPIC + "cmd", head.cmd(M.VOLUME, {"vol": 10}), False)
    assert rx.core.volume == 10
    # The first write naming counter 1 happened while the volume was still the old one.
    assert [w for w in written if w[0] == head.ctr][0] == (head.ctr, 70)
    await stop(rx, task)


async def test_a_command_whose_counter_cannot_be_written_is_refused_and_stays_a_replay(tmp_path):
    rx = make_receiver(tmp_path)
    task = await started(rx)
    head = Head()
    save = rx._state_file.save
    failure = {"errno": errno.EIO}

    def broken(data):
        raise OSError(failure["errno"], "flash says no")

    rx._state_file.save = broken
    payload = head.cmd(M.VOLUME, {"vol": 10})
    rx._on_message(TOPIC + "cmd", payload, False)
    rx._on_message(TOPIC + "cmd", payload, False)  # the same again: a replay, saved or not
    failure["errno"] = errno.ENOSPC
    rx._on_message(TOPIC + "cmd", head.cmd(M.VOLUME, {"vol": 15}), False)
    assert rx.core.volume == 70  # nothing acted on an unsaved counter
    await until(lambda: len([e for e in rx.mqtt.sent("evt") if e["k"] == "ack"]) == 3)
    acks = [e for e in rx.mqtt.sent("evt") if e["k"] == "ack"]
    assert [(a["ok"], a["reason"]) for a in acks] == [
        (False, "storage"), (False, "replay"), (False, "no-space")]
    assert rx.stats["no_space"] == 1
    rx._state_file.save = save
    rx._on_message(TOPIC + "cmd", head.cmd(M.VOLUME, {"vol": 20}), False)
    assert rx.core.volume == 20
    await stop(rx, task)
    assert make_receiver(tmp_path).core.export_state()["ctr"] == head.ctr


async def test_a_torn_state_file_does_not_reopen_the_replay_window(tmp_path):
    rx = make_receiver(tmp_path)
    task = await started(rx)
    head = Head()
    first = head.cmd(M.VOLUME, {"vol": 10})
    rx._on_message(TOPIC + "cmd", first, False)
    rx._on_message(TOPIC + "cmd", head.cmd(M.VOLUME, {"vol": 20}), False)
    await stop(rx, task)
    with open(str(tmp_path / "state.json"), "w") as f:
        f.write('{"boot": 1, "core": {"ctr": ')  # a torn write, a bad block
    rx = make_receiver(tmp_path)
    task = await started(rx)
    rx._on_message(TOPIC + "cmd", first, False)  # captured on the air, played back
    await until(lambda: rx.core.volume == 10 or any(
        e["k"] == "rejected" for e in rx.mqtt.sent("evt")))
    assert rx.core.volume == 20 and rx.mqtt.sent("evt")[-1]["reason"] == "replay"
    assert rx.boot_info["state"] == "bak"  # and the birth says where the state came from
    assert M.open_report(KEY, "status", rx.mqtt.published[0][1])["state"] == "bak"
    await stop(rx, task)


async def test_a_full_flash_under_a_download_is_reported_as_no_space(tmp_path, monkeypatch):
    from firmware import fetcher

    async def fills_up(open_connection, url, path, size, chunk=2048):
        with open(path, "wb") as f:
            f.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetcher, "download", fills_up)
    rx = make_receiver(tmp_path)
    task = await started(rx)
    rx._on_message(TOPIC + "cmd", Head().cmd(M.FETCH, fetch_args()), False)
    # (A full flash gives up at once: retrying soon cannot mend it.)
    await until(lambda: any(e["k"] == "fetch_failed" for e in rx.mqtt.sent("evt")), 10)
    failed = [e for e in rx.mqtt.sent("evt") if e["k"] == "fetch_failed"][0]
    assert failed["reason"] == "no-space"
    assert not os.path.exists(rx.cache.part_path(SHA)) and rx.stats["no_space"] == 1
    await stop(rx, task)


class SmallFlash(FakePlatform):
    """A board whose flash has ``free`` bytes left (4 KB blocks), whatever the disk has."""

    def __init__(self, storage_dir, free):
        super().__init__(storage_dir)
        self.free = free

    def storage_space(self):
        return self.free, 4096


async def test_the_cache_budget_comes_from_the_flash_not_only_from_cache_bytes(
        tmp_path, monkeypatch):
    from firmware import fetcher
    from firmware.cache import RESERVE_BYTES

    downloads = []

    async def never(*args, **kwargs):
        downloads.append(args)
        raise AssertionError("no download may start")

    monkeypatch.setattr(fetcher, "download", never)
    board = SmallFlash(str(tmp_path), RESERVE_BYTES + 1000)
    rx = Receiver({"device": DEV, "site": SITE, "key": KEY_HEX,
                   "broker": {"host": "127.0.0.1"}, "heartbeat_s": 3600}, board,
                  mqtt_factory=FakeMQTT)
    task = await started(rx)
    caps = M.open_report(KEY, "status", rx.mqtt.published[0][1])["caps"]
    assert caps["cache_total"] == 1000 and caps["cache_free"] == 1000  # not 2000000
    rx._on_message(TOPIC + "cmd", Head().cmd(M.FETCH, fetch_args()), False)
    await until(lambda: any(e["k"] == "fetch_failed" for e in rx.mqtt.sent("evt")))
    assert rx.mqtt.sent("evt")[-1]["reason"] == "cache-full" and not downloads
    await stop(rx, task)


async def test_orphans_are_swept_at_boot_and_a_wanted_download_is_kept(tmp_path):
    rx = make_receiver(tmp_path)
    task = await started(rx)
    rx._on_message(TOPIC + "cmd", Head().cmd(M.PLAY, play_args(rx.now() + 3600000)), False)
    await stop(rx, task)
    cache_dir = str(tmp_path / "cache")
    leftovers = {SHA[:32] + ".part": 100,             # the scheduled item's download: kept
                 "f" * 32 + ".part": 5000,             # an item nobody wants any more
                 "e" * 32 + ".adpcm": 3000,            # finished, but the index never got it
                 "index.json.tmp": 20}                 # an interrupted index write
    for name, size in leftovers.items():
        with open(cache_dir + "/" + name, "wb") as f:
            f.write(b"\0" * size)
    rx = make_receiver(tmp_path)
    assert [n for n in os.listdir(cache_dir) if n != "index.json"] == [SHA[:32] + ".part"]
    assert rx.cache.used() == 100  # the download in progress counts as held


# -- the core's timing decisions, carried out by the shell ---------------------------------------

class TimedSink(FakeSink):
    def __init__(self, read_ms):
        super().__init__()
        self.read_ms = read_ms

    def open(self, codec, rate, skip_samples=0):
        super().open(codec, rate, skip_samples)
        self.opened_at = self.read_ms()


class TimedBoard(FakePlatform):
    """Records when the relay switched and when the sink opened, by ``read_ms()`` (the
    receiver's own ms count, what its player waits by)."""

    def __init__(self, storage_dir):
        super().__init__(storage_dir)
        self.read_ms = None
        self.sink = TimedSink(lambda: self.read_ms())
        self.amp_at = []

    def amplifier(self, on):
        super().amplifier(on)
        self.amp_at.append((on, self.read_ms()))


async def test_the_relay_closes_amp_settle_ms_before_the_first_sample_and_opens_after(tmp_path):
    put_in_cache(tmp_path)
    settle = 200
    head = Head()  # one head-end: the counter in flash carries over to the second receiver
    for at_offset in (600, None):  # a scheduled item, then one that plays at once
        board = TimedBoard(str(tmp_path))
        rx = Receiver({"device": DEV, "site": SITE, "key": KEY_HEX,
                       "broker": {"host": "127.0.0.1"}, "amp_settle_ms": settle,
                       "heartbeat_s": 3600}, board, mqtt_factory=FakeMQTT)
        board.read_ms = rx.local_ms
        task = await started(rx)
        rx.mqtt.answer_time = False  # synced: no clock steps while the relay settles
        args = play_args(None if at_offset is None else rx.now() + at_offset, "b%s" % at_offset)
        if at_offset is None:
            del args["at"]
        rx._on_message(TOPIC + "cmd", head.cmd(M.PLAY, args), False)
        await until(lambda b=board: ("close",) in b.sink.log and len(b.amp) == 2)
        (on, closed_at), (off, opened_at) = board.amp_at
        assert (on, off) == (True, False)
        # The first sample no sooner than the settle time after the relay closed (1 ms: the
        # switch follows the core's decision in the same call, within the same tick or the
        # next), and the relay open again once it was played.
        assert board.sink.opened_at - closed_at >= settle - 1
        assert opened_at >= board.sink.opened_at
        await stop(rx, task)


class CountingMQTT(FakeMQTT):
    """Also counts every time request the receiver tries to send, connected or not."""

    def __init__(self, receiver, cfg, will):
        super().__init__(receiver, cfg, will)
        self.time_requests = 0

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=10000):
        if topic.endswith("/treq"):
            self.time_requests += 1
        return await super().publish(topic, payload, qos, retain, timeout_ms)


async def test_no_time_request_while_the_link_is_down_and_a_burst_at_each_reconnect(tmp_path):
    rx = Receiver({"device": DEV, "site": SITE, "key": KEY_HEX, "broker": {"host": "127.0.0.1"},
                   "heartbeat_s": 3600, "timesync_burst": 5}, FakePlatform(str(tmp_path)),
                  mqtt_factory=CountingMQTT)
    task = asyncio.ensure_future(rx.run())
    rx.mqtt.come_up()
    await until(lambda: rx.mqtt.time_requests >= 2)  # the burst is under way (250 ms apart)
    rx.mqtt.drop()
    await asyncio.sleep(0.05)  # a request decided just before the drop has gone out
    before = rx.mqtt.time_requests
    await asyncio.sleep(0.8)  # the rest of the burst would have gone by now
    assert rx.mqtt.time_requests == before
    await rx.mqtt.reconnect()
    await until(lambda: rx.mqtt.time_requests >= before + 5)
    await asyncio.sleep(0.3)
    assert rx.mqtt.time_requests == before + 5  # one burst; the next request is seconds away
    await stop(rx, task)


async def test_a_failing_fetch_is_tried_three_times_then_reported_once(tmp_path, monkeypatch):
    from firmware import fetch_policy, fetcher
    from firmware.http import HttpError

    calls = []

    async def refused(open_connection, url, path, size, chunk=2048):
        calls.append(url)
        raise HttpError("http 503")

    monkeypatch.setattr(fetcher, "download", refused)
    monkeypatch.setattr(fetch_policy, "BACKOFF_MS", 20)  # not 2 s and 4 s, in a unit test
    rx = make_receiver(tmp_path)
    task = await started(rx)
    rx._on_message(TOPIC + "cmd", Head().cmd(M.FETCH, fetch_args()), False)
    await until(lambda: any(e["k"] == "fetch_failed" for e in rx.mqtt.sent("evt")))
    await asyncio.sleep(0.3)
    failed = [e for e in rx.mqtt.sent("evt") if e["k"] == "fetch_failed"]
    assert len(calls) == fetch_policy.ATTEMPTS == 3
    assert len(failed) == 1 and failed[0]["reason"] == "http 503" and failed[0]["item"] == "m1"
    assert rx.stats["fetch_errors"] == 3 and not rx.fetching
    await stop(rx, task)


async def test_a_fetch_with_pin_pins_the_item_in_flash_across_a_reboot(tmp_path):
    put_in_cache(tmp_path)
    rx = make_receiver(tmp_path)
    task = await started(rx)
    args = dict(fetch_args(), pin=True)
    rx._on_message(TOPIC + "cmd", Head().cmd(M.FETCH, args), False)
    await until(lambda: any(e["k"] == "fetched" for e in rx.mqtt.sent("evt")))
    assert rx.cache.pinned() == [SHA]
    await stop(rx, task)
    rx = make_receiver(tmp_path)  # a reboot: the index says so
    assert rx.cache.pinned() == [SHA]
    # The schedule's whole cache_bytes is still its own, and nothing it fetches evicts it.
    assert rx.cache.free() == rx.cache.capacity == 2000000
    block = rx.cache._flash()[1]
    whole = rx.cache.free() // block * block  # unpinned, the item's block would have to go
    assert rx.cache.make_room(whole, [], "f" * 64) == [] and rx.cache.has(SHA)
    task = await started(rx)
    head = Head()
    head.ctr = 10  # above the first boot's counter
    rx._on_message(TOPIC + "cmd", head.cmd(M.FETCH, dict(fetch_args(), pin=False)), False)
    await until(lambda: rx.cache.pinned() == [])
    await stop(rx, task)
