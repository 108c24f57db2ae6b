"""The real board: ``Esp32Platform`` implements firmware.platform.Platform on an ESP32 (WROVER).

Pins and calibration come from the config's "pins", "dc_divider" and "dc_offset_v" (defaults in
firmware/config.py for an ESP32-WROVER board): amplifier relay (active high), status LED,
mains-present input (high when mains is there), DC input voltage through a resistor divider on
an ADC pin, amplifier fault input (active low, as on most class-D modules). The default inputs
sit on GPIO34-39, which have no internal pull resistors: the wiring provides them
(docs/flashing.md), the code asks for none.

Links: Wi-Fi today (firmware/hw/wifi.py). "eth" (LAN8720) and "ppp" (4G modem) are planned.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

import gc
import os
import socket
import time

import esp32
import machine
from machine import ADC, WDT, Pin

from firmware.platform import Platform

WATCHDOG_MS = 30000
# MicroPython's ESP32 port counts time.time() from 2000-01-01; the wire wants the Unix epoch.
_EPOCH_2000_MS = 946684800000
_LED_PERIODS_MS = {"slow": 1000, "fast": 150, "play": 0, "on": 0, "off": 0}


def epoch_offset_ms(gmtime_of_zero_year):
    """ms to add to the port's time to get Unix time, from ``time.gmtime(0)[0]``."""
    return _EPOCH_2000_MS if gmtime_of_zero_year == 2000 else 0


def dc_volts(microvolts, divider, offset_v):
    """Input voltage from the ADC pin's µV reading through a ``divider``:1 resistor divider."""
    return round(microvolts * divider / 1000000 + offset_v, 2)


# machine.reset_cause() on the ESP32 port (ports/esp32/modmachine.c) maps ESP-IDF's
# esp_reset_reason(): ESP_RST_POWERON and ESP_RST_BROWNOUT both to PWRON_RESET, ESP_RST_SW and
# ESP_RST_PANIC (machine.reset(), so every crash of main.py, and a panic) to HARD_RESET, the
# three watchdogs to WDT_RESET. A brown-out is therefore read from the chip: on the classic
# ESP32 the PRO CPU's last reset reason is RTC_CNTL_RESET_STATE_REG bits 0-5, and 15 is
# RTCWDT_BROWN_OUT_RESET (ESP32 TRM, rom/rtc.h). The S2/S3/C3 keep that register elsewhere (a
# read there would fault), so on them a brown-out reads as a power-on.
_RTC_CNTL_RESET_STATE_REG = 0x3FF48034
_RESET_REASON_MASK = 0x3F
_RESET_BROWN_OUT = 15


def reset_cause_name(cause, raw_reason=None):
    """A Platform.reset_cause() name from ``machine.reset_cause()`` and, for a power-on, the
    chip's raw reset reason (None when it cannot be read)."""
    if cause == getattr(machine, "PWRON_RESET", None):
        return "brown-out" if raw_reason == _RESET_BROWN_OUT else "power-on"
    for name, constant in (("hard", "HARD_RESET"), ("watchdog", "WDT_RESET"),
                           ("deep-sleep", "DEEPSLEEP_RESET"), ("soft", "SOFT_RESET")):
        if cause == getattr(machine, constant, None):
            return name
    return "unknown"


def _classic_esp32():
    """The chip is an ESP32 (not S2/S3/C3): ``os.uname().machine`` ends "with ESP32"."""
    try:
        return os.uname().machine.endswith("with ESP32")
    except Exception:
        return False


def read_reset_cause():
    cause = machine.reset_cause()
    raw = None
    if cause == getattr(machine, "PWRON_RESET", None) and _classic_esp32():
        raw = machine.mem32[_RTC_CNTL_RESET_STATE_REG] & _RESET_REASON_MASK
    return reset_cause_name(cause, raw)


def make_sink(cfg):
    pins = cfg["pins"]
    if cfg["sink"] == "i2s":
        from firmware.hw.i2s_adpcm import I2SAdpcmSink

        return I2SAdpcmSink(0, pins["i2s_sck"], pins["i2s_ws"], pins["i2s_sd"])
    from firmware.hw.vs1053 import VS1053Sink

    return VS1053Sink(2, pins["vs_sck"], pins["vs_mosi"], pins["vs_miso"], pins["vs_xcs"],
                      pins["vs_xdcs"], pins["vs_dreq"], pins["vs_reset"])


def make_link(cfg):
    link = cfg["link"]
    if link["type"] == "wifi":
        from firmware.hw.wifi import WifiLink

        return WifiLink(link["ssid"], link["password"], link.get("timeout_s", 30),
                        hostname=cfg["device"])
    raise ValueError("link type %s is not supported yet (wifi only)" % link["type"])


