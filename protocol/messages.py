"""JSON messages: commands (signed), presence, heartbeat, events and time sync.

Every JSON message is a compact object with ``"v": 1``. Field names are short because receivers
on a paid 4G link pay for every byte of telemetry. ``docs/protocol.md`` has a field table and an
example for each message; this module is the code both sides run.

Times are integers: milliseconds since the Unix epoch by the head-end's clock ("network time").
"""

import json

from protocol import PROTOCOL_VERSION
from protocol.errors import ProtocolError
from protocol.signing import open_sealed, seal
from protocol.topics import EVENT, HEARTBEAT, STATUS, valid_id

# Bulletin classes, lowest first. A higher class preempts a lower one.
PRIO_NORMAL = 0
PRIO_PRIORITY = 1
PRIO_LIVE = 2
PRIO_EMERGENCY = 3
PRIORITY_NAMES = ("normal", "priority", "live", "emergency")

# Command kinds.
PLAY = "play"          # play a cached (or fetched first) media item at a time
STREAM = "stream"      # play a live stream of audio frames
STOP = "stop"          # stop a broadcast, or everything
VOLUME = "volume"      # set the default volume
REBOOT = "reboot"
IDENTIFY = "identify"  # blink the LED / beep so a technician finds the box
SCHEDULE = "schedule"  # replace the schedule window with the items given
FETCH = "fetch"        # fetch a media item into the cache ahead of air time
COMMANDS = (PLAY, STREAM, STOP, VOLUME, REBOOT, IDENTIFY, SCHEDULE, FETCH)

# Event kinds (receiver -> head-end on .../evt).
EV_ACK = "ack"            # a command was accepted (ok) or refused (with reason)
EV_REJECTED = "rejected"  # a message failed authentication or validation
EV_FETCHED = "fetched"    # a media item is in the cache, hash checked
EV_FETCH_FAILED = "fetch_failed"
EV_STARTED = "started"    # proof of play: audio started
EV_ENDED = "ended"        # proof of play: audio ended, with a reason
EVENTS = (EV_ACK, EV_REJECTED, EV_FETCHED, EV_FETCH_FAILED, EV_STARTED, EV_ENDED)

# Why playback ended.
END_FINISHED = "finished"
END_PREEMPTED = "preempted"
END_CANCELLED = "cancelled"
END_FAILED = "failed"
END_REASONS = (END_FINISHED, END_PREEMPTED, END_CANCELLED, END_FAILED)

# How far a command's counter may run ahead of the receiver's synced clock (ms). The head-end
# signs ``ctr = max(last + 1, now)`` (``next_counter``), so an honest counter is its clock plus
# one per command sent within the same ms: far less than this. The receiver refuses a counter
# above ``now + MAX_COUNTER_AHEAD_MS`` ("future-counter") without raising its replay floor, so
# one command from a head-end whose clock jumped ahead (or a bad counter such as 2**63) cannot
# make it refuse every later command as a replay. 10 min covers sync error and drift between
# syncs with a wide margin.
MAX_COUNTER_AHEAD_MS = 600000

# Bounds of the numbers a receiver reports, so a report can never carry a value the head-end
# cannot store or turn into a time: counters (boot, conn, event seq, uptime s) count up from 0
# in 31 bits, the ESP32's small int; times are ms up to 9999-12-31, the last a datetime holds.
MAX_COUNT = 0x7FFFFFFF
MAX_TIME_MS = 253402300799999

CODECS = ("mp3", "adpcm")
MAX_PAYLOAD = 16384  # JSON messages larger than this are refused unread
MAX_SCHEDULE_ITEMS = 64


def encode(obj):
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(payload):
    """Parse a JSON message; raise ProtocolError("malformed") for anything but a v1 object."""
    if payload is None or len(payload) > MAX_PAYLOAD:
        raise ProtocolError("malformed", "empty or too large")
    try:
        obj = json.loads(bytes(payload))
    except Exception:
        raise ProtocolError("malformed", "not JSON")
    if not isinstance(obj, dict):
        raise ProtocolError("malformed", "not an object")
    if obj.get("v") != PROTOCOL_VERSION:
        raise ProtocolError("malformed", "unsupported version")
    return obj


