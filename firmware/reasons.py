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
