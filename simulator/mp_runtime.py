"""Receivers as MicroPython processes: the firmware in the loop, for ``Fleet(runtime="micropython")``.

Each receiver is its own process of the MicroPython that computes like an ESP32
(tools/mpbuild.py: float32, 31-bit small ints, ``-X heapsize=`` of the board), running
simulator/mp_receiver.py: the same firmware/ and protocol/ files that go onto a pole (as
mpy-cross bytecode by default, or source), its own MQTT client over real sockets to the broker,
its own HTTP fetch into its flash folder. Its connections go through this process's
``LinkPath`` (simulator/network.py ``serve``), so cuts, latency and loss apply as for a CPython
receiver.

``MpSimReceiver`` has the face of ``simulator.fleet.SimReceiver`` that tests, the demo and the
benchmark use: ``sink.playbacks`` (``simulator.sink.Playback`` records rebuilt from the
process's reports), ``platform.amp_changes``, ``link``, ``receiver`` (a snapshot: ``core.synced``,
``core.volume``, ``core.counters``, ``stats``, ``mqtt.connected``/``stats``, ``now()``), ``boots``,
``crashes``, ``start``/``stop``/``restart``/``status``. The snapshot is at most
``simulator/mp_receiver.STATUS_MS`` old.
"""

import asyncio
import json
import os
import time

from simulator.network import LinkPath
from simulator.sink import Playback, PlaybackLog
from tools import mpbuild

REPO = str(mpbuild.REPO)
SCRIPT = os.path.join(REPO, "simulator", "mp_receiver.py")
REBOOT_EXIT = 3
REFUSED_EXIT = 4  # simulator/mp_receiver.py: the heap is too small for the receiver
STOP_TIMEOUT_S = 5.0


class RuntimeUnavailable(RuntimeError):
    pass


def device_lib(workdir, mpy=True):
    """protocol/ and firmware/ as the board loads them, once per fleet; the path to put first."""
    if not mpy:
        return REPO
    return str(mpbuild.device_tree(os.path.join(workdir, "device-lib"), mpy=True))


def binary():
    found = mpbuild.esp32_model()
    if found is None:
        raise RuntimeUnavailable("no ESP32-model MicroPython: %s" % mpbuild.skip_reason())
    return str(found)


class _Namespace:
    def __init__(self, **fields):
        self.__dict__.update(fields)


class RemoteCore:
    def __init__(self, status):
        self.synced = bool(status.get("sy"))
        self.volume = status.get("vol")
        self.counters = status.get("cnt") or {}
        self._playing = status.get("play")

    def playing(self):
        return {"bid": self._playing} if self._playing else None


class RemoteReceiver:
    """What the process last said about its firmware (``receiver`` of a SimReceiver)."""

    def __init__(self, status, at):
        self.core = RemoteCore(status)
        self.stats = status.get("stats") or {}
        self.mqtt = _Namespace(connected=bool(status.get("mq")), stats=status.get("mqs") or {})
        self.boot = status.get("boot")
        self.heap = status.get("heap") or {}
        self.sync_error_ms = status.get("se")
        self.at = at

    def now(self):
        """The receiver's network time, from its last reported error against true time."""
        return time.time() * 1000.0 + (self.sync_error_ms or 0)


