"""A running fleet with its operator and media server, for tests, the demo and the benchmark.

    async with FleetScenario(broker_address, specs, items=(("tone", 1.0),)) as sc:
        bid = sc.operator.play_at(sc.fleet.ids("thon-1"), sc.items["tone"], at_ms)
        ...

On entry: test media is made and served over HTTP through the head-end's media route, the
receivers start, the operator (planning as the head-end plans) connects, and every receiver has
connected and synced its clock. On exit everything stops.
"""

import asyncio
import os
import shutil
import tempfile
import time

from headend.settings import Settings
from simulator.fleet import Fleet
from simulator.host import flash_root
from simulator.media import MediaServer, make_test_item
from simulator.operator import Operator, OperatorProcess


def percentile(values, p):
    """The p-th percentile (0..100) by nearest rank; None for no values."""
    values = sorted(values)
    if not values:
        return None
    rank = max(0, min(len(values) - 1, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[rank]


def error_stats(values):
    """``{"n", "p50", "p99", "max"}`` of the absolute values (ms), for reports."""
    values = [abs(v) for v in values]
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values) if values else None}


def format_stats(row):
    if not row["n"]:
        return "n=0"
    return "n=%d  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms" % (
        row["n"], row["p50"], row["p99"], row["max"])


class FleetScenario:
    """``broker``: (host, port). ``items``: (id, seconds) test tones to make and serve, or
    (id, seconds, signal) for another test signal (simulator.media.SIGNALS: "chirp").
    ``settle_s``: extra time after every receiver synced, for its clock filter to converge."""

    def __init__(self, broker, specs, site="test", items=(("tone", 1.0),), workdir=None,
                 settle_s=1.0, connect_timeout=30.0, operator_auth=None, keep_bytes=False,
                 config_overrides=None, media_dir=None, seed=0, operator_process=False,
                 runtime="cpython", heap=None, heap_probe=False, heap_check=True):
        self.broker = broker
        self.specs = specs
        self.site = site
        self.item_specs = items
        self.settle_s = settle_s
        self.connect_timeout = connect_timeout
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="loaxa-scenario-", dir=flash_root())
        self.media_dir = media_dir or os.path.join(self.workdir, "media")
        self.operator_auth = operator_auth or (None, None)
        self.operator_process = operator_process  # run the operator in a child process
        self.fleet = Fleet(specs, site=site, broker=broker,
                           workdir=os.path.join(self.workdir, "boards"), keep_bytes=keep_bytes,
                           config_overrides=config_overrides, seed=seed, runtime=runtime,
                           heap=heap, heap_probe=heap_probe, heap_check=heap_check)
        self.server = None
        self.operator = None
        self.items = {}

    async def __aenter__(self):
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    async def start(self):
        self.server = MediaServer().start()
        for item_id, seconds, *signal in self.item_specs:
            self.items[item_id] = self.server.add(make_test_item(
                self.media_dir, item_id, seconds, signal=signal[0] if signal else "tone"))
        user, password = self.operator_auth
        args = (self.site, self.fleet.device_infos(), self.broker[0], self.broker[1])
        # The head-end's configuration, pointing receivers at this media server.
        kwargs = {"username": user, "password": password,
                  "settings": Settings(site_id=self.site, public_base_url=self.server.base_url)}
        if self.operator_process:
            self.operator = OperatorProcess(*args, **kwargs)
        else:
            self.operator = Operator(*args, **kwargs).start()
        await self.fleet.start()
        await self.wait_ready(self.fleet.ids())

    async def wait_ready(self, ids, timeout=None):
        """Every receiver in ``ids`` is connected and has a synced clock."""
        timeout = timeout or self.connect_timeout
        await self.fleet.wait_connected(timeout, ids)
        await self.operator.until(lambda: all(self.synced(i) for i in ids), timeout)
        if self.settle_s:
            await asyncio.sleep(self.settle_s)

    def synced(self, device_id):
        receiver = self.fleet[device_id].receiver
        return receiver is not None and receiver.core.synced

    async def stop(self):
        if self.fleet is not None:
            await self.fleet.stop()
        if self.operator is not None:
            self.operator.close()
        if self.server is not None:
            self.server.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- measurements ----------------------------------------------------------------------

    def start_errors_ms(self, bid, at_ms, ids):
        """{device: true start - at, in ms} for the first playback of ``bid`` on each device."""
        errors = {}
        for device in ids:
            played = self.fleet[device].sink.playbacks_of(bid=bid)
            if played and played[0].started_true is not None:
                errors[device] = played[0].started_true * 1000.0 - at_ms
        return errors

    async def relay_live(self, source, codec, sid, sno, key, play_delay_ms, lose=()):
        """Publish ``source`` (a file played as live: audio/live.py, real ffmpeg, paced) as
        stream ``sid``, frames stamped capture time + ``play_delay_ms``; frames whose seq is in
        ``lose`` never reach the broker. Returns ``{"first": play_at of the first frame, "end":
        when the last one ends, "lost_ms": {seq: duration}}`` (epoch ms)."""
        from audio.live import LiveFramer, stamped_frames
        from protocol.signing import HmacKey
        from protocol.topics import stream_topic

        topic = stream_topic(self.site, sid)
        report = {"lost_ms": {}}
        async with LiveFramer(source, codec=codec) as framer:
            async for frame, packet in stamped_frames(framer, HmacKey(key), sno, play_delay_ms):
                play_at = frame.captured_at_ms + play_delay_ms
                report.setdefault("first", play_at)
                report["end"] = play_at + frame.samples * 1000 // framer.rate
                if frame.seq in lose:
                    report["lost_ms"][frame.seq] = frame.samples * 1000 / framer.rate
                    continue
                self.operator.publish_raw(topic, packet, qos=0)
        return report

    def proof_of_play(self, bid, ids, reason="finished"):
        """Devices in ``ids`` that reported both started and ended(``reason``) for ``bid``."""
        return self.operator.proof_of_play(bid, ids, reason)


def now_ms():
    return time.time() * 1000.0