# -- validation helpers --------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def need_int(obj, key, lo=None, hi=None, optional=False):
    value = obj.get(key)
    if value is None and optional:
        return None
    if not _is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ProtocolError("bad-field", key)
    return value


def need_number(obj, key, lo, hi, optional=False):
    """An int or a finite float within [lo, hi] (NaN compares false both ways: refused)."""
    value = obj.get(key)
    if value is None and optional:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not lo <= value <= hi):
        raise ProtocolError("bad-field", key)
    return value


def need_str(obj, key, optional=False, max_len=512):
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ProtocolError("bad-field", key)
    return value


def need_id(obj, key, optional=False):
    value = obj.get(key)
    if value is None and optional:
        return None
    if not valid_id(value):
        raise ProtocolError("bad-field", key)
    return value


def _check_media(a):
    need_id(a, "item")
    need_str(a, "url")
    sha = need_str(a, "sha")
    if len(sha) != 64:
        raise ProtocolError("bad-field", "sha")
    need_int(a, "size", 1)
    need_int(a, "dur", 1)
    if a.get("codec") not in CODECS:
        raise ProtocolError("bad-field", "codec")
    need_int(a, "rate", 8000, 48000)


def _check_play(a):
    need_id(a, "bid")
    _check_media(a)
    need_int(a, "at", 0, optional=True)
    need_int(a, "prio", PRIO_NORMAL, PRIO_EMERGENCY)
    need_int(a, "vol", 0, 100, optional=True)


def check_args(kind, a):
    """Validate a command's arguments; raise ProtocolError("bad-args"/"bad-field")."""
    if not isinstance(a, dict):
        raise ProtocolError("bad-args", "not an object")
    if kind == PLAY:
        _check_play(a)
    elif kind == FETCH:
        _check_media(a)
    elif kind == STREAM:
        need_id(a, "bid")
        need_id(a, "sid")
        need_int(a, "sno", 0, 0xFFFFFFFF)
        key = need_str(a, "key")
        if len(key) != 64:
            raise ProtocolError("bad-field", "key")
        if a.get("codec") not in CODECS:
            raise ProtocolError("bad-field", "codec")
        need_int(a, "rate", 8000, 48000)
        need_int(a, "prio", PRIO_NORMAL, PRIO_EMERGENCY)
        need_int(a, "vol", 0, 100, optional=True)
        need_int(a, "until", 0, optional=True)
    elif kind == STOP:
        need_id(a, "bid", optional=True)
    elif kind == VOLUME:
        need_int(a, "vol", 0, 100)
    elif kind == IDENTIFY:
        need_int(a, "secs", 1, 600, optional=True)
    elif kind == SCHEDULE:
        need_int(a, "from", 0)
        need_int(a, "to", 0)
        items = a.get("items")
        if not isinstance(items, list) or len(items) > MAX_SCHEDULE_ITEMS:
            raise ProtocolError("bad-field", "items")
        for item in items:
            if not isinstance(item, dict):
                raise ProtocolError("bad-field", "items")
            _check_play(item)
            if item.get("at") is None:
                raise ProtocolError("bad-field", "at")
    elif kind == REBOOT:
        pass
    else:
        raise ProtocolError("bad-args", "unknown command %s" % kind)


# -- commands ------------------------------------------------------------------------------

def command_body(device, kind, args, ctr, exp, cmd_id):
    """The JSON body of a command, before signing."""
    return encode({"v": PROTOCOL_VERSION, "dev": device, "id": cmd_id, "ctr": ctr,
                   "exp": exp, "k": kind, "a": args})


def sign_command(key, device, kind, args, ctr, exp, cmd_id):
    """The signed wire payload of a command (see protocol.signing)."""
    check_args(kind, args)
    return seal(key, command_body(device, kind, args, ctr, exp, cmd_id))


def next_counter(last, now):
    """The counter for a device's next command: above its last one (``last``, 0 if none) and
    never below the clock ``now`` (ms), so counters keep growing even when the sender lost
    the last one it used (a restart, a crash before the counter was stored)."""
    return max(last + 1, now)


