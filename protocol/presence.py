"""Presence rules, in one place: how often a receiver reports, and how long it may be silent
before the head-end counts it offline.

Used by the firmware (firmware/config.py: the heartbeat and keepalive period by link type), the
head-end (headend/settings.py defaults, headend/mqtt/ingest.py ``offline_allowance_s`` and
``sweep_presence``) and docs/protocol.md ("Presence rules", rendered by tools/protocol_doc.py).

The rule: a receiver is offline after ``OFFLINE_FACTOR_TENTHS / 10`` of its heartbeat period
without any authentic report (or at once on its death), noticed by the head-end's sweep within
``SWEEP_S`` more. 1.4 periods, not 1.5 or 2: at the Wi-Fi period of 30 s that is 42 s, plus a
2 s sweep 44 s, inside the promise that an outage shows within ``NOTICE_WITHIN_S`` (45 s); and
0.4 of a period (12 s) still covers one heartbeat that is late (a QoS 1 retry, a busy link, the
loop's own drift) without a receiver flapping offline and back. Whole seconds in integer
arithmetic, so the board computes it without floats.
"""

# Heartbeat (and MQTT keepalive) period by link type, s. On a paid 4G link (ppp) every packet
# costs ~40 B of TCP/IP and ~29 B of TLS: 60 s keeps a receiver at ~0.6 MB/day on the wire with
# TLS, against ~1.1 MB/day at 30 s (bench/bench_link_bytes.py).
LINK_PERIODS_S = {"wifi": 30, "eth": 30, "ppp": 60}
DEFAULT_PERIOD_S = 30  # any other link type (the simulator's "sim")

OFFLINE_FACTOR_TENTHS = 14  # offline after 1.4 heartbeat periods of silence
SWEEP_S = 2                 # the head-end looks for silent receivers this often
NOTICE_WITHIN_S = 45        # the promise for a Wi-Fi receiver: an outage shows within this


def period_s(link_type):
    """The heartbeat period of a receiver on ``link_type`` ("wifi", "eth", "ppp", ...)."""
    return LINK_PERIODS_S.get(link_type, DEFAULT_PERIOD_S)


def offline_allowance_s(period):
    """How long a receiver with heartbeat ``period`` (s) may be silent before it is offline."""
    return period * OFFLINE_FACTOR_TENTHS // 10


def noticed_within_s(period):
    """The longest an outage of a receiver with heartbeat ``period`` goes unnoticed."""
    return offline_allowance_s(period) + SWEEP_S
