"""Hours that come back every day, on the network clock (epoch ms): a zone's early-morning
hours (firmware/volume.py) and an amplifier's standby hours (firmware/core.py). One rule:
an epoch ms is a long int on the board, the phase and length small ones."""

DAY_MS = 86400000


def in_hours(start, length, t):
    """Whether ``t`` falls in the ``length`` ms that begin at ``start`` (any day's start,
    or its phase in the day) and every 24 h after."""
    return (t - start) % DAY_MS < length