class RemoteSink(PlaybackLog):
    """The playbacks a MicroPython receiver reported, as ``simulator.sink.Playback`` records."""

    def __init__(self, keep_dir=None):
        self.playbacks = []
        self.current = None
        self.keep_dir = keep_dir
        self._by_number = {}

    def on_report(self, msg):
        kind = msg["k"]
        if kind == "open":
            pb = Playback(msg["codec"], msg["rate"], msg["skip"], msg["t"] / 1e6, msg["local"],
                          msg.get("ctx"))
            pb.number = msg["n"]
            self._by_number[msg["n"]] = pb
            self.playbacks.append(pb)
            self.current = pb
            return
        pb = self._by_number.get(msg.get("n"))
        if pb is None:
            return
        if kind == "start":
            pb.started_true = msg["t"] / 1e6
            pb.started_local = msg["local"]
        elif kind == "gap":
            pb.gaps.append((msg["t"] / 1e6, msg["us"] / 1e6))
        elif kind == "vol":
            pb.volumes.append((msg["t"] / 1e6, msg["v"]))
        elif kind == "end":
            pb.ended_true = msg["t"] / 1e6
            pb.ended_local = msg["local"]
            pb.how = msg["how"]
            pb.bytes = msg["bytes"]
            pb.writes = msg["writes"]
            pb.samples = msg["samples"]
            pb.sha_hex = msg["sha"]
            if self.keep_dir:
                path = os.path.join(self.keep_dir, "play-%d.bin" % pb.number)
                try:
                    with open(path, "rb") as f:
                        pb.data = f.read()
                except OSError:
                    pb.data = None
            if self.current is pb:
                self.current = None

    def process_gone(self):
        """The process ended (killed, crashed, rebooted): what it played was cut short."""
        pb = self.current
        if pb is not None and pb.how is None:
            pb.how = "stopped"
            pb.ended_true = time.time()
        self.current = None

    def stop(self):
        self.process_gone()



SENSORS = ("rssi", "mains", "dc_volts", "temperature_c", "amp_fault")


class RemotePlatform:
    """The board's side as the parent sees it: what the firmware did to it, and its link.

    Its sensors (``SENSORS``, as on ``simulator.host.HostPlatform``) are set like attributes:
    given to the process when it starts, and sent to it at once while it runs.
    """

    def __init__(self, device_id, storage_dir, link, sink):
        object.__setattr__(self, "sensors", {})
        object.__setattr__(self, "send", None)
        self.device_id = device_id
        self.storage_dir = storage_dir
        self.link = link
        self.sink = sink
        self.amp_on = False
        self.amp_changes = []   # (true time s, on)
        self.led_pattern = "off"
        self.led_changes = []
        self.reboots = []

    def __setattr__(self, name, value):
        if name in SENSORS:
            self.sensors[name] = value
            if self.send is not None:
                self.send({"do": "set", name: value})
        object.__setattr__(self, name, value)

    def amplifier(self, on):
        """The parent's view only: a process that is gone leaves its relay off."""
        if bool(on) != self.amp_on:
            self.amp_on = bool(on)
            self.amp_changes.append((time.time(), bool(on)))


