"""What the firmware shell needs from the board it runs on.

Two implementations: ``firmware.hw.esp32.Esp32Platform`` on a real receiver and
``simulator.host.HostPlatform`` in the simulator. The shell and the core never touch
``machine``, ``network`` or sockets directly; everything board-specific is behind this class, so
many simulated receivers can share one CPython process.

Times: ``ticks_ms`` is a monotonic millisecond counter that may wrap (as MicroPython's does);
compare with ``ticks_diff``. The receiver's own idea of network time is kept by the shell's
clock estimator, not here.
"""


class SinkError(Exception):
    """An audio output that cannot go on (a chip that does not answer, a DREQ line stuck low).

    The message is short and names the chip and what to check ("vs1053: DREQ stuck low"): the
    shell reports it as the play's failure detail, so it reaches the head-end as it is.
    """


class Sink:
    """An audio output. ``codecs`` lists what it decodes ("mp3" for VS1053, "adpcm" for I2S).

    Protocol of use: ``open(codec, rate, skip_samples)``, then ``await write(buf)`` repeatedly
    with whole MP3 frames or whole ADPCM blocks (``write`` returns when the data is queued and
    paces the caller at real time), then ``close()`` at the end or ``stop()`` to cut it short.
    ``skip_samples`` drops that many samples at the start, so a late start stays in step with
    the other receivers (sample-accurate start).
    """

    codecs = ()  # type: tuple
    name = "none"

    def open(self, codec, rate, skip_samples=0):
        raise NotImplementedError

    async def write(self, buf):
        raise NotImplementedError

    async def drain(self):
        """Wait until everything written has been heard."""
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

    def set_volume(self, volume):
        """0..100."""
        raise NotImplementedError

    async def self_test(self, level_dbfs, ms):
        """The periodic test (firmware/core.py, SELFTEST): play a quiet tone of ``level_dbfs``
        for ``ms`` when nothing else plays, or check the output another way; return when
        done, raise ``SinkError`` (its message: what failed) if the output does not work.
        A sink without a check of its own fails it: an untested sink is no passed test."""
        raise SinkError("%s: no self-test" % self.name)


class Platform:
    sink = None            # a Sink
    storage_dir = "/data"  # flash directory for the cache and the state file

    def ticks_ms(self):
        raise NotImplementedError

    def ticks_diff(self, a, b):
        raise NotImplementedError

    def ticks_add(self, a, delta):
        raise NotImplementedError

    def rtc_ms(self):
        """The board's own wall clock, ms since the Unix epoch (before any time sync)."""
        raise NotImplementedError

    def set_rtc_ms(self, ms):
        """Set the board's wall clock to network time ``ms`` (after each time sync), so that a
        reset without a power cut boots with the right time."""

    async def open_connection(self, host, port, ssl=None, server_hostname=None):
        """A TCP (or TLS) stream pair ``(reader, writer)``, as ``asyncio.open_connection``.

        ``ssl``: None (TCP), True (TLS without verification, on MicroPython: media downloads,
        which the shell checks by SHA-256 anyway) or a context from ``tls_context`` (verified).
        ``server_hostname``: the name the server's certificate must carry, given with a
        context because ``host`` is then an address (``resolve``)."""
        raise NotImplementedError

    async def resolve(self, host, port):
        """The address to dial for ``host`` (a DNS lookup), asked by the MQTT client once per
        connect cycle (firmware/mqtt.py). This default gives the name back: the dial resolves
        it then, at every attempt."""
        return host

    def tls_context(self, cadata):
        """A client TLS context that requires the server's certificate to chain to the CA whose
        DER bytes are ``cadata`` (the site's CA, from provisioning), for ``open_connection``."""
        raise NotImplementedError("TLS to the broker is not available on this platform")

    async def link_up(self):
        """Bring the network link up (Wi-Fi, Ethernet, PPP); return when it is usable."""
        raise NotImplementedError

    def link_info(self):
        """``{"type": "wifi"|"eth"|"ppp"|"sim", "rssi": dBm or None}``."""
        raise NotImplementedError

    def amplifier(self, on):
        """Switch the power amplifier relay."""
        raise NotImplementedError

    def amplifier_mute(self, on):
        """Assert (True) or release the amplifier's mute line; called only on a board whose
        config names one (pins.amp_mute). The board boots with it asserted."""
        raise NotImplementedError

    def amplifier_fault(self):
        return False

    def amplifier_state(self):
        """The relay read back (True: on), or None when the board cannot read it."""
        return None

    def amplifier_current(self):
        """The amplifier's supply current in mA, or None without a sensor."""
        return None

    def led(self, pattern):
        """"off", "on", "slow" (no link), "fast" (identify), "play"."""
        raise NotImplementedError

    def supply(self):
        """``{"mains": 0|1|None, "dc": volts or None}``."""
        raise NotImplementedError

    def temperature(self):
        return None

    def mem_free(self):
        raise NotImplementedError

    def random_below(self, n):
        """A random int in [0, n), for backoff jitter and ids."""
        raise NotImplementedError

    def random_bytes(self, n):
        """``n`` bytes from the board's hardware RNG, for nonces (the birth's ``reset_floor``
        nonce): never seeded or repeatable, unlike ``random_below`` in the simulator, so each
        boot, simulated or not, draws a nonce no earlier boot had. ``os.urandom`` is the ESP32's
        hardware RNG and the host's kernel RNG."""
        import os

        return os.urandom(n)

    def feed_watchdog(self):
        pass

    def reboot(self):
        raise NotImplementedError

    def reset_cause(self):
        """Why this boot happened, one of ``RESET_CAUSES``: "power-on", "brown-out" (the supply
        sagged; on the ESP32 a brown-out resets the chip), "watchdog", "hard" (a reset by
        software, ``machine.reset()`` after a crash, a panic, the reset pin), "soft" (a soft
        reset of the interpreter), "deep-sleep" or "unknown"."""
        return "unknown"

    def storage_space(self):
        """``(free bytes, block bytes)`` of the filesystem under ``storage_dir``, or None."""
        from firmware.store import fs_space

        return fs_space(self.storage_dir)


RESET_CAUSES = ("power-on", "brown-out", "watchdog", "hard", "soft", "deep-sleep", "unknown")
