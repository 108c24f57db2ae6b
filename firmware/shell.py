"""The receiver's asyncio shell: the core (firmware/core.py) wired to a board and a broker.

``Receiver(config, platform)`` with ``await run()`` and ``await shutdown()``. Runs unchanged on
an ESP32 (board/main.py with firmware.hw.esp32.Esp32Platform) and in the simulator (CPython,
many receivers in one process: no module-level state here).

Tasks, each small and each never letting an exception out:
- link: ``platform.link_up()`` (retried), then the MQTT client's ``run()`` (reconnects itself);
- scheduler: ``core.tick`` at each due time (and every ``_SCHED_POLL_MS``; woken at once
  when a command, fetch or clock sample changes what is due), switches the amplifier relay on
  ``amp_settle_ms`` before a start and off when idle; a scheduled start is handed to the
  player ``_START_LEAD_MS`` early;
- player: one task per START action (media from the cache, or live frames from the jitter
  buffer) feeding ``platform.sink``: it prepares, waits for the exact start by the synced
  clock, measures how late it is and skips that much audio (whole blocks/frames by seeking,
  the rest as ``skip_samples``); tells the core when it finished or failed. Audio goes first:
  in a batch of actions with a START, the flash writes (events, state) follow the player;
- fetcher: HTTP downloads into the cache (Range resume, sha256 check, eviction);
- outbox: events from flash to ``.../evt`` with QoS 1, in seq order, trimmed on PUBACK;
- time sync: a burst of ``timesync_burst`` requests at each connect, then one per
  ``timesync_s``; signed replies checked and matched by t0;
- heartbeat: compact telemetry on ``.../hb`` every ``heartbeat_s``;
- watchdog: feeds ``platform.feed_watchdog`` while the event loop is alive.

Anything a peer sends (any topic) goes through ``_on_message``, which counts and drops what it
cannot use and never raises.

Heartbeat (QoS 1 on ``.../hb``: its PUBACK doubles as the keepalive answer), keys short because 4G is paid per byte; keys with a default
value (0/null) are left out::

    v 1 · boot, conn session counters · up uptime s · heap free bytes · ln link type ·
    rssi dBm · mains 1/0 and dc volts (left out only when unknown) · amp relay 1/0 ·
    af amplifier fault 1 · vol default volume ·
    cu cache used bytes · off clock offset ms (network - local) · sy 1 when synced ·
    play bid playing · rej rejected commands · mal malformed messages · temp MCU °C

Bytes per day, 4G (budget 1 MB/day of telemetry), measured by ``bench/bench_link_bytes.py``
(docs/benchmarks.md): a heartbeat is ~150 B of JSON plus ~40 B of MQTT header and topic, and
its 4-byte PUBACK comes back; time sync costs ~233 B per exchange, one per 300 s after the
connect burst; events are a few dozen a day. At the MQTT level that is ~0.65 MB/day at the
default 30 s heartbeat and ~0.37 MB/day at 60 s. On the wire every packet also carries ~40 B of
TCP/IP (and ~29 B of TLS), so packets matter as much as bytes: the MQTT client sends no ping
while heartbeats and their PUBACKs flow, and on a ``ppp`` (4G) link ``heartbeat_s`` and
``keepalive_s`` 60 keep the total under the budget.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

from firmware import FIRMWARE_VERSION
from firmware import config as configuration
from firmware import core as C
from firmware.cache import MediaCache
from firmware.clock import ClockEstimator, TickExtender
from firmware.http import HttpError, download, sha256_hex
from firmware.mp3 import MAX_FRAME_BYTES, FrameReader
from firmware.schedule import KIND_STREAM
from firmware.store import Outbox, StateFile, makedirs, remove
from protocol import messages as M
from protocol import topics as T
from protocol.errors import ProtocolError
from protocol.media import ADPCM_BLOCK_BYTES, adpcm_samples_per_block
from protocol.signing import key_from_hex

DEFAULT_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
_SCHED_POLL_MS = 1000     # the scheduler's longest sleep; anything that changes the schedule
                          # wakes it at once (``_wake_scheduler``)
_STREAM_POLL_MS = 20      # the stream player's longest sleep while its buffer is empty
_WATCHDOG_MS = 5000       # feed period; the ESP32 watchdog bites after 30 s
_BURST_GAP_MS = 250       # between the time-sync requests of a burst
_BURST_SPREAD_MS = 1000   # random delay before a burst: a fleet reconnecting together
                          # (broker restart) does not sync in lockstep through a busy broker
_REFINE_MS = 60000        # after a burst, one exchange every _REFINE_PERIOD_MS for this long:
_REFINE_PERIOD_MS = 5000  # a quieter moment gives a faster exchange (12 x 250 B per connect)
_UNSYNCED_RETRY_MS = 5000  # time-sync period until the first reply came
_SYNC_POLL_MS = 2000      # how soon a reconnect's burst follows the connect, at most
_START_LEAD_MS = 250      # a scheduled item is handed to the player this long before its
                          # start: the player prepares (file, seek, relay) and then waits for
                          # the exact moment, so the first sample goes out with nothing but a
                          # timer between it and the clock, however busy the loop is
_FETCH_ATTEMPTS = 3
_LINK_RETRY_MS = 5000
_REBOOT_FLUSH_MS = 5000   # how long a reboot waits for the outbox to empty
_IO_BYTES = 2048          # file read and HTTP chunk; a multiple of the 256-byte ADPCM block
_RTC_TRUST_MS = 30 * 86400000  # an RTC this far past the last sync is garbage, not time kept


async def sleep_ms(ms):
    await asyncio.sleep(ms / 1000 if ms > 0 else 0)


def _default_mqtt(receiver, cfg, will):
    from firmware.mqtt import MQTTClient

    broker = cfg["broker"]
    p = receiver.platform
    return MQTTClient(
        cfg["device"], broker["host"], broker["port"], open_connection=p.open_connection,
        ticks_ms=p.ticks_ms, ticks_diff=p.ticks_diff, user=broker.get("user"),
        password=broker.get("password"), keepalive=cfg["keepalive_s"], will=will,
        ssl=True if broker.get("tls") else None, on_message=receiver._on_message,
        on_connect=receiver._on_connect, on_disconnect=receiver._on_disconnect,
        random_below=p.random_below)


class Receiver:
    """One receiver. ``config``: a dict (defaults filled in from firmware.config.DEFAULTS).

    For the simulator and tests: ``core`` (ReceiverCore), ``clock`` (ClockEstimator),
    ``mqtt`` (MQTTClient), ``cache`` (MediaCache), ``outbox`` (Outbox), ``stats`` (dict),
    ``playing`` (the core's summary of what plays, or None), ``playing_item`` (the
    schedule.Item the player task is playing), ``now()`` (network ms), ``local_ms()``,
    ``heartbeat()`` (the payload bytes), ``boot`` (boot count).
    ``mqtt_factory(receiver, config, will)`` replaces the MQTT client in unit tests.
    """

    def __init__(self, config, platform, mqtt_factory=None):
        cfg = configuration.validate(configuration.merge(configuration.DEFAULTS, config))
        self.config = cfg
        self.platform = platform
        self.sink = platform.sink
        self.device = cfg["device"]
        self.site = cfg["site"]
        self._key = key_from_hex(cfg["key"])
        storage = platform.storage_dir
        makedirs(storage)
        self.ticks = TickExtender(platform.ticks_ms, platform.ticks_diff)
        self._started_local = self.ticks.now()
        self.clock = ClockEstimator()
        self.clock.seed(self._started_local, platform.rtc_ms())
        self._state_file = StateFile(storage + "/state.json")
        saved = self._state_file.load()
        self.boot = saved.get("boot", 0) + 1
        self.outbox = Outbox(storage + "/outbox.jsonl")
        core_state = saved.get("core") or {}
        # A power cut between an event's append and the state write must not reuse its seq.
        if self.outbox.last_seq() > core_state.get("seq", 0):
            core_state["seq"] = self.outbox.last_seq()
        self.core = C.ReceiverCore(
            self.device, self.site, self._key, codecs=tuple(self.sink.codecs),
            volume=cfg["volume"], emergency_volume=cfg["emergency_volume"], state=core_state,
            jitter_slots=cfg["jitter_slots"], jitter_slot_bytes=cfg["jitter_slot_bytes"])
        self.cache = MediaCache(storage + "/cache", cfg["cache_bytes"])
        self.core.set_cached(self.cache.shas())
        # Wall time before the first sync of this boot: only from an RTC that kept time. The
        # ESP32's RTC runs on across a watchdog or software reset (the shell sets it at every
        # sync) but restarts at 2000-01-01 after a power cut: it is trusted only when it reads
        # later than the last sync this flash remembers, so a receiver that reset while its
        # link was down still plays its schedule on time, and one that lost power waits.
        self._synced_ms = saved.get("synced_ms", 0)   # network time of a past sync (a floor)
        self._sync_saved = False
        rtc = platform.rtc_ms()
        if self._synced_ms and 0 <= rtc - self._synced_ms <= _RTC_TRUST_MS:
            self.core.set_synced(self.now())
        self._save_state(self.core.export_state())  # the boot count, at once
        self._stats = {"rx": 0, "errors": 0, "time_samples": 0, "fetches": 0,
                       "fetch_errors": 0, "events_sent": 0, "link_failures": 0}
        self._t_cmd = T.device_topic(self.site, self.device, T.CMD)
        self._t_time = T.device_topic(self.site, self.device, T.TIME)
        self._t_status = T.device_topic(self.site, self.device, T.STATUS)
        self._t_hb = T.device_topic(self.site, self.device, T.HEARTBEAT)
        self._t_evt = T.device_topic(self.site, self.device, T.EVENT)
        self._t_treq = T.device_topic(self.site, self.device, T.TIME_REQUEST)
        self._stream_prefix = T.stream_topic(self.site, "x")[:-1]
        self._conn = 0                # connections of this boot (the current one)
        self._online = False
        self._running = False
        self._stopped = asyncio.Event()
        self._tasks = []
        self._background = []
        self._scheduler = None        # the scheduler task, and whether it sleeps
        self._scheduler_sleeping = False
        self._player = None           # the player task
        self.playing_item = None      # the Item the player task plays
        self._amp_on = False
        self._amp_since = 0
        self._identify_until = 0
        self._treq_pending = []       # t0 of time requests awaiting a reply
        self._sync_burst = False
        self._refine_until = 0
        self._outbox_wake = asyncio.Event()
        self._fetch_wake = asyncio.Event()
        self._fetch_queue = []
        self._play_buf = bytearray(max(_IO_BYTES, MAX_FRAME_BYTES))
        self._fetch_buf = bytearray(_IO_BYTES)
        self.mqtt = (mqtt_factory or _default_mqtt)(self, cfg, self._will(1))

    # -- time ----------------------------------------------------------------------------

    def local_ms(self):
        return self.ticks.now()

    def now(self):
        """Network time (ms since the epoch by the head-end's clock), as this receiver knows it."""
        return self.clock.network_ms(self.ticks.now())

    # -- state, stats --------------------------------------------------------------------

    @property
    def stats(self):
        out = dict(self.core.counters)
        out.update(self._stats)
        out["outbox"] = len(self.outbox)
        out["outbox_dropped"] = self.outbox.dropped
        return out

    @property
    def playing(self):
        return self.core.playing()

    def _save_state(self, core_state):
        try:
            self._state_file.save({"boot": self.boot, "core": core_state,
                                   "synced_ms": self._synced_ms})
        except OSError:
            self._stats["errors"] += 1

    def _will(self, conn):
        return (self._t_status, M.death(self.device, self.boot, conn), 1, True)

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self):
        """Run until ``shutdown()``."""
        self._running = True
        self._stopped.clear()
        self.platform.led("slow")
        # Remembered by the client and (re)sent on every connect.
        await self.mqtt.subscribe(self._t_cmd, 1)
        await self.mqtt.subscribe(self._t_time, 0)
        self._scheduler = asyncio.create_task(self._scheduler_loop())
        self._tasks.append(self._scheduler)
        for coro in (self._watchdog_loop(), self._link_loop(), self._outbox_loop(),
                     self._fetch_loop(), self._timesync_loop(), self._heartbeat_loop()):
            self._tasks.append(asyncio.create_task(coro))
        await self._stopped.wait()

    async def _go_quiet_and_offline(self):
        """Stop the player, switch the amplifier off and close the MQTT link (errors ignored:
        the receiver is going down either way)."""
        self._stop_player()
        self._set_amp(False)
        try:
            await self.mqtt.close()
        except Exception:
            pass

    async def shutdown(self):
        """Stop everything: the player, the tasks, a clean MQTT disconnect."""
        self._running = False
        await self._go_quiet_and_offline()
        for task in self._tasks + self._background:
            task.cancel()
        self._tasks = []
        self._background = []
        self.outbox.close()
        self._stopped.set()

    def _spawn(self, coro):
        self._background = [t for t in self._background if not t.done()]
        task = asyncio.create_task(coro)
        self._background.append(task)
        return task

    async def _link_loop(self):
        while self._running:
            try:
                await self.platform.link_up()
                break
            except Exception:
                self._stats["link_failures"] += 1
                await sleep_ms(_LINK_RETRY_MS)
        await self.mqtt.run()

    async def _watchdog_loop(self):
        while self._running:
            self.platform.feed_watchdog()
            await sleep_ms(_WATCHDOG_MS)

    # -- MQTT callbacks ------------------------------------------------------------------

    async def _on_connect(self):
        self._conn += 1
        caps = {"codecs": list(self.sink.codecs), "sink": self.sink.name,
                "cache_free": self.cache.free(), "cache_total": self.cache.capacity,
                "rates": list(getattr(self.sink, "rates", DEFAULT_RATES)),
                # the head-end's offline threshold follows each receiver's heartbeat period
                "hb": self.config["heartbeat_s"]}
        link = (self.platform.link_info() or {}).get("type") or self.config["link"]["type"]
        birth = M.birth(self.device, self.boot, self._conn, FIRMWARE_VERSION, caps, link)
        await self.mqtt.publish(self._t_status, birth, 1, True)
        self.mqtt.will = self._will(self._conn + 1)  # for the next connection
        self._online = True
        self._sync_burst = True
        self._outbox_wake.set()
        self._led_idle()

    def _on_disconnect(self, reason):
        self._online = False
        self._led_idle()

    def _on_message(self, topic, payload, retained):
        """Every message from the broker. Never raises: bad input is counted and dropped."""
        try:
            self._stats["rx"] += 1
            if topic == self._t_cmd:
                self._apply(self.core.on_command(payload, self.now()))
            elif topic == self._t_time:
                self._on_time(payload)
            elif topic.startswith(self._stream_prefix):
                self.core.on_frame(topic[len(self._stream_prefix):], payload, self.now())
            else:
                self.core.count("malformed")
        except Exception:
            self._stats["errors"] += 1

    def _on_time(self, payload):
        try:
            t0, t1, t2 = M.open_time_reply(self._key, payload, self.device)
        except ProtocolError as e:
            self.core.count("malformed" if e.reason in ("malformed", "bad-field") else
                            "bad_time")
            return
        if t0 not in self._treq_pending:
            self.core.count("time_unmatched")
            return
        self._treq_pending.remove(t0)
        if self.clock.add_sample(t0, t1, t2, self.local_ms()):
            self._stats["time_samples"] += 1
            self._wake_scheduler()  # local times of what is scheduled moved
            now = self.now()
            self.platform.set_rtc_ms(now)  # so a reset without a power cut restarts on time
            if not self._sync_saved:  # once per boot: the floor an RTC must read to be trusted
                self._sync_saved = True
                self._synced_ms = now
                self._save_state(self.core.export_state())
            if not self.core.synced:
                self._apply(self.core.set_synced(now))

    # -- actions -------------------------------------------------------------------------

    def _apply(self, acts):
        if not acts:
            return
        self._wake_scheduler()  # the schedule may have changed: recompute its next wake-up
        starts = False
        for act in acts:
            if act[0] == C.START:
                starts = True
        if not starts:
            self._apply_now(acts)
            return
        # Audio first: stop/start/volume now, the flash writes and the rest once the player
        # has written its first samples (a task queued after the player's). When many
        # receivers share a process (the simulator) or the flash is slow, the start stays on
        # time.
        later = []
        for act in acts:
            if act[0] in (C.START, C.STOP, C.VOLUME):
                self._apply_now((act,))
            else:
                later.append(act)
        if later:
            self._spawn(self._apply_later(later))

    async def _apply_later(self, acts):
        self._apply_now(acts)

    def _apply_now(self, acts):
        for act in acts:
            kind = act[0]
            if kind == C.EVENT:
                try:
                    self.outbox.append(act[1])
                except OSError:
                    self._stats["errors"] += 1
                self._outbox_wake.set()
            elif kind == C.PERSIST:
                self._save_state(act[1])
            elif kind == C.START:
                self._start_player(act[1], act[2], act[3])
            elif kind == C.STOP:
                if self.playing_item is act[1]:
                    self._stop_player()
            elif kind == C.FETCH:
                self._queue_fetch(act[1])
            elif kind == C.VOLUME:
                self.sink.set_volume(act[1])
            elif kind == C.SUBSCRIBE:
                self._spawn(self.mqtt.subscribe(act[1], 0))
            elif kind == C.UNSUBSCRIBE:
                self._spawn(self.mqtt.unsubscribe(act[1]))
            elif kind == C.IDENTIFY:
                self._spawn(self._identify(act[1]))
            elif kind == C.REBOOT:
                self._spawn(self._reboot())
        self._amp_off_if_idle(self.now())

    async def _identify(self, secs):
        self._identify_until = self.local_ms() + secs * 1000
        self.platform.led("fast")
        await sleep_ms(secs * 1000)
        if self.local_ms() >= self._identify_until:
            self._led_idle()

    def _led_idle(self):
        if self.local_ms() < self._identify_until:
            return
        if self.playing_item is not None:
            self.platform.led("play")
        else:
            self.platform.led("on" if self._online else "slow")

    async def _reboot(self):
        """Reboot after the ack is out: wait for the outbox, say goodbye, reset."""
        waited = 0
        while len(self.outbox) and waited < _REBOOT_FLUSH_MS:
            await sleep_ms(100)
            waited += 100
        # A clean DISCONNECT suppresses the will: publish the death ourselves.
        await self.mqtt.publish(self._t_status, M.death(self.device, self.boot, self._conn),
                                1, True, 2000)
        await self._go_quiet_and_offline()
        self.outbox.close()
        self.platform.reboot()

    # -- amplifier -----------------------------------------------------------------------

    def _set_amp(self, on):
        if on != self._amp_on:
            self.platform.amplifier(on)
            self._amp_on = on
            self._amp_since = self.local_ms()

    def _amp_off_if_idle(self, now):
        """Relay off when nothing plays and nothing starts within the settle time."""
        if not self._amp_on or self.playing_item is not None:
            return
        start = self.core.schedule.next_start(now)
        if start is None or start - now > self.config["amp_settle_ms"]:
            self._set_amp(False)

    async def _amp_ready(self):
        """Relay on, and wait until it has settled (no thump in the first words)."""
        self._set_amp(True)
        wait = self.config["amp_settle_ms"] - (self.local_ms() - self._amp_since)
        if wait > 0:
            await sleep_ms(wait)

    # -- scheduler -----------------------------------------------------------------------

    def _wake_scheduler(self):
        if self._scheduler_sleeping:
            self._scheduler_sleeping = False
            self._scheduler.cancel()

    async def _scheduler_loop(self):
        settle = self.config["amp_settle_ms"]
        while self._running:
            try:
                now = self.now()
                start = self.core.schedule.next_start(now)
                if start is not None and start - now <= _START_LEAD_MS:
                    # The core's clock runs ahead by < _START_LEAD_MS: what starts at
                    # ``start`` is decided now; the player waits for ``start`` itself.
                    self._apply(self.core.tick(start))
                else:
                    self._apply(self.core.tick(now))
                due = self.core.next_due(now)
                start = self.core.schedule.next_start(now)
                if start is not None and start - now <= settle:
                    self._set_amp(True)  # the relay settles before the first sample
                else:
                    self._amp_off_if_idle(now)
                wait = _SCHED_POLL_MS
                for t in (due, None if start is None else start - settle):
                    if t is not None and t - now < wait:
                        wait = max(1, t - now)
            except Exception:
                self._stats["errors"] += 1
                wait = _SCHED_POLL_MS
            self._scheduler_sleeping = True
            try:
                await sleep_ms(wait)
            except asyncio.CancelledError:
                if not self._running:
                    raise
            self._scheduler_sleeping = False

    # -- players -------------------------------------------------------------------------

    def _start_player(self, item, skip_ms, volume):
        self._stop_player()
        self.playing_item = item
        if item.kind == KIND_STREAM:
            self._player = asyncio.create_task(self._play_stream(item, volume))
        else:
            self._player = asyncio.create_task(self._play_media(item, skip_ms, volume))
        self._led_idle()

    def _stop_player(self):
        player = self._player
        self._player = None
        if self.playing_item is not None:
            self.playing_item = None
            self.sink.stop()
        if player is not None and not player.done():
            player.cancel()
        self._led_idle()

    def _player_done(self, item, error):
        """The player task ends by itself: tell the core (which may start the next item)."""
        if self.playing_item is not item:
            return
        self.playing_item = None
        self._player = None
        now = self.now()
        self._apply(self.core.failed(item, now, error) if error else self.core.finished(item, now))
        self._led_idle()

    async def _play_media(self, item, skip_ms, volume):
        args = item.args
        codec = args["codec"]
        rate = args["rate"]
        path = self.cache.path(item.sha)
        if path is None:
            self._player_done(item, C.DETAIL_NOT_CACHED)
            return
        try:
            with open(path, "rb") as f:
                reader = FrameReader(f, self._play_buf) if codec == "mp3" else None
                await self._amp_ready()
                if item.at is not None and not item.waited:
                    wait = self.clock.local_ms(item.at) - self.local_ms()
                    if wait > 0:
                        await sleep_ms(wait)
                    # Measured at the last moment: sample-accurate in step with the
                    # neighbours however late this receiver got here.
                    skip_ms = max(0, self.now() - item.at)
                skip = skip_ms * rate // 1000
                if reader is not None:
                    await self._stream_mp3(reader, skip, rate, volume)
                else:
                    await self._stream_adpcm(f, skip, rate, volume,
                                             args.get("block", ADPCM_BLOCK_BYTES))
                await self.sink.drain()
                self.sink.close()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._player_done(item, "player: %s" % type(e).__name__)
            return
        self._player_done(item, None)

    async def _stream_mp3(self, reader, skip, rate, volume):
        remainder = reader.skip_samples(skip)
        self.sink.set_volume(volume)
        self.sink.open("mp3", rate, remainder)
        while True:
            frames = reader.read_frames()
            if frames is None:
                return
            await self.sink.write(frames)

    async def _stream_adpcm(self, f, skip, rate, volume, block):
        per_block = adpcm_samples_per_block(block)
        blocks = skip // per_block
        f.seek(blocks * block)
        self.sink.set_volume(volume)
        self.sink.open("adpcm", rate, skip - blocks * per_block)
        view = memoryview(self._play_buf)
        chunk = (len(self._play_buf) // block) * block
        while True:
            n = f.readinto(view[:chunk])
            if not n:
                return
            await self.sink.write(view[:n])

    async def _play_stream(self, item, volume):
        info = item.stream
        jitter = self.core.jitter
        opened = False
        try:
            await self._amp_ready()
            while self.playing_item is item:
                now = self.now()
                frame = jitter.pop(now)
                if frame is None:
                    nxt = jitter.next_play_at()
                    wait = _STREAM_POLL_MS if nxt is None else min(_STREAM_POLL_MS, nxt - now)
                    await sleep_ms(max(1, wait))
                    continue
                if not opened:
                    self.sink.set_volume(volume)
                    self.sink.open(info.codec, info.rate, 0)
                    opened = True
                await self.sink.write(frame.payload)
                if frame.last:
                    await self.sink.drain()
                    self.sink.close()
                    self._player_done(item, None)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._player_done(item, "player: %s" % type(e).__name__)

    # -- media fetch ---------------------------------------------------------------------

    def _queue_fetch(self, media):
        for queued in self._fetch_queue:
            if queued["sha"] == media["sha"]:
                return
        self._fetch_queue.append(media)
        self._fetch_wake.set()

    async def _fetch_loop(self):
        while self._running:
            self._fetch_wake.clear()
            if not self._fetch_queue:
                await self._fetch_wake.wait()
                continue
            media = self._fetch_queue[0]
            try:
                error = await self._fetch(media)
            except Exception as e:
                error = "fetch: %s" % type(e).__name__
            self._fetch_queue.pop(0)
            self._stats["fetches"] += 1
            now = self.now()
            if error:
                self._stats["fetch_errors"] += 1
                self._apply(self.core.media_failed(media["sha"], now, error))
            else:
                self._apply(self.core.media_ready(media["sha"], now))

    async def _fetch(self, media):
        """Download one item into the cache; return None or a short error for the event."""
        sha = media["sha"]
        if self.cache.has(sha):
            return None
        evicted = self.cache.make_room(media["size"], self.core.needed_media())
        if evicted is None:
            return "cache-full"
        for old in evicted:
            self.core.media_evicted(old)
        part = self.cache.part_path(sha)
        error = None
        for attempt in range(_FETCH_ATTEMPTS):
            if attempt:
                await sleep_ms(2000 * attempt)
            try:
                await download(self.platform.open_connection, media["url"], part, media["size"],
                               _IO_BYTES)
            except HttpError as e:
                error = str(e)
                continue
            except OSError:
                error = "connect failed"  # never the URL: it may carry a token
                continue
            if await sha256_hex(part, self._fetch_buf) != sha:
                remove(part)
                error = "sha mismatch"
                continue
            self.cache.add(sha, media["size"], media["codec"])
            return None
        return error

    # -- outbox --------------------------------------------------------------------------

    async def _outbox_loop(self):
        while self._running:
            if not self.mqtt.connected:
                await self.mqtt.wait_connected()
                continue
            self._outbox_wake.clear()
            entry = self.outbox.peek()
            if entry is None:
                await self._outbox_wake.wait()
                continue
            if await self.mqtt.publish(self._t_evt, entry[1], 1):
                self.outbox.acked(entry[0])
                self._stats["events_sent"] += 1
            else:
                await sleep_ms(1000)

    # -- time sync -----------------------------------------------------------------------

    async def _send_time_request(self):
        t0 = self.local_ms()
        self._treq_pending.append(t0)
        if len(self._treq_pending) > 16:
            self._treq_pending.pop(0)
        await self.mqtt.publish(self._t_treq, M.time_request(t0), 0)

    async def _timesync_loop(self):
        while self._running:
            if not self.mqtt.connected:
                await self.mqtt.wait_connected()
                continue
            if self._sync_burst:
                self._sync_burst = False
                await sleep_ms(self.platform.random_below(_BURST_SPREAD_MS))
                for _ in range(self.config["timesync_burst"]):
                    await self._send_time_request()
                    await sleep_ms(_BURST_GAP_MS)
                self._refine_until = self.local_ms() + _REFINE_MS
            else:
                await self._send_time_request()
            period = self.config["timesync_s"] * 1000
            if not self.clock.synced:
                period = _UNSYNCED_RETRY_MS
            elif self.local_ms() < self._refine_until:
                period = _REFINE_PERIOD_MS + self.platform.random_below(_REFINE_PERIOD_MS // 5)
            waited = 0
            while self._running and waited < period and not self._sync_burst:
                step = min(_SYNC_POLL_MS, period - waited)
                await sleep_ms(step)
                waited += step

    # -- heartbeat -----------------------------------------------------------------------

    def heartbeat(self):
        """The heartbeat payload (bytes); fields in the module docstring."""
        p = self.platform
        local = self.local_ms()
        supply = p.supply() or {}
        msg = {"v": 1, "boot": self.boot, "conn": self._conn,
               "up": (local - self._started_local) // 1000, "heap": p.mem_free(),
               "vol": self.core.volume, "cu": self.cache.used(),
               "off": int(self.clock.offset_ms(local)), "amp": 1 if self._amp_on else 0}
        for name in ("mains", "dc"):  # 0 matters here (on battery): only None is left out
            if supply.get(name) is not None:
                msg[name] = supply[name]
        link = p.link_info() or {}
        optional = (("ln", link.get("type")), ("rssi", link.get("rssi")),
                    ("af", 1 if p.amplifier_fault() else 0),
                    ("sy", 1 if self.clock.synced else 0),
                    ("play", self.core.current.bid if self.core.current is not None else None),
                    ("rej", self.core.counters["rejected"]),
                    ("mal", self.core.counters["malformed"]), ("temp", p.temperature()))
        for name, value in optional:
            if value:
                msg[name] = round(value, 2) if isinstance(value, float) else value
        return M.encode(msg)

    async def _heartbeat_loop(self):
        while self._running:
            await sleep_ms(self.config["heartbeat_s"] * 1000)
            try:
                if self.mqtt.connected:
                    # QoS 1: the PUBACK is the broker's sign of life, so an idle link needs no
                    # PINGREQ/PINGRESP on top (firmware/mqtt.py, _keepalive_loop).
                    await self.mqtt.publish(self._t_hb, self.heartbeat(), 1)
            except Exception:
                self._stats["errors"] += 1
