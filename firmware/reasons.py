"""Why the receiver refused a command or gave up a fetch: the reason strings of its negative
acks and fetch_failed events, in a module that imports nothing.

Kept apart so the modules deciding with them (firmware/recovery.py, firmware/fetch_policy.py)
do not import each other: on the board every nested import of a source module costs C stack
while it compiles, and the receiver's import chain must stay shallow.
"""

REFUSED_SAFE_MODE = "safe-mode"
REFUSED_STORAGE = "storage"     # the counter could not be written (a flash error)
REFUSED_NO_SPACE = "no-space"   # ... because the flash is full
CACHE_FULL = "cache-full"       # the cache cannot make room (what it holds is all needed)
REFUSED_VOLUME = "volume-limit"  # a play, stream, volume or schedule above the zone's limit

# Why a self-test (the periodic test, firmware/core.py) failed or did not run: the ``reason``
# of its selftest event, the first that applies in this order.
SELFTEST_EMERGENCY = "emergency"      # not run: an emergency plays or is due
SELFTEST_BUSY = "busy"                # not run: something played or was due for too long
SELFTEST_INTERRUPTED = "interrupted"  # cut short: a broadcast started
SELFTEST_SINK = "sink"                # the sink could not play the tone (its error: detail)
SELFTEST_RELAY = "amp-relay"          # the relay did not read back as switched on
SELFTEST_FAULT = "amp-fault"          # the amplifier's fault line was active
SELFTEST_FLASH = "flash-low"          # less flash free than the cache's floor
SELFTEST_CLOCK = "not-synced"         # the clock is not synced with the head-end
