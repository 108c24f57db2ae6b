"""Runs first on every boot (copied to the device root as /boot.py): keep it minimal.

Full CPU speed for the ADPCM decoder and TLS, the flash directory for config, state and cache,
and the firmware version to run: an update (firmware/ota.py) installs each version in its own
folder under /data/fw and names it in a pointer; ``otaboot.choose`` counts a trial boot (or
rolls back) and names the folder, which then goes first on ``sys.path``. Without a pointer, or
if anything about it fails, the factory firmware in /lib runs.
"""

import os

import machine

machine.freq(240000000)
try:
    os.mkdir("/data")
except OSError:
    pass  # already there
try:
    from firmware import otaboot

    _lib = otaboot.choose("/data")
    if _lib:
        otaboot.activate(_lib)
except Exception as e:  # a factory firmware without otaboot, or worse: boot it as it is
    print("loaxa: boot:", repr(e))
