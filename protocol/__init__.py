"""The Loaxa wire protocol: topics, envelopes, signing and audio frames.

This package is the single definition of what crosses the network. It does no I/O and is
MicroPython-safe (no dataclasses, enum, typing at run time, f-strings kept simple), so the
receiver firmware, the head-end and the simulator import the same code unchanged.
"""

PROTOCOL_VERSION = 1
