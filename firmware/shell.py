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
- watchdog: feeds ``platform.feed_watchdog`` while the event loop is alive;
- recovery (firmware/recovery.py): after ``STABLE_MS`` the boot counts as stable (its crash-loop
  count goes back to 0); after ``offline_reboot_min`` without the broker, with nothing playing
  or about to start, the state goes to flash and the board reboots.

Flash (firmware/store.py, firmware/cache.py): every command's counter is in flash before the
command acts (``_before_command``), so a failed write refuses the command ("storage",
"no-space") instead of reopening the replay window; the state is read back from whichever copy
survived (the replay counter from the highest of them). A full flash (ENOSPC) is reported as
"no-space" and the cache gives space back. Three boots in a row that crash before they are
stable bring up safe mode: connected and reporting, no saved schedule, no fetcher, no player.

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
from firmware.platform import RESET_CAUSES, SinkError
from firmware.recovery import (
    CRASH_LOOP_BOOTS,
    MEDIA_COMMANDS,
    REFUSED_NO_SPACE,
    REFUSED_SAFE_MODE,
    REFUSED_STORAGE,
    SAFE_CRASH_LOOP,
    STABLE_MS,
    DurableGuard,
    crashes_before,
    highest,
)
from firmware.schedule import KIND_STREAM
from firmware.store import Outbox, StateFile, fs_space, is_no_space, makedirs, remove
from protocol import messages as M
from protocol import topics as T
from protocol.errors import ProtocolError
from protocol.media import ADPCM_BLOCK_BYTES, adpcm_samples_per_block
from protocol.signing import key_from_hex

DEFAULT_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
_SCHED_POLL_MS = 1000     # the scheduler's longest sleep; anything that changes the schedule
                          # wakes it at once (``_wake_scheduler``)
_STREAM_POLL_MS = 20      # the stream player's longest sleep while its buffer is empty
_ANCHOR_MS = 1000         # how often the stream player re-reads the clock (drift, new syncs)
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
_RECOVERY_POLL_MS = 5000  # how often the recovery task looks at uptime and the link
_MINUTE_MS = 60000        # the unit of offline_reboot_min
_REBOOT_QUIET_MS = 120000  # an offline reboot waits while something starts sooner than this
REBOOT_COMMAND = "command"  # why the firmware rebooted itself (the next birth's "rebooted")
REBOOT_OFFLINE = "offline"


if hasattr(asyncio, "sleep_ms"):
    # MicroPython's: an int argument and a singleton generator, so a sleep allocates nothing
    # (``ms / 1000`` would box a float on the board, in the audio loop above all).
    sleep_ms = asyncio.sleep_ms
else:
    async def sleep_ms(ms):
        await asyncio.sleep(ms / 1000 if ms > 0 else 0)


def _reset_cause(platform):
    """``platform.reset_cause()``, "unknown" for a board that cannot tell (or says nonsense)."""
    read = getattr(platform, "reset_cause", None)
    try:
        cause = read() if read is not None else "unknown"
    except Exception:
        cause = "unknown"
    return cause if cause in RESET_CAUSES else "unknown"


def _default_mqtt(receiver, cfg, will):
    from firmware.mqtt import MQTTClient

    broker = cfg["broker"]
    p = receiver.platform
    context = server_name = None
    if broker.get("tls"):
        # Verified or not at all: validate() refused "tls" without the site's CA. One context
        # for every connection (on the board mbedtls parses the CA once, not per attempt); the
        # broker's certificate must chain to that CA and carry server_name, which every dial
        # passes on because the dial goes to the address resolved for its connect cycle.
        context = p.tls_context(configuration.ca_der(broker["ca"]))
        server_name = broker.get("server_name") or broker["host"]
    return MQTTClient(
        cfg["device"], broker["host"], broker["port"], open_connection=p.open_connection,
        resolve=p.resolve, ticks_ms=p.ticks_ms, ticks_diff=p.ticks_diff,
        user=broker.get("user"), password=broker.get("password"), keepalive=cfg["keepalive_s"],
        will=will, ssl=context, server_hostname=server_name, on_message=receiver._on_message,
        on_connect=receiver._on_connect, on_disconnect=receiver._on_disconnect,
        random_below=p.random_below)


