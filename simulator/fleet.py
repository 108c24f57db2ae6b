"""A fleet of simulated receivers: the real firmware shell and core, many to one event loop.

A fleet is described like the head-end's device registry, as JSON::

    {"site": "xa-an-binh", "broker": {"host": "127.0.0.1", "port": 1883},
     "devices": [{"id": "r01", "name": "Thôn 1 - cổng chợ", "zone": "thon-1",
                  "key": "<64 hex>", "mqtt_user": "r01", "mqtt_password": "...",
                  "codec": "mp3", "offset_ms": 1200, "drift_ppm": -40}]}

(``offset_ms``/``drift_ppm`` are optional simulator extras: how wrong each board's clock is.)
``generate`` makes one with random keys, codecs alternating mp3/adpcm and clocks spread over
the given ranges. ``Fleet.start()`` runs every receiver: with ``runtime="cpython"`` (the
default, for large fleets) each is a task in the current loop; with ``runtime="micropython"``
each is its own process of the MicroPython that computes like an ESP32 (simulator/mp_runtime.py),
with the board's heap (``heap_probe``: True, or the number of receivers, counted from the
first, that measure their live heap: simulator/mp_receiver.py). ``restart``, ``cut`` and
``restore`` act on one of them, ``fail_mains`` (a mains cut, then the battery drains until
the board dies) and ``restore_mains`` (power back: a fresh boot) on its supply;
``status_rows`` reports.
"""

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from simulator.host import HostPlatform, flash_root
from simulator.operator import DeviceInfo

CODECS = ("mp3", "adpcm")
RUNTIMES = ("cpython", "micropython")
COMMUNE_TZ = ZoneInfo("Asia/Ho_Chi_Minh")  # times are shown as the commune reads them


class DeviceSpec:
    """One receiver of a fleet file."""

    def __init__(self, device_id, key, zone="", name="", codec="mp3", mqtt_user=None,
                 mqtt_password=None, offset_ms=0.0, drift_ppm=0.0):
        self.id = device_id
        self.key = key
        self.zone = zone
        self.name = name or device_id
        self.codec = codec
        self.mqtt_user = mqtt_user
        self.mqtt_password = mqtt_password
        self.offset_ms = float(offset_ms)
        self.drift_ppm = float(drift_ppm)

    @classmethod
    def from_json(cls, obj):
        return cls(obj["id"], obj["key"], zone=obj.get("zone", ""), name=obj.get("name", ""),
                   codec=obj.get("codec", "mp3"), mqtt_user=obj.get("mqtt_user"),
                   mqtt_password=obj.get("mqtt_password"), offset_ms=obj.get("offset_ms", 0),
                   drift_ppm=obj.get("drift_ppm", 0))

    def to_json(self):
        return {"id": self.id, "name": self.name, "zone": self.zone, "key": self.key,
                "mqtt_user": self.mqtt_user, "mqtt_password": self.mqtt_password,
                "codec": self.codec, "offset_ms": self.offset_ms, "drift_ppm": self.drift_ppm}

    def info(self):
        """What an operator needs to command this receiver."""
        return DeviceInfo(self.id, self.key, codec=self.codec, zone=self.zone, name=self.name)


def generate_specs(count, zones=1, offset_ms=0.0, drift_ppm=0.0, seed=None, prefix="r",
                   codecs=CODECS):
    """``count`` receivers spread round-robin over ``zones`` zones ("thon-1", ...), each with
    a random 32-byte key, codecs alternating, and clocks uniformly within ±offset_ms and
    ±drift_ppm."""
    rng = random.Random(seed)
    specs = []
    width = max(2, len(str(count)))
    for i in range(count):
        device_id = "%s%0*d" % (prefix, width, i + 1)
        specs.append(DeviceSpec(
            device_id, "%064x" % rng.getrandbits(256), zone="thon-%d" % (i % zones + 1),
            name="Cụm loa %d" % (i + 1), codec=codecs[i % len(codecs)], mqtt_user=device_id,
            mqtt_password="%032x" % rng.getrandbits(128),
            offset_ms=rng.uniform(-offset_ms, offset_ms), drift_ppm=rng.uniform(-drift_ppm, drift_ppm)))
    return specs


