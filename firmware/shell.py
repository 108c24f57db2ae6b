"""The receiver's asyncio shell: the core (firmware/core.py) wired to a board and a broker.

``Receiver(config, platform)`` with ``await run()`` and ``await shutdown()``. Runs unchanged on
an ESP32 (board/main.py with firmware.hw.esp32.Esp32Platform) and in the simulator (CPython,
many receivers in one process: no module-level state here).

Tasks, each small and each never letting an exception out:
- link: ``platform.link_up()`` (retried), then the MQTT client's ``run()`` (reconnects itself);
- scheduler: ``core.tick(now)`` at the core's ``next_due(now)`` (and every
  ``_SCHED_POLL_MS``; woken at once when a command, fetch or clock sample changes what is
  due). Every decision is the core's (firmware/core.py, sans-IO: tested on CPython and
  MicroPython): what plays when (a scheduled item comes ``START_LEAD_MS`` early), the amplifier
  relay (``amp_settle_ms`` before the first sample, off when idle), time-sync cadence, fetch
  retries; the shell performs its actions and feeds it inputs (commands, frames, time samples,
  fetch results, the player's end, link up/down), always with the time of now;
- player (firmware/player.py): one task per START action, feeding ``platform.sink``; tells
  the core when it finished or failed. Audio goes first: in a batch of actions with a START,
  the flash writes (events, state) follow the player;
- fetcher (firmware/fetcher.py): one HTTP download attempt per FETCH action into the cache
  (Range resume, sha256 check, eviction);
- outbox: events from flash to ``.../evt`` with QoS 1, in seq order, trimmed on PUBACK;
- time sync (firmware/timesync.py): a request per SYNC_REQUEST action (the core asks for a
  burst of ``timesync_burst`` at each connect, then one per ``timesync_s``); signed replies
  checked and matched by t0;
- heartbeat: compact telemetry on ``.../hb`` every ``heartbeat_s``;
- watchdog: feeds ``platform.feed_watchdog`` while the event loop is alive;
- recovery (firmware/recovery.py): after ``STABLE_MS`` the boot counts as stable (its crash-loop
  count goes back to 0); after ``offline_reboot_min`` without the broker, with nothing playing
  or about to start, the state goes to flash and the board reboots;
- update (firmware/updater.py, rules in firmware/ota.py): an UPDATE action downloads and checks
  a bundle and switches the version pointer, then the board reboots once nothing plays. A
  version on trial confirms itself when the broker acknowledges its first birth; one that has
  not within ``ota_trial_s`` goes back to the previous version and reboots (recovery task).

Flash (firmware/store.py, firmware/cache.py): every command's counter is in flash before the
command acts (``_before_command``), so a failed write refuses the command ("storage",
"no-space") instead of reopening the replay window; the state is read back from whichever copy
survived (the replay counter from the highest of them). A full flash (ENOSPC) is reported as
"no-space" and the cache gives space back. Three boots in a row that crash before they are
stable bring up safe mode: connected and reporting, no saved schedule, no fetcher, no player.

Anything a peer sends (any topic) goes through ``_on_message``, which counts and drops what it
cannot use and never raises.

Heartbeat (QoS 1 on ``.../hb``: its PUBACK doubles as the keepalive answer): the fields of
``protocol.messages.HEARTBEAT_TABLE`` (docs/protocol.md, "Heartbeat"), built by
``messages.heartbeat``, which leaves out keys at their default (0/null) because 4G is paid per
byte.

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

from binascii import hexlify

from firmware import FIRMWARE_VERSION, ota, otaboot, rotation
from firmware import config as configuration
from firmware import core as C
from firmware.cache import MediaCache
from firmware.clock import ClockEstimator, TickExtender
from firmware.fetcher import Fetcher
from firmware.platform import RESET_CAUSES
from firmware.player import Player, sleep_ms
from firmware.reasons import REFUSED_NO_SPACE, REFUSED_SAFE_MODE, REFUSED_STORAGE
from firmware.recovery import (
    CRASH_LOOP_BOOTS,
    MEDIA_COMMANDS,
    SAFE_CRASH_LOOP,
    STABLE_MS,
    DurableGuard,
    crashes_before,
    highest,
)
from firmware.schedule import KIND_STREAM
from firmware.store import Outbox, StateFile, fs_space, is_no_space, makedirs
from firmware.timesync import TimeSync
from firmware.updater import Updater
from protocol import messages as M
from protocol import topics as T
from protocol.signing import key_from_hex

DEFAULT_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
_SCHED_POLL_MS = 1000     # the scheduler's longest sleep; anything that changes the schedule
                          # wakes it at once (``_wake_scheduler``)
_WATCHDOG_MS = 5000       # feed period; the ESP32 watchdog bites after 30 s
_LINK_RETRY_MS = 5000
_REBOOT_FLUSH_MS = 5000   # how long a reboot waits for the outbox to empty
_RTC_TRUST_MS = 30 * 86400000  # an RTC this far past the last sync is garbage, not time kept
_RECOVERY_POLL_MS = 5000  # how often the recovery task looks at uptime and the link
_MINUTE_MS = 60000        # the unit of offline_reboot_min
_REBOOT_QUIET_MS = 120000  # an offline reboot waits while something starts sooner than this
REBOOT_COMMAND = "command"  # why the firmware rebooted itself (the next birth's "rebooted")
REBOOT_OFFLINE = "offline"
REBOOT_UPDATE = "update"      # a new version is switched in
REBOOT_ROLLBACK = "rollback"  # the version on trial gave up
_OTA_HASH_BYTES = 1024    # the updater's hashing buffer


def _reset_cause(platform):
    """``platform.reset_cause()``, "unknown" for a board that cannot tell (or says nonsense)."""
    read = getattr(platform, "reset_cause", None)
    try:
        cause = read() if read is not None else "unknown"
    except Exception:
        cause = "unknown"
    return cause if cause in RESET_CAUSES else "unknown"


def _reset_nonce(platform):
    """64 hex digits from ``platform.random_bytes`` for this boot's ``reset_floor``; None (no
    reset accepted this boot) for a board without a random source or one that fails."""
    read = getattr(platform, "random_bytes", None)
    try:
        raw = read(32) if read is not None else None
    except Exception:
        return None
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != 32:
        return None
    return hexlify(bytes(raw)).decode()


def _default_mqtt(receiver, cfg, will):
    from firmware.mqtt import MQTTClient

    broker = cfg["broker"]
    p = receiver.platform
    _, user, password = receiver.credentials.in_use()  # a rotation's new account first
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
        user=user, password=password, keepalive=cfg["keepalive_s"],
        will=will, ssl=context, server_hostname=server_name, on_message=receiver._on_message,
        on_connect=receiver._on_connect, on_disconnect=receiver._on_disconnect,
        random_below=p.random_below)


class Receiver:
    """One receiver. ``config``: a dict (defaults filled in from firmware.config.DEFAULTS).

    For the simulator and tests: ``core`` (ReceiverCore), ``clock`` (ClockEstimator),
    ``mqtt`` (MQTTClient), ``cache`` (MediaCache), ``outbox`` (Outbox), ``stats`` (dict),
    ``playing`` (the core's summary of what plays, or None), ``playing_item`` (the
    schedule.Item the player task is playing), ``fetching`` (a download is under way or
    queued), ``now()`` (network ms), ``local_ms()``,
    ``heartbeat()`` (the payload bytes), ``boot`` (boot count), ``boot_info`` (the birth's
    protocol.messages.BIRTH_BOOT_FIELDS: reset cause, brown-outs, crashes, fallbacks),
    ``safe_mode`` (None, or why the receiver came up in safe mode); its parts ``player``
    (firmware/player.py), ``fetcher`` (firmware/fetcher.py), ``timesync`` (firmware/timesync.py).
    ``mqtt_factory(receiver, config, will)`` replaces the MQTT client in unit tests.
    """

    def __init__(self, config, platform, mqtt_factory=None):
        cfg = configuration.validate(configuration.merge(configuration.DEFAULTS, config))
        self.config = cfg
        self.platform = platform
        self.sink = platform.sink
        self.device = cfg["device"]
        self.site = cfg["site"]
        storage = platform.storage_dir
        makedirs(storage)
        # The key and broker account: config.json's, or a rotation's pending ones beside them
        # (firmware/rotation.py); ``_key`` seals the reports, the one of the account in use.
        self.credentials = rotation.Credentials(
            rotation.current_of(storage, cfg["key"], cfg["broker"].get("user"),
                                cfg["broker"].get("password")),
            rotation.load_pending(storage))
        self._key = key_from_hex(self.credentials.in_use()[0])
        current_key = key_from_hex(self.credentials.current[0])
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
        # The firmware version pointer, as this boot's otaboot.choose left it (firmware/ota.py):
        # what runs, and whether it is on trial; the births say how the last update went.
        self.ota_pointer = otaboot.read_pointer(storage)
        self.firmware_version = ota.running(self.ota_pointer) or FIRMWARE_VERSION
        self.boot_info.update(ota.birth_info(self.ota_pointer))
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
        # This boot's one-use nonce for a reset of the counter floor (firmware/guard.py): in
        # RAM only, so no reset recorded in an earlier boot passes in this one.
        reset_nonce = _reset_nonce(platform)
        self.core = C.ReceiverCore(
            self.device, self.site, current_key, codecs=tuple(self.sink.codecs),
            volume=cfg["volume"], emergency_volume=cfg["emergency_volume"], state=core_state,
            jitter_slots=cfg["jitter_slots"], jitter_slot_bytes=cfg["jitter_slot_bytes"],
            guard=DurableGuard(current_key, self.device, self._before_command),
            amp_settle_ms=cfg["amp_settle_ms"], timesync_burst=cfg["timesync_burst"],
            timesync_ms=cfg["timesync_s"] * 1000, random_below=platform.random_below,
            reset_nonce=reset_nonce, amp_mute=configuration.has_amp_mute(cfg),
            amp_unmute_ms=cfg["amp_unmute_ms"], amp_standby=configuration.amp_standby(cfg),
            utc_offset_min=cfg["utc_offset_min"])
        pending = self.credentials.pending
        if pending is not None:
            self.core.set_pending_key(pending["rid"], key_from_hex(pending["key"]))
        # Free flash from the board (HostPlatform can pretend a small one), else statvfs.
        space = getattr(platform, "storage_space", None) or (lambda: fs_space(storage))
        self.cache = MediaCache(storage + "/cache", cfg["cache_bytes"], space)
        self._space = space
        self._selftest_task = None    # the periodic test's tone, while it runs
        self.cache.sweep(self.core.needed_media())  # what the last boot left half done
        self.core.set_cached(self.cache.shas())
        self.core.cache_budget = self.cache.budget()  # how far the schedule is fetched ahead
        # Wall time before the first sync of this boot: only from an RTC that kept time. The
        # ESP32's RTC runs on across a watchdog or software reset (the shell sets it at every
        # sync) but restarts at 2000-01-01 after a power cut: it is trusted only when it reads
        # later than the last sync this flash remembers, so a receiver that reset while its
        # link was down still plays its schedule on time, and one that lost power waits.
        self._synced_ms = saved.get("synced_ms", 0)   # network time of a past sync (a floor)
        self._sync_saved = False
        self._boot_acts = []          # what the core said before run(): performed by run()
        rtc = platform.rtc_ms()
        if self._synced_ms and 0 <= rtc - self._synced_ms <= _RTC_TRUST_MS:
            self._boot_acts = self.core.set_synced(self.now())
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
        self._amp_on = False          # the relay as the shell last switched it
        self._identify_until = 0
        self._outbox_wake = asyncio.Event()
        self.player = Player(platform, self.clock, self.ticks, self.cache,
                             cfg["stream_lead_ms"], self._player_done)
        self.fetcher = Fetcher(platform, self.cache, self.core.needed_media,
                               self.core.media_evicted, self._no_space, self._fetch_done)
        self.updater = Updater(platform, storage, bytearray(_OTA_HASH_BYTES), self._update_event,
                               self._update_switched)
        self.timesync = TimeSync(current_key, self.device, self.clock, self.local_ms,
                                 self.core.count)
        if pending is not None:
            self.timesync.alt_key = key_from_hex(pending["key"])
        self.mqtt = (mqtt_factory or _default_mqtt)(self, cfg, self._will(1))
        self.mqtt.on_refused = self._credentials_refused

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

    @property
    def playing_item(self):
        return self.player.item

    @property
    def fetching(self):
        return self.fetcher.busy

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
        if not failed and cmd["k"] == M.RESET_FLOOR:
            # A reset lowers the floor: a second save puts it in the backup copy too, or the
            # next boot would take the old floor back as the highest copy (recovery.highest).
            failed = self._save_state(state)
        if self.safe_mode and cmd["k"] in MEDIA_COMMANDS:
            return REFUSED_SAFE_MODE
        return failed or self.now()  # the write's time: the command takes effect after it

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
        # The core's timer runs in safe mode too (time sync is the core's); nothing plays there:
        # the saved schedule was dropped and media commands are refused, so no fetcher.
        self._scheduler = asyncio.create_task(self._scheduler_loop())
        self._tasks.append(self._scheduler)
        if not self.safe_mode:
            self._tasks.append(asyncio.create_task(self.fetcher.run()))
        acts, self._boot_acts = self._boot_acts, []
        self._apply(acts)
        for coro in (self._watchdog_loop(), self._link_loop(), self._outbox_loop(),
                     self._heartbeat_loop(), self._recovery_loop()):
            self._tasks.append(asyncio.create_task(coro))
        await self._stopped.wait()

    async def _go_quiet_and_offline(self):
        """Stop the player, switch the amplifier off and close the MQTT link (errors ignored:
        the receiver is going down either way)."""
        self._stop_player()
        self._set_mute(True)  # the core is going down with the shell: no action to wait for
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
            if (self.ota_pointer.get("trial") and now - started
                    >= self.config["ota_trial_s"] * 1000 and self._quiet_for_reboot()):
                await self._rollback(ota.WHY_NO_BROKER)
                return
            limit = self.config["offline_reboot_min"] * _MINUTE_MS
            if self._online:
                offline_since = now
            elif limit and now - offline_since >= limit and self._quiet_for_reboot():
                await self._reboot_self(REBOOT_OFFLINE)
                return

    async def _rollback(self, why):
        """The version on trial did not prove itself: the pointer back to the previous one,
        then a reboot into it (whose birth says why)."""
        try:
            otaboot.write_pointer(self.platform.storage_dir, ota.rollback(self.ota_pointer, why))
        except OSError:
            self._stats["errors"] += 1  # the trial boots run out instead (firmware/ota.py)
        await self._reboot_self(REBOOT_ROLLBACK)

    def _update_event(self, ver, ok, reason):
        self._apply(self.core.update_result(ver or "?", ok, reason, self.now()))

    def _update_switched(self):
        self._spawn(self._reboot_when_quiet())

    async def _reboot_when_quiet(self):
        """The new version boots once nothing plays or is about to start."""
        while not self._quiet_for_reboot():
            await sleep_ms(_RECOVERY_POLL_MS)
        await self._reboot(REBOOT_UPDATE)

    def _confirm_update(self):
        """The broker acknowledged this trial version's birth: it stays. True once the pointer
        says so (the birth is then sent again, saying "updated": the head-end's rollout waits
        for that before its next wave)."""
        new = ota.confirmed(self.ota_pointer)
        if new is None:
            return False
        try:
            otaboot.write_pointer(self.platform.storage_dir, new)
        except OSError as e:
            self._stats["errors"] += 1
            if is_no_space(e):
                self._no_space()
            return False
        self.ota_pointer = new
        for name in ("ota", "ota_ver", "ota_why"):
            self.boot_info[name] = None
        self.boot_info.update(ota.birth_info(new))
        return True

    def _quiet_for_reboot(self):
        """Nothing plays and, by a synced clock, nothing starts within _REBOOT_QUIET_MS."""
        if self.playing_item is not None:
            return False
        return not self.core.busy_within(self.now(), _REBOOT_QUIET_MS)

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
        # Reports are sealed with the key of the account this connection logged in with.
        self._key = key_from_hex(self.credentials.in_use()[0])
        self.core.cache_budget = self.cache.budget()  # it follows the flash free
        caps = {"codecs": list(self.sink.codecs), "sink": self.sink.name,
                "cache_free": self.cache.free(), "cache_total": self.core.cache_budget,
                "rates": list(getattr(self.sink, "rates", DEFAULT_RATES)),
                # the head-end's offline threshold follows each receiver's heartbeat period
                "hb": self.config["heartbeat_s"]}
        link = (self.platform.link_info() or {}).get("type") or self.config["link"]["type"]
        info = dict(self.boot_info)
        info["nonce"] = self.core.reset_nonce  # None (left out) once a reset used it
        birth = M.birth(self.device, self.boot, self._conn, self.firmware_version, caps, link,
                        info)
        if await self.mqtt.publish(self._t_status, self._sealed(T.STATUS, birth), 1, True) \
                and self._confirm_update():
            info.update(ota.birth_info(self.ota_pointer))
            birth = M.birth(self.device, self.boot, self._conn, self.firmware_version, caps,
                            link, info)
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
        self._apply(self.core.link_up(self.now()))  # a time-sync burst, waiting fetches
        self._outbox_wake.set()
        self._led_idle()

    # -- rotation of the key and broker account (firmware/rotation.py) --------------------

    def _use_credentials(self):
        """The MQTT client's next connection uses the set ``credentials`` has in use, and its
        will is sealed with that set's key; what goes out on the current connection keeps the
        current key (``_on_connect`` switches it): a report under the new key must not reach
        the head-end (which then confirms) before the receiver listens on its new connection."""
        key_hex, user, password = self.credentials.in_use()
        self.mqtt.user = user
        self.mqtt.password = password
        self.mqtt.will = (self._t_status, M.seal_report(
            key_from_hex(key_hex), T.STATUS, M.death(self.device, self.boot, self._conn + 1)),
            1, True)

    def _credentials_refused(self, reason):
        """The broker refused the account in use: while a rotation is pending, the other one
        (True: the MQTT client tries it soon, not after its longest backoff)."""
        if self.credentials.refused():
            self._use_credentials()
            return True
        return False

    def _rekey_offered(self, rid, key_hex, user, password):
        pending = self.credentials.pending
        if pending is not None and pending["rid"] == rid and pending["key"] == key_hex:
            if self.credentials.using_new:
                return  # a resend of what this receiver already uses
        else:
            try:
                pending = rotation.save_pending(self.platform.storage_dir, rid, key_hex, user,
                                                password)
            except OSError:
                self._stats["errors"] += 1
                return  # not on flash: stay on the old set (the head-end keeps it meanwhile)
        self.credentials.offered(pending)
        self.timesync.alt_key = key_from_hex(key_hex)
        self._use_credentials()
        self._spawn(self.mqtt.reconnect())

    def _rekey_confirmed(self):
        pending = self.credentials.pending
        if pending is None:
            return
        try:
            rotation.commit(self.platform.storage_dir, pending)
            configuration.remember_good(self.platform.storage_dir)
        except OSError:
            self._stats["errors"] += 1  # both sets stay on flash: the next boot tries both
        self.credentials.confirmed()
        self.timesync.rekeyed(key_from_hex(self.credentials.current[0]))
        was = self.mqtt.user, self.mqtt.password
        self._use_credentials()
        if was != (self.mqtt.user, self.mqtt.password):
            self._spawn(self.mqtt.reconnect())  # it was on the old set: that one is going

    def _on_disconnect(self, reason):
        self._online = False
        self._apply(self.core.link_down(self.now()))
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
        step = self.timesync.on_reply(payload)
        if step is None:
            return
        self._stats["time_samples"] += 1
        self._wake_scheduler()  # local times of what is scheduled moved
        now = self.now()
        self.platform.set_rtc_ms(now)  # so a reset without a power cut restarts on time
        if not self._sync_saved:  # once per boot: the floor an RTC must read to be trusted
            self._sync_saved = True
            self._synced_ms = now
            self._save_state(self.core.export_state())
        if step:
            self._apply(self.core.clock_stepped(now, step))
        self._apply(self.core.set_synced(now))  # the first time: held commands are judged

    async def _send_time_request(self):
        await self.mqtt.publish(self._t_treq, self.timesync.request(), 0)

    # -- actions -------------------------------------------------------------------------

    def _apply(self, acts):
        # What is due may have changed (even with no action now): recompute the next wake-up.
        self._wake_scheduler()
        if not acts:
            return
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
            if act[0] in (C.START, C.STOP, C.VOLUME, C.AMP, C.MUTE, C.SELFTEST_ABORT):
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
                self._start_player(act[1], act[2], act[3], act[4])
            elif kind == C.STOP:
                if self.playing_item is act[1]:
                    self._stop_player()
            elif kind == C.AMP:
                self._set_amp(act[1])
            elif kind == C.MUTE:
                self._set_mute(act[1])
            elif kind == C.FETCH:
                self.fetcher.add(act[1])
            elif kind == C.PIN:
                self._pin(act[1], act[2])
            elif kind == C.SYNC_REQUEST:
                self._spawn(self._send_time_request())
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
            elif kind == C.UPDATE:
                self.updater.start(act[1], self.firmware_version)
            elif kind == C.SELFTEST:
                self._selftest_task = self._spawn(self._selftest(act[1], act[2], act[3],
                                                                 act[4]))
            elif kind == C.SELFTEST_ABORT:
                self._abort_selftest()
            elif kind == C.REKEY:
                self._rekey_offered(act[1], act[2], act[3], act[4])
            elif kind == C.REKEY_CONFIRMED:
                self._rekey_confirmed()

    def _pin(self, sha, on):
        """A ``fetch`` pinned or unpinned its item in the cache (its index is rewritten)."""
        try:
            self.cache.pin(sha, on)
        except OSError as e:
            self._stats["errors"] += 1
            if is_no_space(e):
                self._no_space()

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

    async def _reboot(self, why=REBOOT_COMMAND):
        """Reboot after the ack is out: wait for the outbox, say goodbye, reset."""
        waited = 0
        while len(self.outbox) and waited < _REBOOT_FLUSH_MS:
            await sleep_ms(100)
            waited += 100
        # A clean DISCONNECT suppresses the will: publish the death ourselves.
        await self.mqtt.publish(self._t_status, self._will(self._conn)[1], 1, True, 2000)
        await self._reboot_self(why)

    # -- the periodic test (firmware/core.py decides when; this runs it) ----------------------

    async def _selftest(self, run, level, ms, settle):
        """The relay is on (the core's AMP came first): wait for it to settle, the sink's
        quiet tone, then what the board reads (relay, fault line, current, flash), to the
        core, which judges it."""
        p = self.platform
        result = {"run": run, "sink": False, "detail": None}
        try:
            await sleep_ms(settle)
            try:
                await self.sink.self_test(level, ms)
                result["sink"] = True
            except asyncio.CancelledError:
                raise
            except Exception as e:  # SinkError, or a driver's own error: the reason goes up
                result["detail"] = (str(e) or type(e).__name__)[:128]
            space = None
            try:
                space = self._space()
            except OSError:
                pass
            result["relay"] = p.amplifier_state()
            result["fault"] = p.amplifier_fault()
            result["ma"] = p.amplifier_current()
            # (a host's disk may have more than the report's 31 bits hold: capped)
            result["flash"] = min(space[0], M.MAX_COUNT) if space else None
            result["flash_min"] = self.cache.reserve
            result["synced"] = self.clock.synced
        except asyncio.CancelledError:
            return  # cut short by a broadcast: the core has reported it
        except Exception:
            self._stats["errors"] += 1
        if self._selftest_task is not None:
            self._selftest_task = None
            self._apply(self.core.selftest_done(result, self.now()))

    def _abort_selftest(self):
        task = self._selftest_task
        self._selftest_task = None
        if task is not None:
            task.cancel()
            try:
                self.sink.stop()
            except Exception:
                self._stats["errors"] += 1

    # -- amplifier -----------------------------------------------------------------------

    def _set_amp(self, on):
        if on != self._amp_on:
            self.platform.amplifier(on)
            self._amp_on = on

    def _set_mute(self, on):
        """The amplifier's mute line (a board with one: the core sends MUTE only then)."""
        if self.core.amp_mute:
            self.platform.amplifier_mute(on)

    # -- scheduler -----------------------------------------------------------------------

    def _wake_scheduler(self):
        if self._scheduler_sleeping:
            self._scheduler_sleeping = False
            self._scheduler_woken = True  # this cancel is a wake-up, not a stop
            self._scheduler.cancel()

    async def _scheduler_loop(self):
        """The core's timer: ``tick(now)`` at each time the core names, and every
        _SCHED_POLL_MS (what no time names: a waiting item, a give-up)."""
        while self._running:
            try:
                now = self.now()
                self._apply(self.core.tick(now))
                due = self.core.next_due(now)
                wait = _SCHED_POLL_MS
                if due is not None and due - now < wait:
                    wait = max(1, due - now)
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

    # -- player and fetcher (firmware/player.py, firmware/fetcher.py) ---------------------

    def _start_player(self, item, skip_ms, volume, first_at):
        jitter = self.core.jitter if item.kind == KIND_STREAM else None
        self.player.start(item, skip_ms, volume, first_at, jitter=jitter)
        self._led_idle()

    def _stop_player(self):
        self.player.stop()
        self._led_idle()

    def _player_done(self, item, error):
        """The player task ended by itself: tell the core (which may start the next item)."""
        now = self.now()
        self._apply(self.core.failed(item, now, error) if error else self.core.finished(item, now))
        self._led_idle()

    def _fetch_done(self, sha, error):
        self._stats["fetches"] += 1
        now = self.now()
        if error:
            self._stats["fetch_errors"] += 1
            self._apply(self.core.media_failed(sha, now, error))
        else:
            self._apply(self.core.media_ready(sha, now))

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
            "temp": p.temperature(), "err": self._stats["errors"],
            "lost": self.core.frames_since_boot("lost"),
            "late": self.core.frames_since_boot("late")})

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
