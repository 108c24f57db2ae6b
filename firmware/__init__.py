"""Loaxa receiver firmware (MicroPython on ESP32; the simulator runs the same code on CPython)."""

FIRMWARE_VERSION = "0.1.0"