def load_fleet_file(path):
    """``(site, (host, port) or None, [DeviceSpec])`` from a fleet JSON file."""
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    broker = obj.get("broker")
    address = (broker.get("host", "127.0.0.1"), int(broker.get("port", 1883))) if broker else None
    return obj.get("site", "demo"), address, [DeviceSpec.from_json(d) for d in obj["devices"]]


def save_fleet_file(path, site, broker, specs):
    obj = {"site": site, "devices": [s.to_json() for s in specs]}
    if broker:
        obj["broker"] = {"host": broker[0], "port": broker[1]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)


class SimReceiver:
    """One simulated receiver: a spec, a board (kept across reboots) and the firmware on it."""

    def __init__(self, fleet, spec, platform):
        self.fleet = fleet
        self.spec = spec
        self.platform = platform
        self.receiver = None
        self.task = None
        self.boots = 0
        self.crashes = []  # exceptions that ended the firmware's run() (there should be none)

    @property
    def id(self):
        return self.spec.id

    @property
    def sink(self):
        return self.platform.sink

    @property
    def link(self):
        return self.platform.link

    def start(self):
        from firmware import otaboot
        from firmware.shell import Receiver

        # The boot's update step (board/boot.py): a trial boot counted, or a rollback. The
        # code stays this process's own (receivers share it); the version folder's code runs
        # only in the MicroPython runtime, one process per board.
        otaboot.choose(self.platform.storage_dir)
        self.receiver = Receiver(self.fleet.receiver_config(self.spec), self.platform)
        self.platform.sink.context = self._now_playing
        self.boots += 1
        self.task = asyncio.ensure_future(self._run(self.receiver))

    async def _run(self, receiver):
        try:
            await receiver.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a firmware crash: recorded so tests and reports show it
            self.crashes.append(exc)
            raise

    async def stop(self):
        receiver, task = self.receiver, self.task
        if receiver is None:
            return
        try:
            await asyncio.wait_for(receiver.shutdown(), 5)
        except Exception:
            pass
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        self.receiver = None
        self.task = None

    async def restart(self):
        """A reboot: the firmware starts afresh on the same board, flash and link."""
        await self.stop()
        if self.platform.sink.current is not None:
            self.platform.sink.stop()
        self.platform.amplifier(False)
        self.start()

    async def power_off(self):
        """The board dies: its connections go quiet without closing first (simulator/network.py
        ``power_off``), so the firmware's goodbye as it is stopped reaches nobody; the RTC
        loses its time and the next boot reads a power-on reset."""
        self.link.power_off()
        await self.stop()
        if self.platform.sink.current is not None:
            self.platform.sink.stop()
        self.platform.amplifier(False)
        self.platform.lose_power()
        self.platform.reset_cause_name = "power-on"

    def power_on(self):
        """Power back: the link comes up and the firmware boots afresh from its flash."""
        self.link.restore()
        self.start()

    def _now_playing(self):
        """What the firmware's core says it is playing, for the sink's records."""
        core = getattr(self.receiver, "core", None)
        return core.playing() if core is not None else None

    def status(self):
        receiver = self.receiver
        mqtt = getattr(receiver, "mqtt", None)
        playing = self.platform.sink.current
        sync_error = None
        if receiver is not None and receiver.core.synced:
            sync_error = receiver.now() - time.time() * 1000.0
        return {
            "id": self.id, "zone": self.spec.zone, "codec": self.spec.codec,
            "link": "up" if self.link.up else "CUT",
            "mqtt": "on" if mqtt is not None and getattr(mqtt, "connected", False) else "off",
            "offset_ms": self.spec.offset_ms, "drift_ppm": self.spec.drift_ppm,
            "sync_error_ms": sync_error,
            "playing": (playing.item or "?") if playing is not None else "",
            "played": len(self.platform.sink.playbacks),
            "boots": self.boots, "crashed": bool(self.crashes) or bool(
                self.task is not None and self.task.done() and not self.task.cancelled()),
        }