class Esp32Platform(Platform):
    def __init__(self, cfg, storage_dir="/data"):
        pins = cfg["pins"]
        self.storage_dir = storage_dir
        self._cfg = cfg
        self._amp = Pin(pins["amp"], Pin.OUT, value=0)
        # The mute line, on boards that have one: asserted from the first instant, so the
        # amplifier is never heard powering up (firmware/core.py releases it for a play).
        self._mute_level = cfg.get("amp_mute_level", 1)
        self._mute = (None if pins.get("amp_mute") is None
                      else Pin(pins["amp_mute"], Pin.OUT, value=self._mute_level))
        self._led = Pin(pins["led"], Pin.OUT, value=0)
        self._mains = Pin(pins["mains"], Pin.IN)
        # No Pin.PULL_UP: GPIO34-39 (39 by default) have no internal pulls and MicroPython
        # ignores the request silently. The fault output of a class-D module is open drain, so
        # the board needs an external pull-up (10 kΩ to 3.3 V, docs/flashing.md); without it a
        # floating input reads noise as faults.
        self._fault = Pin(pins["amp_fault"], Pin.IN)
        self._dc = ADC(Pin(pins["dc_adc"]), atten=ADC.ATTN_11DB)
        self._epoch_ms = epoch_offset_ms(time.gmtime(0)[0])
        self._wdt = None
        self._led_task = None
        self.link = make_link(cfg)
        self.sink = make_sink(cfg)

    # -- time ----------------------------------------------------------------------------

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, a, delta):
        return time.ticks_add(a, delta)

    def rtc_ms(self):
        return time.time_ns() // 1000000 + self._epoch_ms

    def set_rtc_ms(self, ms):
        # The RTC keeps counting across machine.reset() and the watchdog (not a power cut):
        # set here after each sync, it lets the shell boot on time with its link down.
        ms -= self._epoch_ms
        t = time.gmtime(ms // 1000)
        # RTC.datetime: (year, month, day, weekday, hours, minutes, seconds, microseconds)
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], ms % 1000 * 1000))

    # -- network -------------------------------------------------------------------------

    async def open_connection(self, host, port, ssl=None, server_hostname=None):
        # With a context from tls_context the certificate must name server_hostname, not the
        # address dialled. MicroPython's open_connection wraps the socket with
        # do_handshake_on_connect=False: the handshake, and the certificate check, run in the
        # first writes and reads, where the MQTT client sees (and counts) a refusal.
        return await asyncio.open_connection(host, port, ssl=ssl, server_hostname=server_hostname)

    async def resolve(self, host, port):
        # Blocking: MicroPython has no asynchronous DNS, and lwIP's getaddrinfo holds the whole
        # event loop until the answer (or its timeout) comes. Hence once per connect cycle
        # (firmware/mqtt.py), never per attempt. A literal address is answered without a query.
        address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
        # The ESP32 port gives ("10.0.0.2", 8883). A port that gives a raw sockaddr instead
        # cannot be dialled by address from here: the name then goes to the dial.
        return address[0] if isinstance(address, tuple) else host

    def tls_context(self, cadata):
        import ssl  # only with TLS configured: mbedtls's context costs heap

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # MicroPython's ssl.SSLContext starts at CERT_NONE, unlike CPython's: without this any
        # certificate, or none, would do. (The ESP32 stubs leave verify_mode out; the port has
        # it: extmod/modtls_mbedtls.c's attribute handler, micropython-lib's ssl.py property.)
        context.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]
        context.load_verify_locations(cadata=cadata)  # DER bytes of the site's CA
        return context

    async def link_up(self):
        await self.link.up()

    def link_info(self):
        return {"type": self.link.kind, "rssi": self.link.rssi()}

    # -- board I/O -----------------------------------------------------------------------

    def amplifier(self, on):
        self._amp.value(1 if on else 0)

    def amplifier_mute(self, on):
        if self._mute is not None:
            self._mute.value(self._mute_level if on else 1 - self._mute_level)

    def amplifier_fault(self):
        return self._fault.value() == 0

    def amplifier_state(self):
        # The relay's GPIO read back: on the ESP32 an output pin's value() reads the pad, so a
        # driver stage shorted or a pin held low reads wrong. The relay's contacts themselves
        # have no feedback on this board (and no current sensor: amplifier_current is None).
        return self._amp.value() == 1

    def led(self, pattern):
        if self._led_task is not None:
            self._led_task.cancel()
            self._led_task = None
        period = _LED_PERIODS_MS.get(pattern, 0)
        if period:
            self._led_task = asyncio.create_task(self._blink(period))
        else:
            self._led.value(0 if pattern == "off" else 1)

    async def _blink(self, period_ms):
        while True:
            self._led.value(1 - self._led.value())
            await asyncio.sleep(period_ms / 2000)

    def supply(self):
        try:
            dc = dc_volts(self._dc.read_uv(), self._cfg["dc_divider"], self._cfg["dc_offset_v"])
        except Exception:
            dc = None
        return {"mains": self._mains.value(), "dc": dc}

    def temperature(self):
        read = getattr(esp32, "mcu_temperature", None)  # ESP32-S2/S3/C3 ports, in °C
        try:
            if read is not None:
                return read()
            return round((esp32.raw_temperature() - 32) / 1.8)  # classic ESP32: °F
        except Exception:
            return None

    def mem_free(self):
        return gc.mem_free()

    def random_below(self, n):
        return int.from_bytes(os.urandom(4), "big") % n

    def feed_watchdog(self):
        # Started on the first feed, so a slow boot (Wi-Fi, flash) is not cut short by it.
        if self._wdt is None:
            self._wdt = WDT(timeout=WATCHDOG_MS)
        self._wdt.feed()

    def reboot(self):
        machine.reset()

    def reset_cause(self):
        cause = getattr(self, "_reset_cause", None)
        if cause is None:  # read once: it names how this boot began
            try:
                cause = read_reset_cause()
            except Exception:
                cause = "unknown"
            self._reset_cause = cause
        return cause