def open_command(key, payload, device):
    """Authenticate and validate a command for ``device``; return it as a dict.

    Raises ProtocolError with reason "malformed", "bad-signature", "wrong-device",
    "bad-field" or "bad-args". Replay (counter) and expiry are checked by the receiver's
    core, which holds the last counter and the clock.
    """
    cmd = decode(open_sealed(key, payload))
    if cmd.get("dev") != device:
        raise ProtocolError("wrong-device")
    need_str(cmd, "id", max_len=64)
    need_int(cmd, "ctr", 1)
    need_int(cmd, "exp", 0)
    kind = cmd.get("k")
    if kind not in COMMANDS:
        raise ProtocolError("bad-args", "unknown command")
    check_args(kind, cmd.get("a"))
    return cmd


# -- time sync -----------------------------------------------------------------------------

def time_request(t0):
    """Receiver -> head-end: ``t0`` is the receiver's monotonic ms when sent."""
    return encode({"v": PROTOCOL_VERSION, "t0": t0})


def open_time_request(payload):
    """The receiver's ``t0`` from a time request; ProtocolError if it is malformed."""
    return need_int(decode(payload), "t0")


def time_reply(key, device, t0, t1, t2):
    """Head-end -> receiver, signed: t1 when the request arrived, t2 when the reply left."""
    return seal(key, encode({"v": PROTOCOL_VERSION, "dev": device, "t0": t0, "t1": t1, "t2": t2}))


def open_time_reply(key, payload, device):
    body = decode(open_sealed(key, payload))
    if body.get("dev") != device:
        raise ProtocolError("wrong-device")
    return need_int(body, "t0"), need_int(body, "t1", 0), need_int(body, "t2", 0)


# -- presence, heartbeat, events -----------------------------------------------------------

# The birth's fields (docs/protocol.md, "Presence", has a row for each): the session and what
# the receiver is, then BIRTH_BOOT_FIELDS, how this boot came about and what it recovered from.
BIRTH_FIELDS = ("v", "k", "dev", "boot", "conn", "fw", "caps", "link")
BIRTH_BOOT_FIELDS = (
    "reset",         # str: why the board started (Platform.reset_cause(): "power-on", ...)
    "brownouts",     # int: brown-out resets seen on this flash
    "crashes",       # int: boots in a row that crashed before this one (left out when 0)
    "safe",          # str: safe mode and why ("crash-loop"); left out when not in safe mode
    "config",        # str: the fallback config file in use ("config.good.json"), if any
    "config_error",  # str: why config.json was refused, with "config"
    "state",         # str: the state copy recovered from ("tmp", "bak") or "lost", if any
    "rebooted",      # str: why the firmware rebooted itself last ("command", "offline")
)


def birth(device, boot, conn, fw, caps, link, boot_info=None):
    """Retained on .../status when the receiver connects (Sparkplug-style birth).

    ``boot`` counts reboots (kept in flash) and ``conn`` counts connections since boot, so the
    head-end can tell a stale death (an older session's will) from a current one.
    ``boot_info``: a dict of BIRTH_BOOT_FIELDS; a None value is left out.
    """
    msg = {"v": PROTOCOL_VERSION, "k": "birth", "dev": device, "boot": boot, "conn": conn,
           "fw": fw, "caps": caps, "link": link}
    for name in boot_info or ():
        if name not in BIRTH_BOOT_FIELDS:
            raise ValueError("not a birth field: %s" % name)
        if boot_info[name] is not None:
            msg[name] = boot_info[name]
    return encode(msg)


def death(device, boot, conn):
    """The last will on .../status (retained), published by the broker when the link dies."""
    return encode({"v": PROTOCOL_VERSION, "k": "death", "dev": device, "boot": boot,
                   "conn": conn})


def session_of(msg):
    """The (boot, conn) pair of a birth, death or heartbeat, for comparing sessions."""
    return (need_int(msg, "boot", 0, MAX_COUNT), need_int(msg, "conn", 0, MAX_COUNT))