class Fleet:
    """N receivers against one broker. Use ``async with Fleet(...) as fleet:`` or start/stop."""

    def __init__(self, specs, site="demo", broker=("127.0.0.1", 1883), workdir=None,
                 ticks_near_wrap=True, keep_bytes=False, config_overrides=None, seed=0,
                 runtime="cpython", heap=None, mpy=True, heap_probe=False, heap_check=True):
        if runtime not in RUNTIMES:
            raise ValueError("runtime must be one of %s" % ", ".join(RUNTIMES))
        self.runtime = runtime
        self.site = site
        self.broker = (broker[0], int(broker[1]))
        self.specs = list(specs)
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="loaxa-fleet-", dir=flash_root())
        self.config_overrides = dict(config_overrides or {})
        self.receivers = {}
        if runtime == "micropython":
            from simulator import mp_runtime
            from tools.mpbuild import HEAP_PSRAM

            mp_runtime.binary()  # refuse now, with the reason, when there is none
            self.device_lib = mp_runtime.device_lib(self.workdir, mpy=mpy)
            for i, spec in enumerate(self.specs):
                self.receivers[spec.id] = mp_runtime.MpSimReceiver(
                    self, spec, os.path.join(self.workdir, spec.id), heap=heap or HEAP_PSRAM,
                    keep_bytes=keep_bytes, seed=seed * 100003 + i, ticks_near_wrap=ticks_near_wrap,
                    heap_probe=heap_probe is True or i < int(heap_probe), heap_check=heap_check)
        for i, spec in enumerate(self.specs if runtime == "cpython" else ()):
            platform = HostPlatform(
                spec.id, offset_ms=spec.offset_ms, drift_ppm=spec.drift_ppm,
                ticks_near_wrap=ticks_near_wrap, storage_dir=os.path.join(self.workdir, spec.id),
                codecs=(spec.codec,), seed=seed * 100003 + i, keep_bytes=keep_bytes,
                on_reboot=self._reboot_requested)
            self.receivers[spec.id] = SimReceiver(self, spec, platform)
        self._reboots = set()
        self._battery_watch = {}

    # -- configuration given to each receiver's firmware ------------------------------------

    def receiver_config(self, spec):
        """The firmware configuration (firmware/config.py) of one receiver, validated."""
        from firmware.config import DEFAULTS, merge, validate

        config = merge(DEFAULTS, {
            "device": spec.id, "site": self.site, "key": spec.key,
            "broker": {"host": self.broker[0], "port": self.broker[1],
                       "user": spec.mqtt_user, "password": spec.mqtt_password},
            "link": {"type": "sim"},
            "sink": "vs1053" if spec.codec == "mp3" else "i2s",
        })
        return validate(merge(config, self.config_overrides))

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, stagger_s=None):
        """Start every receiver, spread over ``stagger_s`` seconds (default 10 ms per receiver,
        at most 3 s): real receivers do not all boot in the same millisecond, and in one
        process a simultaneous connect-and-sync burst would skew every clock estimate."""
        if stagger_s is None:
            stagger_s = min(3.0, 0.01 * len(self.receivers))
        gap = stagger_s / len(self.receivers) if self.receivers else 0
        for sim in self.receivers.values():
            started = sim.start()
            if started is not None:  # a MicroPython process: started once it is spawned
                await started
            if gap:
                await asyncio.sleep(gap)
        return self

    async def stop(self):
        for watch in self._battery_watch.values():
            watch.cancel()
        await asyncio.gather(*(sim.stop() for sim in self.receivers.values()))
        for sim in self.receivers.values():
            sim.platform.sink.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    def _reboot_requested(self, platform):
        sim = self.receivers.get(platform.device_id)
        if sim is not None and sim.id not in self._reboots:
            self._reboots.add(sim.id)
            asyncio.get_event_loop().call_soon(
                lambda: asyncio.ensure_future(self._do_reboot(sim)))

    async def _do_reboot(self, sim):
        try:
            await sim.restart()
        finally:
            self._reboots.discard(sim.id)

    # -- acting on receivers -----------------------------------------------------------------

    def __getitem__(self, device_id):
        return self.receivers[device_id]

    def __iter__(self):
        return iter(self.receivers.values())

    def __len__(self):
        return len(self.receivers)

    def ids(self, zone=None):
        return [s.id for s in self.specs if zone is None or s.zone == zone]

    def zones(self):
        return sorted({s.zone for s in self.specs})

    def device_infos(self):
        return [s.info() for s in self.specs]

    async def restart(self, device_id):
        await self.receivers[device_id].restart()

    def cut(self, device_id, mode="drop"):
        self.receivers[device_id].link.cut(mode)

    def restore(self, device_id):
        self.receivers[device_id].link.restore()

    def fail_mains(self, device_id, battery_v=12.7, drain_v_per_s=0.02, cutoff_v=10.5):
        """The mains goes: the receiver runs on its battery, whose voltage falls by
        ``drain_v_per_s``, and dies (``power_off``) once it reaches ``cutoff_v``."""
        sim = self.receivers[device_id]
        if self.runtime != "cpython":
            raise NotImplementedError("fail_mains drains a battery of the CPython runtime only")
        platform = sim.platform
        platform.battery_v = battery_v
        platform.battery_drain_v_per_s = drain_v_per_s
        platform.battery_cutoff_v = cutoff_v
        platform.mains = 0
        self._watch_battery(sim)

    def _watch_battery(self, sim):
        async def watch():
            while sim.platform.mains == 0 and not sim.platform.battery_empty():
                await asyncio.sleep(0.2)
            if sim.platform.mains == 0 and sim.task is not None:
                await sim.power_off()
        self._battery_watch[sim.id] = asyncio.ensure_future(watch())

    def restore_mains(self, device_id):
        """The mains comes back; a board that died meanwhile boots again."""
        sim = self.receivers[device_id]
        watch = self._battery_watch.pop(device_id, None)
        if watch is not None:
            watch.cancel()
        sim.platform.mains = 1
        if sim.task is None:
            sim.power_on()

    def crashed(self):
        """Receivers whose firmware run() ended with an exception."""
        return [sim.id for sim in self if sim.status()["crashed"]]

    async def wait_connected(self, timeout=20.0, ids=None):
        """Wait until every (or the given) receiver's MQTT session is up."""
        ids = list(ids or self.receivers)
        deadline = time.time() + timeout
        while True:
            down = [i for i in ids if self.receivers[i].status()["mqtt"] != "on"]
            if not down:
                return
            if time.time() > deadline:
                raise TimeoutError("not connected after %.0f s: %s" % (timeout, ", ".join(down)))
            await asyncio.sleep(0.05)

    # -- reporting ---------------------------------------------------------------------------

    def status_rows(self):
        return [sim.status() for sim in self]

    def playbacks(self, item=None, bid=None):
        """{device id: [Playback]} of what each receiver played."""
        return {sim.id: sim.sink.playbacks_of(item=item, bid=bid) for sim in self}


