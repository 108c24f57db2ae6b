"""Runs first on every boot (copied to the device root as /boot.py): keep it minimal.

Full CPU speed for the ADPCM decoder and TLS, and the flash directory for config, state and cache.
"""

import os

import machine

machine.freq(240000000)
try:
    os.mkdir("/data")
except OSError:
    pass  # already there
