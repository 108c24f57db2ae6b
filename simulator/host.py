"""``HostPlatform``: the board a simulated receiver runs on (firmware/platform.py).

One per receiver, no shared state, so hundreds share one CPython process. Everything a test may
want to set (supply, link quality, temperature, free memory, amplifier fault, a relay stuck
off, a sink that fails its self-test: ``sink.selftest_error``) is a plain attribute;
everything the firmware does to the board (amplifier relay, LED, reboot) is recorded
with the true time it happened.

The supply: ``mains`` (1/0) and ``dc_volts`` as set. With ``battery_drain_v_per_s`` set, the
DC input is a battery once the mains goes: it starts at ``battery_v`` and falls that fast
(true time) until ``battery_empty()``, when the board would brown out; the fleet then cuts its
power (simulator/fleet.py ``fail_mains``). The firmware only ever reads ``supply()``.
"""

import os
import random
import ssl as _ssl
import tempfile
import time

from firmware.platform import Platform
from simulator.clock import TICKS_PERIOD, DriftingClock, ticks_add, ticks_diff
from simulator.network import LinkPath
from simulator.sink import RecordingSink

# Start the ticks counter this close to its wrap point, so every run crosses it early on.
NEAR_WRAP_MS = 3000
_RAM_DISK = "/dev/shm"
_RAM_DISK_MIN_FREE = 512 * 1024 * 1024


def flash_root():
    """Where simulated flash lives: a RAM disk when there is one.

    All receivers share one event loop here, so a blocking file write by one delays every other
    (on real boards each has its own CPU). On ext4 a replace-by-rename (the firmware's atomic
    state write) costs ~0.6 ms against ~0.02 ms on tmpfs: with 200 receivers starting at once
    that alone skewed start times by hundreds of ms. None means the system temp dir.
    """
    try:
        stat = os.statvfs(_RAM_DISK)
    except OSError:
        return None
    # A container's /dev/shm may be only 64 MB: a fleet's caches would not fit.
    if os.access(_RAM_DISK, os.W_OK) and stat.f_bavail * stat.f_frsize >= _RAM_DISK_MIN_FREE:
        return _RAM_DISK
    return None


def _last_change_to(changes, t, value):
    """The true time of the last change in ``changes`` ((time, value), in order) at or before
    ``t``, if it was to ``value`` (still so at ``t``); else None."""
    last = None
    for at, v in changes:
        if at > t:
            break
        last = (at, v)
    return last[0] if last is not None and last[1] == value else None


