"""One receiver as its own MicroPython process: the real firmware shell on ``MpHostPlatform``.

    MICROPYPATH=.frozen:<device lib>:<repo> micropython-esp32like -X heapsize=2m \\
        simulator/mp_receiver.py settings.json

``settings.json``: ``{"firmware": <firmware config>, "sim": <simulator/mp_host.py settings>}``.
Started by simulator/mp_runtime.py, which reads the ``@`` report lines this process prints
(simulator/mp_host.py lists the sink's and the board's; this script adds a status line every
``STATUS_MS`` and heap figures) and writes commands as JSON lines on its stdin::

    {"do": "stop"}                         a clean shutdown (MQTT DISCONNECT), exit 0
    {"do": "set", "mains": 0, ...}         set board sensors (attributes of MpHostPlatform)
    {"do": "heap"}                         report the live heap now (after a collection)

A heap smaller than the receiver needs (firmware/heap.py) is refused before the firmware is
imported: ``{"k": "refused", "reason"}`` and exit ``REFUSED_EXIT``, as a board would refuse.

Status: ``{"k": "st", "mq": connected, "sy": synced, "se": network - true ms, "vol",
"cnt": core counters, "stats": shell stats, "mqs": MQTT client stats, "boot", "play": bid,
"heap": {phase: [peak allocated, min free]}}``, by phase: "boot" until the first sync, then
"idle", "fetch", "play-file", "play-live". By default the heap is sampled with each status
(garbage included: on a 2 MB heap the collector runs late). With ``"heap_probe": true`` in the
sim settings (the benchmark) it is sampled every ``HEAP_SAMPLE_MS`` after a ``gc.collect()``
every ``PROBE_MS``, so the peaks are of live data, what a smaller board must hold; that costs
CPU, which is why it is not the default: with 50 receivers on 2 cores, sampling every 20 ms
alone took most of the machine.
"""

import gc
import json
import sys

REBOOT_EXIT = 3


def boot_version(path):
    """What board/boot.py does first: the version folder an update installed, if the pointer
    names one (firmware/otaboot.py: a trial boot counted, or a rollback), goes first on the
    path, so every firmware and protocol module below is imported from it; otherwise the
    fleet's device lib (the factory firmware) runs."""
    with open(path) as f:
        storage = json.load(f)["sim"]["storage_dir"]
    from firmware import otaboot

    lib = otaboot.choose(storage)
    if lib:
        otaboot.activate(lib)


boot_version(sys.argv[1])

try:  # noqa: E402 - after the version is chosen
    import asyncio
except ImportError:
    import uasyncio as asyncio

from firmware.heap import heap_refusal  # noqa: E402
from simulator.mp_host import report, true_us  # noqa: E402

STATUS_MS = 250
REFUSED_EXIT = 4
HEAP_SAMPLE_MS = 20
PROBE_MS = 100


class Monitor:
    def __init__(self, receiver, platform, probe=False):
        self.rx = receiver
        self.platform = platform
        self.probe = probe
        self.heap = {}
        self.running = True

    def phase(self):
        rx = self.rx
        if not rx.core.synced:
            return "boot"
        item = rx.playing_item
        if item is not None:
            return "play-live" if item.stream is not None else "play-file"
        if rx.fetching:
            return "fetch"
        return "idle"

    def sample_heap(self):
        name = self.phase()
        used = gc.mem_alloc()
        free = gc.mem_free()
        entry = self.heap.get(name)
        if entry is None:
            self.heap[name] = [used, free]
        else:
            if used > entry[0]:
                entry[0] = used
            if free < entry[1]:
                entry[1] = free

    def status(self):
        rx = self.rx
        core = rx.core
        return {"k": "st", "mq": bool(rx.mqtt.connected), "sy": core.synced,
                "se": rx.now() - true_us() // 1000 if core.synced else None,
                "vol": core.volume, "cnt": core.counters, "stats": rx.stats,
                "mqs": rx.mqtt.stats, "boot": rx.boot,
                "play": core.current.bid if core.current is not None else None,
                "heap": self.heap}

    async def status_loop(self):
        period = HEAP_SAMPLE_MS if self.probe else STATUS_MS
        n = 0
        while self.running:
            if self.probe and n % (PROBE_MS // HEAP_SAMPLE_MS) == 0:
                gc.collect()
            self.sample_heap()
            n += 1
            if n * period >= STATUS_MS:
                n = 0
                report(self.status())
            await asyncio.sleep_ms(period)

    async def command_loop(self):
        stdin = asyncio.StreamReader(sys.stdin)  # polled by asyncio: no wake-ups while idle
        while self.running:
            line = await stdin.readline()
            if not line:  # the parent is gone: go down as a powered-off board would
                await self.stop()
                return
            try:
                cmd = json.loads(line)
            except ValueError:
                continue
            what = cmd.get("do")
            if what == "stop":
                await self.stop()
                return
            if what == "set":
                for name in cmd:
                    if name != "do" and hasattr(self.platform, name):
                        setattr(self.platform, name, cmd[name])
            elif what == "heap":
                gc.collect()
                report({"k": "heap", "alloc": gc.mem_alloc(), "free": gc.mem_free(),
                        "phase": self.phase()})

    async def stop(self):
        self.running = False
        await self.rx.shutdown()


async def main(path):
    with open(path) as f:
        settings = json.load(f)
    # As board/main.py does first: refuse a heap the receiver cannot run in, with the reason
    # (the benchmark turns this off to measure what the firmware itself needs).
    gc.collect()
    refusal = heap_refusal(gc.mem_free(), gc.mem_alloc())
    if refusal and settings["sim"].get("heap_check", True):
        report({"k": "refused", "t": true_us(), "reason": refusal})
        raise SystemExit(REFUSED_EXIT)
    from firmware.shell import Receiver
    from simulator.mp_host import MpHostPlatform

    platform = MpHostPlatform(settings["sim"])
    gc.collect()
    before = gc.mem_alloc()
    receiver = Receiver(settings["firmware"], platform)
    gc.collect()
    report({"k": "boot", "t": true_us(), "boot": receiver.boot, "alloc": gc.mem_alloc(),
            "free": gc.mem_free(), "receiver_bytes": gc.mem_alloc() - before,
            "impl": sys.implementation.name, "maxsize": sys.maxsize})

    def now_playing():
        return receiver.core.playing()

    platform.sink.context = now_playing
    monitor = Monitor(receiver, platform, settings["sim"].get("heap_probe", False))
    asyncio.create_task(monitor.status_loop())
    asyncio.create_task(monitor.command_loop())
    await receiver.run()
    report(monitor.status())


def run(path):
    """``main``; a crash of the firmware with ``"reset_on_crash"`` in the sim settings is what
    board/main.py does with one: the traceback, then a reset (the parent starts this board
    again on the same flash), so a version that crashes at boot meets its boot counter."""
    try:
        asyncio.run(main(path))
    except Exception as e:
        sys.print_exception(e)
        with open(path) as f:
            if json.load(f)["sim"].get("reset_on_crash"):
                report({"k": "crash", "error": repr(e)})
                raise SystemExit(REBOOT_EXIT)  # noqa: B904 - no chaining on MicroPython
        raise


run(sys.argv[1])
