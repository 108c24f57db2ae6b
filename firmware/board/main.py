"""The receiver's entry point (copied to the device root as /main.py).

Loads /data/config.json (provisioned by the technician, see docs/flashing.md), builds the board
and runs the firmware. An unprovisioned or broken configuration leaves the REPL usable and the
LED blinking fast; any crash reboots the board after a pause (and the watchdog catches a hang).
"""

import asyncio
import sys
import time

import machine

from firmware import config
from firmware.shell import Receiver

STORAGE_DIR = "/data"
CRASH_PAUSE_S = 10


def unprovisioned(reason):
    print("loaxa: not provisioned:", reason)
    print("loaxa: write %s/%s (docs/flashing.md), then reset" % (STORAGE_DIR, config.CONFIG_FILE))
    led = machine.Pin(config.DEFAULT_PINS["led"], machine.Pin.OUT)
    for _ in range(20):  # a few seconds of fast blinking, then the REPL
        led.value(1 - led.value())
        time.sleep_ms(150)


def main():
    try:
        cfg = config.load(STORAGE_DIR)
    except config.ConfigError as e:
        unprovisioned(str(e))
        return
    print("loaxa: starting", config.redacted(cfg)["device"])
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