def format_status(rows, now=None):
    """A plain-text status table, one line per receiver, for `loaxa sim` and the demo.

    ``rtc_off``/``ppm``: how wrong the board's own clock was made; ``sync``: how far the
    receiver's network time (after time sync) is from true time, in ms."""
    now = now or time.time()
    lines = ["%-8s %-8s %-5s %-4s %-3s %8s %7s %7s %-10s %6s %5s" % (
        "id", "zone", "codec", "link", "mq", "rtc_off", "ppm", "sync", "playing", "played",
        "boots")]
    for r in rows:
        sync = r.get("sync_error_ms")
        lines.append("%-8s %-8s %-5s %-4s %-3s %8.0f %7.1f %7s %-10s %6d %5d%s" % (
            r["id"], r["zone"][:8], r["codec"], r["link"], r["mqtt"], r["offset_ms"],
            r["drift_ppm"], "-" if sync is None else "%+.1f" % sync,
            (r["playing"] or "-")[:10], r["played"], r["boots"],
            "  CRASHED" if r["crashed"] else ""))
    online = sum(1 for r in rows if r["mqtt"] == "on")
    playing = sum(1 for r in rows if r["playing"])
    lines.append("%s  %d receivers, %d online, %d playing" % (
        datetime.fromtimestamp(now, COMMUNE_TZ).strftime("%H:%M:%S"), len(rows), online, playing))
    return "\n".join(lines)