# The heartbeat's fields (firmware/shell.py builds it; docs/protocol.md, "Heartbeat"): name ->
# (kind, low, high) where kind is "int", "num" (int or float), "str" (high = longest) or "id".
# The head-end keeps only these, each checked; boot, conn and up are required.
HEARTBEAT_FIELDS = {
    "boot": ("int", 0, MAX_COUNT), "conn": ("int", 0, MAX_COUNT),
    "up": ("int", 0, MAX_COUNT),            # s since boot
    "heap": ("int", 0, MAX_COUNT),          # free bytes
    "vol": ("int", 0, 100),
    "cu": ("int", 0, MAX_COUNT),            # cache used, bytes
    "off": ("int", -MAX_TIME_MS, MAX_TIME_MS),  # clock offset ms (network - local)
    "amp": ("int", 0, 1), "mains": ("int", 0, 1), "af": ("int", 0, 1), "sy": ("int", 0, 1),
    "dc": ("num", 0, 100),                  # supply volts
    "ln": ("str", 0, 16),                   # link type
    "rssi": ("num", -200, 50),              # dBm
    "play": ("id", 0, 0),                   # bid playing
    "rej": ("int", 0, MAX_COUNT), "mal": ("int", 0, MAX_COUNT),
    "temp": ("num", -100, 200),             # MCU degrees C
}
HEARTBEAT_REQUIRED = ("boot", "conn", "up")


def check_heartbeat(msg):
    """The heartbeat's known fields, each checked (ProtocolError("bad-field") if one is out of
    bounds or a required one is missing); fields this version does not know are left out."""
    out = {"v": PROTOCOL_VERSION}
    for name in HEARTBEAT_FIELDS:
        kind, lo, hi = HEARTBEAT_FIELDS[name]
        optional = name not in HEARTBEAT_REQUIRED
        if kind == "int":
            value = need_int(msg, name, lo, hi, optional)
        elif kind == "num":
            value = need_number(msg, name, lo, hi, optional)
        elif kind == "str":
            value = need_str(msg, name, optional, hi)
        else:
            value = need_id(msg, name, optional)
        if value is not None:
            out[name] = value
    return out


def event(seq, kind, t, fields):
    """A receiver event. ``seq`` grows across reboots, so (device, seq) names it for dedup."""
    msg = {"v": PROTOCOL_VERSION, "seq": seq, "k": kind, "t": t}
    for name in fields:
        msg[name] = fields[name]
    return msg


def check_event(msg):
    need_int(msg, "seq", 0, MAX_COUNT)
    need_int(msg, "t", 0, MAX_TIME_MS)
    kind = msg.get("k")
    if kind not in EVENTS:
        raise ProtocolError("bad-field", "k")
    if kind == EV_ENDED and msg.get("reason") not in END_REASONS:
        raise ProtocolError("bad-field", "reason")
    return msg


# -- reports: receiver -> head-end, authenticated -------------------------------------------

# Births and deaths (.../status), heartbeats (.../hb) and events (.../evt) travel sealed with
# the device's key, like commands, the MAC taken over this domain and the body: only the
# receiver (or its head-end) can make one, and a report of one kind never passes for another
# kind or for a command. Replays are judged by the head-end with the counters inside: the
# session (boot, conn) and uptime of presence and heartbeats, the event seq (headend/mqtt).
REPORT_LEAVES = (STATUS, HEARTBEAT, EVENT)


def _report_domain(leaf):
    if leaf not in REPORT_LEAVES:
        raise ProtocolError("malformed", "not a report topic")
    return b"loaxa-report/" + leaf.encode() + b"\n"


def seal_report(key, leaf, body):
    """The wire form of a report's JSON ``body`` (bytes) on topic leaf ``leaf``."""
    return seal(key, body, _report_domain(leaf))


def open_report(key, leaf, payload):
    """Authenticate a report and return it decoded; ProtocolError "malformed" or
    "bad-signature"."""
    domain = _report_domain(leaf)
    if payload is None or len(payload) > MAX_PAYLOAD:
        raise ProtocolError("malformed", "empty or too large")
    return decode(open_sealed(key, payload, domain))
