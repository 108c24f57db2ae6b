"""The receiver's entry point (copied to the device root as /main.py).

Loads /data/config.json (provisioned by the technician, see docs/flashing.md), builds the board
and runs the firmware. A config.json that is damaged gives way to config.good.json, the last one
that reached the broker (firmware/config.py), and the birth says so; with neither, the REPL
stays usable and the LED blinks fast. Any crash reboots the board after a pause (and the
watchdog catches a hang); the shell counts boots that crash before they are stable and, after
three in a row, comes up in safe mode: connected and reporting, playing nothing
(firmware/recovery.py). First of all, before the firmware is imported (importing it alone does
not fit in a board without PSRAM), the heap is checked: too small a heap is refused with the
reason, printed on the REPL, and the LED blinking fast (firmware/heap.py).
"""

import gc
import sys
import time

import machine

from firmware.heap import heap_refusal

STORAGE_DIR = "/data"
CRASH_PAUSE_S = 10


LED_PIN = 2  # config.DEFAULT_PINS["led"], before the config module may be imported


def blink_fast(pin=LED_PIN):
    led = machine.Pin(pin, machine.Pin.OUT)
    for _ in range(20):  # a few seconds of fast blinking, then the REPL
        led.value(1 - led.value())
        time.sleep_ms(150)


def unprovisioned(reason):
    from firmware import config

    print("loaxa: not provisioned:", reason)
    print("loaxa: write %s/%s (docs/flashing.md), then reset" % (STORAGE_DIR, config.CONFIG_FILE))
    blink_fast(config.DEFAULT_PINS["led"])


def main():
    gc.collect()
    refusal = heap_refusal(gc.mem_free(), gc.mem_alloc())
    if refusal:
        print("loaxa: not starting:", refusal)
        blink_fast()
        return
    import asyncio

    from firmware import config
    from firmware.shell import Receiver

    try:
        cfg = config.load(STORAGE_DIR)
    except config.ConfigError as e:
        unprovisioned(str(e))
        return
    print("loaxa: starting", config.redacted(cfg)["device"])
    fallback = cfg.get("fallback")
    if fallback:
        print("loaxa: %s refused (%s): running on %s" % (config.CONFIG_FILE, fallback["error"],
                                                         fallback["file"]))
    from firmware.hw.esp32 import Esp32Platform

    try:
        asyncio.run(Receiver(cfg, Esp32Platform(cfg, STORAGE_DIR)).run())
    except KeyboardInterrupt:
        return  # Ctrl-C from a technician's mpremote: stay in the REPL
    except Exception as e:
        sys.print_exception(e)
        time.sleep(CRASH_PAUSE_S)
        machine.reset()


main()
