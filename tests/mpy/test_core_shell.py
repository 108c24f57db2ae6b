"""The firmware shell around the core on a real MicroPython asyncio (make test-micropython) and
on CPython: one Receiver with a board of memory and a stand-in MQTT client that answers time
requests like the head-end. It syncs, plays a cached ADPCM item at its time (the amplifier
relay settled before it), and reports it.

Plain functions and asserts only (see tests/mpy/); tests/test_shell_receiver.py covers the
shell in more depth on CPython.
"""

import asyncio
import hashlib
import json
import time

from firmware.cache import MediaCache
from firmware.shell import Receiver
from protocol import messages as M

try:
    from flash_dir import remove_tree  # MicroPython: tests/mpy is on the path
except ImportError:  # CPython: tests/mpy is a package
    from .flash_dir import remove_tree

KEY = b"\x11" * 32
DEV = "rx-1"
TOPIC = "loaxa/v1/xa/dev/rx-1/"
HEAD_BASE_MS = 1800000000000
ADPCM = bytes(256) * 3  # three silent blocks, 1515 samples, ~95 ms at 16 kHz
SHA = "".join("%02x" % b for b in hashlib.sha256(ADPCM).digest())  # no hexdigest in MicroPython

try:
    ticks_ms, ticks_diff = time.ticks_ms, time.ticks_diff
except AttributeError:  # CPython
    def ticks_ms():
        return int(time.monotonic() * 1000) & 0x3FFFFFFF

    def ticks_diff(a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d >= 0x20000000 else d

_T0 = ticks_ms()


def head_ms():
    """The head-end's clock: the same time base as the board's ticks, far from it in value."""
    return HEAD_BASE_MS + ticks_diff(ticks_ms(), _T0)


class MemorySink:
    codecs = ("adpcm",)
    name = "mem"

    def __init__(self):
        self.log = []

    def open(self, codec, rate, skip_samples=0):
        self.log.append(("open", codec, rate, skip_samples, head_ms()))

    async def write(self, buf):
        self.log.append(("write", len(buf)))
        await asyncio.sleep(0)

    async def drain(self):
        await asyncio.sleep(0)

    def close(self):
        self.log.append(("close",))

    def stop(self):
        self.log.append(("stop",))

    def set_volume(self, volume):
        self.log.append(("volume", volume))


class Board:
    def __init__(self, storage_dir):
        self.storage_dir = storage_dir
        self.sink = MemorySink()
        self.amp = []
        self.amp_at = []

    def ticks_ms(self):
        return ticks_ms()

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def ticks_add(self, a, delta):
        return (a + delta) & 0x3FFFFFFF

    def rtc_ms(self):
        return head_ms() - 5000  # 5 s slow before the first sync

    def set_rtc_ms(self, ms):
        self.rtc_set = ms

    async def link_up(self):
        pass

    def link_info(self):
        return {"type": "sim", "rssi": None}

    def amplifier(self, on):
        self.amp.append(on)
        self.amp_at.append(head_ms())

    def amplifier_fault(self):
        return False

    def led(self, pattern):
        pass

    def supply(self):
        return {"mains": 1, "dc": None}

    def temperature(self):
        return None

    def mem_free(self):
        return 100000

    def random_below(self, n):
        return 0

    def feed_watchdog(self):
        pass


class HeadEndLink:
    """Stands in for firmware.mqtt.MQTTClient: connected at once, answers time requests."""

    def __init__(self, receiver, cfg, will):
        self.receiver = receiver
        self.will = will
        self.connected = False
        self.published = []
        self.answer_time = True
        self._closed = asyncio.Event()

    async def run(self):
        await self.receiver._on_connect()
        self.connected = True
        await self._closed.wait()

    async def close(self):
        self.connected = False
        self._closed.set()

    async def subscribe(self, topic, qos=0):
        return self.connected

    async def unsubscribe(self, topic):
        return self.connected

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=10000):
        self.published.append((topic, bytes(payload)))
        if topic == TOPIC + "treq" and self.answer_time:
            t0 = json.loads(payload)["t0"]
            reply = M.time_reply(KEY, DEV, t0, head_ms(), head_ms())
            self.receiver._on_message(TOPIC + "time", memoryview(reply), False)
        return True

    async def wait_connected(self, timeout_ms=None):
        while not self.connected:
            await asyncio.sleep(0.01)
        return True

    def events(self):
        return [M.open_report(KEY, "evt", p) for t, p in self.published if t == TOPIC + "evt"]


async def until(predicate, limit_ms=5000):
    start = ticks_ms()
    while not predicate():
        assert ticks_diff(ticks_ms(), start) < limit_ms, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_receiver_syncs_plays_on_time_and_reports():
    storage = "/tmp/loaxa-mpy-shell-%d" % (ticks_ms() % 1000000)
    remove_tree(storage)
    cache = MediaCache(storage + "/cache", 100000)
    with open(cache.part_path(SHA), "wb") as f:
        f.write(ADPCM)
    cache.add(SHA, len(ADPCM), "adpcm")
    board = Board(storage)
    config = {"device": DEV, "site": "xa", "key": "11" * 32, "broker": {"host": "h"},
              "amp_settle_ms": 20, "heartbeat_s": 3600}
    rx = Receiver(config, board, mqtt_factory=HeadEndLink)
    task = asyncio.create_task(rx.run())
    try:
        await until(lambda: rx.core.synced)
        assert abs(rx.now() - head_ms()) < 100  # was 5 s off before the sync
        rx.mqtt.answer_time = False  # no clock steps while the relay settles
        at = head_ms() + 400
        args = {"bid": "b1", "item": "m1", "url": "http://h/m1", "sha": SHA,
                "size": len(ADPCM), "dur": 95, "codec": "adpcm", "rate": 16000, "at": at,
                "prio": 0}
        rx._on_message(TOPIC + "cmd", M.sign_command(KEY, DEV, M.PLAY, args, 1, at + 60000,
                                                      "c1"), False)
        await until(lambda: [e for e in rx.mqtt.events() if e["k"] == "ended"])
        opened = [e for e in board.sink.log if e[0] == "open"][0]
        assert opened[1:3] == ("adpcm", 16000)
        assert opened[4] >= at - 5  # not before its time (the player waits for it)
        assert ("close",) in board.sink.log and board.amp == [True, False]
        # The relay closed amp_settle_ms (20) before the first sample, opened after the last.
        assert opened[4] - board.amp_at[0] >= 20 - 1 and board.amp_at[1] >= opened[4]
        assert [e["k"] for e in rx.mqtt.events()] == ["ack", "started", "ended"]
        assert rx.mqtt.events()[-1]["reason"] == "finished"
    finally:
        await rx.shutdown()
        await task
        remove_tree(storage)