class HostPlatform(Platform):
    """A simulated receiver board.

    ``offset_ms``/``drift_ppm``: how wrong its RTC is and how fast its crystal runs.
    ``ticks_near_wrap``: start ``ticks_ms`` a few seconds before it wraps.
    ``storage_dir``: flash; pass the same directory to a new platform to simulate a reboot
    (a temp dir is made otherwise). ``on_reboot``: called with this platform when the firmware
    asks for a reboot (the fleet restarts the receiver).
    """

    def __init__(self, device_id="sim", offset_ms=0.0, drift_ppm=0.0, ticks_near_wrap=True,
                 storage_dir=None, codecs=("mp3", "adpcm"), seed=0, link=None, sink=None,
                 link_type="wifi", on_reboot=None, keep_bytes=False):
        self.device_id = device_id
        ticks_start = TICKS_PERIOD - NEAR_WRAP_MS if ticks_near_wrap else 0
        self.clock = DriftingClock(offset_ms, drift_ppm, ticks_start=ticks_start)
        if storage_dir is None:
            storage_dir = tempfile.mkdtemp(prefix="loaxa-%s-" % device_id, dir=flash_root())
        os.makedirs(storage_dir, exist_ok=True)
        self.storage_dir = storage_dir
        self.link = link if link is not None else LinkPath(seed=seed)
        self.sink = sink if sink is not None else RecordingSink(codecs, clock=self.clock,
                                                                keep_bytes=keep_bytes)
        self._rng = random.Random("%s/%s" % (seed, device_id))
        self.on_reboot = on_reboot
        # Settable by tests: what the sensors read.
        self.link_type = link_type
        self.rssi = -61
        self._mains = 1
        self.mains_changes = []  # (true time s, mains)
        self.dc_volts = 13.6  # on mains: the charger's voltage
        self.battery_v = 12.7  # the battery's voltage when the mains goes
        self.battery_drain_v_per_s = 0.0  # 0: the DC stays at dc_volts
        self.battery_cutoff_v = 10.5  # below this the board browns out
        self.temperature_c = 38.5
        self.free_memory = 92000
        self.amp_fault = False
        self.relay_stuck = False  # True: the relay reads back off whatever is switched (broken)
        self.amp_current_ma = None  # what a current sensor reads; None: the board has none
        self.reset_cause_name = "power-on"  # what the next boot reads (reboot() sets "hard")
        self.flash_free = None  # bytes the flash has free; None: the real directory's statvfs
        self.flash_block = 4096
        # Recorded: what the firmware did to the board.
        self.amp_on = False
        self.amp_changes = []   # (true time s, on)
        self.muted = True       # the mute line (a board that has one boots it asserted)
        self.mute_changes = []  # (true time s, muted)
        # The simulated amplifier itself: how long it takes, by true time, before it passes
        # sound once its relay closed, and once its mute was released (``audible_from``).
        self.relay_settle_ms = 300
        self.unmute_ms = 20
        self.led_pattern = "off"
        self.led_changes = []   # (true time s, pattern)
        self.reboots = []       # true time s of each reboot request
        self.watchdog_feeds = 0

    # -- time ----------------------------------------------------------------------------------

    def ticks_ms(self):
        return self.clock.ticks_ms()

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def ticks_add(self, a, delta):
        return ticks_add(a, delta)

    def rtc_ms(self):
        return int(self.clock.local_ms())

    def set_rtc_ms(self, ms):
        self.clock.offset_ms += ms - self.clock.local_ms()

    def lose_power(self):
        """What a power cut does to the RTC: it restarts at 2000-01-01 on the next boot."""
        self.clock.offset_ms -= self.clock.local_ms() - 946684800000.0

    # -- network -------------------------------------------------------------------------------

    async def open_connection(self, host, port, ssl=None, server_hostname=None):
        return await self.link.open_connection(host, port, ssl=ssl,
                                               server_hostname=server_hostname)

    async def resolve(self, host, port):
        return await self.link.resolve(host, port)

    def tls_context(self, cadata):
        """What the board builds (firmware/hw/esp32.py), in CPython's terms: the broker's
        certificate must chain to the site's CA and carry the name the client passes as
        server_hostname (CPython's PROTOCOL_TLS_CLIENT checks both by default; set here anyway,
        so the simulator can never drift to an unverified connection)."""
        context = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
        context.verify_mode = _ssl.CERT_REQUIRED
        context.check_hostname = True
        context.minimum_version = _ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cadata=bytes(cadata))
        return context

    async def link_up(self):
        # The radio link itself is up; faults are beyond it (see LinkPath), so the firmware's
        # reconnect and backoff logic is what gets exercised.
        return True

    def link_info(self):
        return {"type": self.link_type, "rssi": self.rssi if self.link.up else None}

    # -- hardware ------------------------------------------------------------------------------

    def amplifier(self, on):
        on = bool(on)
        if on != self.amp_on:
            self.amp_on = on
            self.amp_changes.append((time.time(), on))

    def amplifier_mute(self, on):
        on = bool(on)
        if on != self.muted:
            self.muted = on
            self.mute_changes.append((time.time(), on))

    def audible_from(self, t):
        """The amplifier as a listener hears it: the first true time (s) from ``t`` at which it
        passes sound, or None if it does not then (relay open, or muted). It does so once its
        relay has been closed ``relay_settle_ms`` and (a board with a mute line) its mute
        released ``unmute_ms``, both by the switching recorded up to ``t``."""
        closed = _last_change_to(self.amp_changes, t, True)
        if closed is None:
            return None
        ready = closed + self.relay_settle_ms / 1000.0
        if self.mute_changes:
            released = _last_change_to(self.mute_changes, t, False)
            if released is None:
                return None
            ready = max(ready, released + self.unmute_ms / 1000.0)
        return max(t, ready)

    def amplifier_fault(self):
        return self.amp_fault

    def amplifier_state(self):
        return False if self.relay_stuck else self.amp_on

    def amplifier_current(self):
        return self.amp_current_ma

    def led(self, pattern):
        if pattern != self.led_pattern:
            self.led_pattern = pattern
            self.led_changes.append((time.time(), pattern))

    @property
    def mains(self):
        return self._mains

    @mains.setter
    def mains(self, value):
        if value != self._mains:
            self.mains_changes.append((time.time(), value))
        self._mains = value

    def dc_now(self):
        """The DC input now: a draining battery while on battery with a drain set."""
        if self._mains or not self.battery_drain_v_per_s or not self.mains_changes:
            return self.dc_volts
        since = time.time() - self.mains_changes[-1][0]
        return max(0.0, self.battery_v - self.battery_drain_v_per_s * since)

    def battery_empty(self):
        return (not self._mains and self.battery_drain_v_per_s > 0
                and self.dc_now() <= self.battery_cutoff_v)

    def supply(self):
        return {"mains": self.mains, "dc": round(self.dc_now(), 2)}

    def temperature(self):
        return self.temperature_c

    def mem_free(self):
        return self.free_memory

    def random_below(self, n):
        return self._rng.randrange(n) if n > 0 else 0

    def feed_watchdog(self):
        self.watchdog_feeds += 1

    def reset_cause(self):
        return self.reset_cause_name

    def storage_space(self):
        if self.flash_free is None:
            return super().storage_space()
        return self.flash_free, self.flash_block

    def reboot(self):
        self.reboots.append(time.time())
        self.reset_cause_name = "hard"  # as machine.reset() reads on the next boot
        if self.on_reboot is not None:
            self.on_reboot(self)