class Receiver:
    """One receiver. ``config``: a dict (defaults filled in from firmware.config.DEFAULTS).

    For the simulator and tests: ``core`` (ReceiverCore), ``clock`` (ClockEstimator),
    ``mqtt`` (MQTTClient), ``cache`` (MediaCache), ``outbox`` (Outbox), ``stats`` (dict),
    ``playing`` (the core's summary of what plays, or None), ``playing_item`` (the
    schedule.Item the player task is playing), ``now()`` (network ms), ``local_ms()``,
    ``heartbeat()`` (the payload bytes), ``boot`` (boot count), ``boot_info`` (the birth's
    protocol.messages.BIRTH_BOOT_FIELDS: reset cause, brown-outs, crashes, fallbacks),
    ``safe_mode`` (None, or why the receiver came up in safe mode).
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
        self._stats = {"rx": 0, "errors": 0, "time_samples": 0, "fetches": 0,
                       "fetch_errors": 0, "events_sent": 0, "link_failures": 0,
                       "no_space": 0}
        # What the last boots left in flash, and how this one began (firmware/recovery.py).
        self._state_file = StateFile(storage + "/state.json")
        saved = self._state_file.load()
        copies = self._state_file.copies
        self.boot = highest(copies, "boot") + 1
        cause = _reset_cause(platform)
        self.brownouts = highest(copies, "brownouts") + (1 if cause == "brown-out" else 0)
        crashes = crashes_before(saved.get("unstable", 0), cause)
        self.safe_mode = SAFE_CRASH_LOOP if crashes >= CRASH_LOOP_BOOTS else None
        self._unstable = crashes + 1  # boots in a row not yet stable, this one included
        self._rebooted = None         # why this boot is about to reboot itself, once it does
        rebooted = saved.get("rebooted")
        fallback = cfg.get("fallback") or {}
        self.boot_info = {"reset": cause, "brownouts": self.brownouts,
                          "crashes": crashes or None, "safe": self.safe_mode,
                          "config": fallback.get("file"), "config_error": fallback.get("error"),
                          "state": self._state_file.recovered,
                          "rebooted": rebooted if isinstance(rebooted, str) else None}
        self._config_kept = False     # config.json saved as the good copy this boot
        self.outbox = Outbox(storage + "/outbox.jsonl")
        core_state = saved.get("core")
        core_state = dict(core_state) if isinstance(core_state, dict) else {}
        # The replay counter never goes back: the highest that any readable copy holds.
        core_state["ctr"] = highest(copies, "core", "ctr")
        if self.safe_mode:
            core_state.pop("items", None)  # the saved schedule may be what crashes each boot
        # A power cut between an event's append and the state write must not reuse its seq.
        if self.outbox.last_seq() > highest((core_state,), "seq"):
            core_state["seq"] = self.outbox.last_seq()
        self.core = C.ReceiverCore(
            self.device, self.site, self._key, codecs=tuple(self.sink.codecs),
            volume=cfg["volume"], emergency_volume=cfg["emergency_volume"], state=core_state,
            jitter_slots=cfg["jitter_slots"], jitter_slot_bytes=cfg["jitter_slot_bytes"],
            guard=DurableGuard(self._key, self.device, self._before_command))
        # Free flash from the board (HostPlatform can pretend a small one), else statvfs.
        space = getattr(platform, "storage_space", None) or (lambda: fs_space(storage))
        self.cache = MediaCache(storage + "/cache", cfg["cache_bytes"], space)
        self.cache.sweep(self.core.needed_media())  # what the last boot left half done
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
        self._save_state(self.core.export_state())  # the boot and crash counts, at once
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
        self._scheduler_woken = False
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
        """Write the state file. None once it is in flash, else why not: "no-space" when the
        flash is full even after the cache gave space back, "storage" for any other failure
        (counted, never raised)."""
        state = {"boot": self.boot, "core": core_state, "synced_ms": self._synced_ms,
                 "unstable": self._unstable, "brownouts": self.brownouts}
        if self._rebooted:
            state["rebooted"] = self._rebooted
        try:
            self._state_file.save(state)
            return None
        except OSError as e:
            if not is_no_space(e):
                self._stats["errors"] += 1
                return REFUSED_STORAGE
        self._no_space()  # the cache gives space back; then once more
        try:
            self._state_file.save(state)
            return None
        except OSError as e:
            self._stats["errors"] += 1
            return REFUSED_NO_SPACE if is_no_space(e) else REFUSED_STORAGE

    def _no_space(self):
        """The flash is full: count it, and let the cache give space back (files nobody owns,
        then items nothing scheduled needs)."""
        self._stats["no_space"] += 1
        try:
            for sha in self.cache.heal(self.core.needed_media()):
                self.core.media_evicted(sha)
        except Exception:
            self._stats["errors"] += 1

    def _before_command(self, cmd):
        """The command guard's last step for an authentic, fresh command, before the core acts
        on it (firmware/recovery.py): its counter goes to flash first, so no reboot can make a
        command that took effect new again. A write that fails refuses the command with the
        reason; in safe mode commands that would fetch or play are refused."""
        state = self.core.export_state()
        state["ctr"] = cmd["ctr"]
        failed = self._save_state(state)
        if self.safe_mode and cmd["k"] in MEDIA_COMMANDS:
            return REFUSED_SAFE_MODE
        return failed

    def _will(self, conn):
        return (self._t_status, self._sealed(T.STATUS, M.death(self.device, self.boot, conn)),
                1, True)

    def _sealed(self, leaf, body):
        """A report as it goes on the wire: MACed with this receiver's key (protocol.messages,
        "reports"), so nobody else can speak for it."""
        return M.seal_report(self._key, leaf, body)

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self):
        """Run until ``shutdown()``."""
        self._running = True
        self._stopped.clear()
        self.platform.led("slow")
        # Remembered by the client and (re)sent on every connect.
        await self.mqtt.subscribe(self._t_cmd, 1)
        await self.mqtt.subscribe(self._t_time, 0)
        if not self.safe_mode:  # safe mode plays nothing: no scheduler, player or fetcher
            self._scheduler = asyncio.create_task(self._scheduler_loop())
            self._tasks.append(self._scheduler)
            self._tasks.append(asyncio.create_task(self._fetch_loop()))
        for coro in (self._watchdog_loop(), self._link_loop(), self._outbox_loop(),
                     self._timesync_loop(), self._heartbeat_loop(), self._recovery_loop()):
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
        """Stop everything: the player, the tasks, a clean MQTT disconnect. A deliberate stop
        (the simulator, a test), so this boot did not crash: its crash-loop count is cleared."""
        self._running = False
        if self._unstable and not self.safe_mode:
            self._unstable = 0
            self._save_state(self.core.export_state())
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

    async def _recovery_loop(self):
        """Stable after STABLE_MS of uptime: the crash-loop count goes back to 0 (not in safe
        mode, which lasts until a reboot command or a power cycle). Without the broker for
        ``offline_reboot_min`` (0: never): reboot, which clears what no retry gets out of (a
        stuck Wi-Fi driver or modem, a lost DHCP lease). Measured on the tick counter, never
        the wall clock, and put off while something plays or is about to start, so a receiver
        playing its schedule from the cache with the link down is not cut short."""
        started = offline_since = self.local_ms()
        while self._running:
            await sleep_ms(_RECOVERY_POLL_MS)
            now = self.local_ms()
            if self._unstable and not self.safe_mode and now - started >= STABLE_MS:
                self._unstable = 0
                self._save_state(self.core.export_state())
            limit = self.config["offline_reboot_min"] * _MINUTE_MS
            if self._online:
                offline_since = now
            elif limit and now - offline_since >= limit and self._quiet_for_reboot():
                await self._reboot_self(REBOOT_OFFLINE)
                return

    def _quiet_for_reboot(self):
        """Nothing plays and, by a synced clock, nothing starts within _REBOOT_QUIET_MS."""
        if self.playing_item is not None or self.core.current is not None:
            return False
        if not self.core.synced:
            return True  # nothing is started before the sync anyway
        now = self.now()
        start = self.core.schedule.next_start(now)
        return start is None or start - now > _REBOOT_QUIET_MS

    async def _reboot_self(self, why):
        """Reboot of the firmware's own accord: the state in flash first, with ``why`` for the
        next birth. A reboot command also ends safe mode and the crash-loop count."""
        self._rebooted = why
        if why == REBOOT_COMMAND:
            self._unstable = 0
        self._save_state(self.core.export_state())
        await self._go_quiet_and_offline()
        self.outbox.close()
        self.platform.reboot()

    # -- MQTT callbacks ------------------------------------------------------------------

    async def _on_connect(self):
        self._conn += 1
        caps = {"codecs": list(self.sink.codecs), "sink": self.sink.name,
                "cache_free": self.cache.free(), "cache_total": self.cache.budget(),
                "rates": list(getattr(self.sink, "rates", DEFAULT_RATES)),
                # the head-end's offline threshold follows each receiver's heartbeat period
                "hb": self.config["heartbeat_s"]}
        link = (self.platform.link_info() or {}).get("type") or self.config["link"]["type"]
        birth = M.birth(self.device, self.boot, self._conn, FIRMWARE_VERSION, caps, link,
                        self.boot_info)
        await self.mqtt.publish(self._t_status, self._sealed(T.STATUS, birth), 1, True)
        if not self._config_kept and not self.config.get("fallback"):
            # This config has reached the broker: it is the one to fall back to.
            self._config_kept = True
            try:
                configuration.remember_good(self.platform.storage_dir)
            except OSError as e:
                self._stats["errors"] += 1
                if is_no_space(e):
                    self._no_space()
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
                except OSError as e:
                    self._stats["errors"] += 1
                    if is_no_space(e):
                        self._no_space()  # space back for the next event
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
        await self.mqtt.publish(self._t_status, self._will(self._conn)[1], 1, True, 2000)
        await self._reboot_self(REBOOT_COMMAND)

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
            self._scheduler_woken = True  # this cancel is a wake-up, not a stop
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
                # Only our own wake-up is swallowed: a cancel from outside (shutdown, a test
                # tearing its loop down) ends the task.
                if not (self._running and self._scheduler_woken):
                    raise
            self._scheduler_woken = False
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
                    await self._stream_adpcm(f, skip, rate, volume, ADPCM_BLOCK_BYTES)
                await self.sink.drain()
                self.sink.close()
        except asyncio.CancelledError:
            raise
        except SinkError as e:  # the sink's own reason ("vs1053: DREQ stuck low") is the detail
            self._player_done(item, str(e))
            return
        except Exception as e:
            self._player_done(item, "player: %s" % type(e).__name__)
            return
        self._player_done(item, None)

    # The two file loops allocate nothing per frame (gc.mem_alloc() in tests/mpy/test_sinks.py):
    # FrameReader reads into views it keeps, the ADPCM loop reads into one view made per play,
    # and a hardware sink's write returns a preallocated awaitable (firmware/hw/paced.py).

    async def _stream_mp3(self, reader, skip, rate, volume):
        remainder = reader.skip_samples(skip)
        self.sink.set_volume(volume)
        self.sink.open("mp3", rate, remainder)
        while True:
            frame = reader.read_frame()
            if frame is None:
                return
            await self.sink.write(frame)

    async def _stream_adpcm(self, f, skip, rate, volume, block):
        per_block = adpcm_samples_per_block(block)
        blocks = skip // per_block
        f.seek(blocks * block)
        self.sink.set_volume(volume)
        self.sink.open("adpcm", rate, skip - blocks * per_block)
        view = memoryview(self._play_buf)
        chunk = (len(self._play_buf) // block) * block
        chunk_view = view[:chunk]  # a slice allocates: one per play, not one per read
        while True:
            n = f.readinto(chunk_view)
            if not n:
                return
            await self.sink.write(chunk_view if n == chunk else view[:n])

    def _ticks_at(self, network_ms):
        """The ``ticks_ms`` value at which the synced clock reads ``network_ms`` (near now)."""
        p = self.platform
        return p.ticks_add(p.ticks_ms(), self.clock.local_ms(network_ms) - self.ticks.now())

    async def _play_stream(self, item, volume):
        """Live frames from the jitter buffer to the sink, each heard at its play time.

        Per frame only small ints: stream time is ``ticks_diff(ticks_ms(), anchor)``, where
        ``anchor`` is the tick at which the stream's base time comes by the synced clock,
        recomputed every ``_ANCHOR_MS`` (that allocates; a frame does not). The first frame,
        and the first after lost ones, is written at its own time into an empty sink, so it is
        heard then; every other frame is taken ``stream_lead_ms`` early and queues behind the
        one playing, so nothing is heard between frames. A lost frame is silence of its own
        length: the stream stays on its timeline.
        """
        info = item.stream
        jitter = self.core.jitter
        p = self.platform
        lead = self.config["stream_lead_ms"]
        rate = info.rate
        opened = False
        anchor = anchored = 0
        base = None
        # Stream time at which everything written has been heard, kept exactly: whole ms plus
        # a remainder in (samples x 1000) units, since a frame is rarely a whole number of ms
        # (an ADPCM block is 31.5625 ms at 16 kHz) and rounding would drift by frames.
        heard_until = 0
        heard_rem = 0
        try:
            await self._amp_ready()
            while self.playing_item is item:
                if jitter.base is None:
                    await sleep_ms(_STREAM_POLL_MS)
                    continue
                t = p.ticks_ms()
                if base is not jitter.base or p.ticks_diff(t, anchored) >= _ANCHOR_MS:
                    base = jitter.base
                    anchor = self._ticks_at(base)
                    anchored = t
                now = p.ticks_diff(t, anchor)
                queued = opened and heard_until > now
                frame = jitter.pop_at(now, lead if queued else 0)
                if frame is None:
                    nxt = jitter.next_at()
                    wait = _STREAM_POLL_MS
                    if nxt is not None and nxt - now - (lead if queued else 0) < wait:
                        wait = nxt - now - (lead if queued else 0)
                    await sleep_ms(wait if wait > 0 else 1)
                    continue
                if queued and frame.at > heard_until + frame.duration_ms // 2:
                    # Frames were lost before this one: let the sink run dry, and write this
                    # one when it is due, so it is heard at its own time, not early.
                    wait = frame.at - p.ticks_diff(p.ticks_ms(), anchor)
                    if wait > 0:
                        await sleep_ms(wait)
                    queued = False
                if not opened:
                    self.sink.set_volume(volume)
                    self.sink.open(info.codec, info.rate, 0)
                    opened = True
                await self.sink.write(frame.payload)
                if not queued:  # heard from now on (a late write is heard late, not early)
                    heard_until = frame.at if frame.at > now else now
                    heard_rem = 0
                heard_rem += frame.samples * 1000
                if heard_rem >= rate:
                    whole = heard_rem // rate
                    heard_until += whole
                    heard_rem -= whole * rate
                if frame.last:
                    await self.sink.drain()
                    self.sink.close()
                    self._player_done(item, None)
                    return
        except asyncio.CancelledError:
            raise
        except SinkError as e:
            self._player_done(item, str(e))
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
                if is_no_space(e):
                    self._no_space()
                    error = REFUSED_NO_SPACE
                else:
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
        # The budget follows the flash (statvfs), and this item's .part already counts as held.
        evicted = self.cache.make_room(media["size"], self.core.needed_media(), sha)
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
            except OSError as e:
                if is_no_space(e):
                    return self._fetch_out_of_space(sha)
                error = "connect failed"  # never the URL: it may carry a token
                continue
            if await sha256_hex(part, self._fetch_buf) != sha:
                remove(part)
                error = "sha mismatch"
                continue
            try:
                self.cache.add(sha, media["size"], media["codec"])
            except OSError as e:
                if is_no_space(e):
                    return self._fetch_out_of_space(sha)
                raise
            return None
        return error

    def _fetch_out_of_space(self, sha):
        """The flash filled up under a download (the budget is an estimate: other writes,
        filesystem overhead): the partial file goes at once, so the state and the outbox can
        still be written, the cache gives space back, and the fetch fails "no-space" (the core
        retries it later against the budget the flash has then)."""
        self.cache.drop_part(sha)
        self._no_space()
        return REFUSED_NO_SPACE

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
            if await self.mqtt.publish(self._t_evt, self._sealed(T.EVENT, entry[1]), 1):
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
        """The heartbeat payload (bytes): protocol.messages.HEARTBEAT_TABLE's fields, built by
        protocol.messages.heartbeat (None and IF_SET fields at 0 are left out)."""
        p = self.platform
        local = self.local_ms()
        supply = p.supply() or {}
        link = p.link_info() or {}
        current = self.core.current
        return M.heartbeat({
            "boot": self.boot, "conn": self._conn, "up": (local - self._started_local) // 1000,
            "heap": p.mem_free(), "vol": self.core.volume, "cu": self.cache.used(),
            "off": int(self.clock.offset_ms(local)), "amp": 1 if self._amp_on else 0,
            # 0 matters here (on battery): only None (unknown) is left out
            "mains": supply.get("mains"), "dc": supply.get("dc"),
            "ln": link.get("type"), "rssi": link.get("rssi"),
            "af": 1 if p.amplifier_fault() else 0, "sy": 1 if self.clock.synced else 0,
            "play": current.bid if current is not None else None,
            "rej": self.core.counters["rejected"], "mal": self.core.counters["malformed"],
            "temp": p.temperature(), "err": self._stats["errors"]})

    async def _heartbeat_loop(self):
        while self._running:
            await sleep_ms(self.config["heartbeat_s"] * 1000)
            try:
                if self.mqtt.connected:
                    # QoS 1: the PUBACK is the broker's sign of life, so an idle link needs no
                    # PINGREQ/PINGRESP on top (firmware/mqtt.py, _keepalive_loop).
                    await self.mqtt.publish(self._t_hb, self._sealed(T.HEARTBEAT,
                                                                     self.heartbeat()), 1)
            except Exception:
                self._stats["errors"] += 1