class MpSimReceiver:
    """One receiver as a MicroPython process, restarted on the same flash when it reboots."""

    def __init__(self, fleet, spec, storage_dir, heap=mpbuild.HEAP_PSRAM, keep_bytes=False,
                 seed=0, ticks_near_wrap=True, heap_probe=False, heap_check=True):
        self.fleet = fleet
        self.spec = spec
        self.heap = heap
        self.heap_probe = heap_probe  # live-heap peaks (a collection every 100 ms): benchmark
        self.heap_check = heap_check  # False: run in any heap, to measure what it needs
        self.refused = None           # why the process refused to start (its heap)
        self.seed = seed
        self.ticks_near_wrap = ticks_near_wrap
        os.makedirs(storage_dir, exist_ok=True)
        self.link = LinkPath(seed=seed)
        self.sink = RemoteSink(storage_dir if keep_bytes else None)
        self.platform = RemotePlatform(spec.id, storage_dir, self.link, self.sink)
        self.platform.send = self.send
        self.keep_bytes = keep_bytes
        self.receiver = None
        self.process = None
        self.task = None
        self.boots = 0
        self.crashes = []          # exit codes and the last lines of output of crashed runs
        self.boot_report = None    # the process's heap after boot
        self.heap_reports = []
        self.output = []           # lines that were not reports (tracebacks, prints)
        self.reset_on_crash = False  # a firmware crash resets the board (board/main.py)
        self.boot_crashes = []     # what each such crash said
        self._stopping = False

    @property
    def id(self):
        return self.spec.id

    def _settings(self, relay_port):
        return {"firmware": self.fleet.receiver_config(self.spec),
                "sim": {"id": self.spec.id, "storage_dir": self.platform.storage_dir,
                        "offset_ms": self.spec.offset_ms, "drift_ppm": self.spec.drift_ppm,
                        "codecs": [self.spec.codec], "relay_port": relay_port,
                        "keep_bytes": self.keep_bytes, "seed": self.seed,
                        "ticks_near_wrap": self.ticks_near_wrap, "link_type": "wifi",
                        "sensors": self.platform.sensors, "heap_probe": self.heap_probe,
                        "heap_check": self.heap_check, "reset_on_crash": self.reset_on_crash}}

    async def start(self):
        port = await self.link.serve()
        path = os.path.join(self.platform.storage_dir, "sim-settings.json")
        with open(path, "w") as f:
            json.dump(self._settings(port), f)
        env = dict(os.environ, MICROPYPATH=":".join([".frozen", self.fleet.device_lib, REPO]))
        self.process = await asyncio.create_subprocess_exec(
            binary(), "-X", "heapsize=" + self.heap, SCRIPT, path, cwd=REPO, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        self.boots += 1
        self._stopping = False
        self.task = asyncio.ensure_future(self._read(self.process))

    async def _read(self, process):
        while True:
            line = await process.stdout.readline()
            if not line:
                break
            self._on_line(line.decode("utf-8", "replace").rstrip("\n"))
        code = await process.wait()
        self.sink.process_gone()
        self.platform.amplifier(False)
        self.receiver = None
        if code == REBOOT_EXIT and not self._stopping:
            self.platform.reboots.append(time.time())
            await self.start()
        elif code != 0 and not self._stopping:
            self.crashes.append((code, self.output[-20:]))

    def _on_line(self, line):
        if not line.startswith("@"):
            self.output.append(line)
            del self.output[:-200]
            return
        try:
            msg = json.loads(line[1:])
        except ValueError:
            self.output.append(line)
            return
        kind = msg.get("k")
        if kind == "st":
            self.receiver = RemoteReceiver(msg, time.time())
        elif kind == "amp":
            self.platform.amp_on = msg["on"]
            self.platform.amp_changes.append((msg["t"] / 1e6, msg["on"]))
        elif kind == "led":
            self.platform.led_pattern = msg["p"]
            self.platform.led_changes.append((msg["t"] / 1e6, msg["p"]))
        elif kind == "boot":
            self.boot_report = msg
        elif kind == "refused":
            self.refused = msg["reason"]
        elif kind == "crash":
            self.boot_crashes.append(msg["error"])
        elif kind == "heap":
            self.heap_reports.append(msg)
        elif kind != "reboot":
            self.sink.on_report(msg)

    def send(self, command):
        process = self.process
        if process is not None and process.returncode is None:
            process.stdin.write((json.dumps(command) + "\n").encode())

    async def stop(self):
        process, task = self.process, self.task
        if process is None:
            return
        self._stopping = True
        if process.returncode is None:
            self.send({"do": "stop"})
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await self.link.close()
        self.process = None
        self.task = None
        self.receiver = None

    async def kill(self):
        """Power cut: the process dies at once, nothing flushed."""
        if self.process is not None and self.process.returncode is None:
            self._stopping = True
            self.process.kill()
            await self.process.wait()
            await asyncio.gather(self.task, return_exceptions=True)

    async def restart(self):
        await self.stop()
        await self.start()

    def status(self):
        receiver = self.receiver
        playing = self.sink.current
        done = self.process is None or self.process.returncode is not None
        return {
            "id": self.id, "zone": self.spec.zone, "codec": self.spec.codec,
            "link": "up" if self.link.up else "CUT",
            "mqtt": "on" if receiver is not None and receiver.mqtt.connected else "off",
            "offset_ms": self.spec.offset_ms, "drift_ppm": self.spec.drift_ppm,
            "sync_error_ms": receiver.sync_error_ms if receiver is not None else None,
            "playing": (playing.item or "?") if playing is not None else "",
            "played": len(self.sink.playbacks), "boots": self.boots,
            "crashed": bool(self.crashes) or (done and not self._stopping),
        }
