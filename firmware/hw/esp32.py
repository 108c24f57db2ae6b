"""The real board: ``Esp32Platform`` implements firmware.platform.Platform on an ESP32 (WROVER).

Pins and calibration come from the config's "pins", "dc_divider" and "dc_offset_v" (defaults in
firmware/config.py for an ESP32-WROVER board): amplifier relay (active high), status LED,
mains-present input (high when mains is there), DC input voltage through a resistor divider on
an ADC pin, amplifier fault input (active low, as on most class-D modules).

Links: Wi-Fi today (firmware/hw/wifi.py). "eth" (LAN8720) and "ppp" (4G modem) are planned.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

import gc
import os
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
        self._led = Pin(pins["led"], Pin.OUT, value=0)
        self._mains = Pin(pins["mains"], Pin.IN)
        self._fault = Pin(pins["amp_fault"], Pin.IN, Pin.PULL_UP)
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

    async def open_connection(self, host, port, ssl=None):
        return await asyncio.open_connection(host, port, ssl=ssl)

    async def link_up(self):
        await self.link.up()

    def link_info(self):
        return {"type": self.link.kind, "rssi": self.link.rssi()}

    # -- board I/O -----------------------------------------------------------------------

    def amplifier(self, on):
        self._amp.value(1 if on else 0)

    def amplifier_fault(self):
        return self._fault.value() == 0

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
