"""The loudest a receiver may play at a moment: its zone's limit, and the lower limit of the
zone's early-morning hours while they last (firmware/core.py enforces both).

``early`` is a ``schedule``'s ``early`` field: ``{"from": a start of the hours (net ms),
"len": their length (ms), "vmax": the limit in them}``; the hours recur every 24 h from
``from``, so a receiver whose link is down for days keeps its quiet mornings (exact in a
zone without daylight saving, such as Asia/Ho_Chi_Minh; elsewhere the head-end's next window
moves them). Times are epoch ms, integers (never floats on the ESP32).
"""

from firmware.daily import DAY_MS, in_hours


def in_early(early, t):
    """Whether ``t`` falls in the early hours ``early`` (None: never)."""
    return early is not None and in_hours(early["from"], early["len"], t)


def limit_at(vmax, early, t):
    """The volume limit at ``t`` (None: none): the lower of the zone's ``vmax`` and, in the
    early hours, theirs."""
    if not in_early(early, t):
        return vmax
    low = early["vmax"]
    return low if vmax is None or low < vmax else vmax


def next_change(early, t):
    """When the early hours next begin or end after ``t`` (None: never)."""
    if early is None:
        return None
    into = (t - early["from"]) % DAY_MS
    if into < early["len"]:
        return t - into + early["len"]
    return t - into + DAY_MS
