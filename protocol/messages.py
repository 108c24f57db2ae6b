"""JSON messages: commands (signed), presence, heartbeat, events and time sync.

Every JSON message is a compact object with ``"v": 1``. Field names are short because receivers
on a paid 4G link pay for every byte of telemetry. Each message kind has one field table here
(the ``*_TABLE`` and ``*_ARGS`` tuples, ``COMMAND_ARGS``, ``EVENT_FIELDS``; rows described in
protocol/fields.py): senders build from it, receiving edges validate with it, and
docs/protocol.md shows it (rendered by tools/protocol_doc.py, kept in step by a test). This
module is the code both sides run.

Times are integers: milliseconds since the Unix epoch by the head-end's clock ("network time").
"""

import json

from protocol import PROTOCOL_VERSION
from protocol.errors import ProtocolError
from protocol.fields import (
    BOOL,
    HEX64,
    ID,
    IF_SET,
    INT,
    LIST,
    NUMBER,
    OBJECT,
    ONE_OF,
    OPTIONAL,
    REQUIRED,
    STR,
    build,
    check_fields,
    names,
    with_use,
)
from protocol.signing import open_sealed, seal
from protocol.topics import EVENT, HEARTBEAT, STATUS

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
RESET_FLOOR = "reset_floor"  # bring the counter floor down to this command's counter (below)
UPDATE = "update"      # download a firmware bundle, switch to it, roll back if it fails
SELFTEST = "selftest"  # test the sink and amplifier quietly and report (the periodic test)
REKEY = "rekey"        # rotate the device key and broker password (protocol/rekey.py)
COMMANDS = (PLAY, STREAM, STOP, VOLUME, REBOOT, IDENTIFY, SCHEDULE, FETCH, RESET_FLOOR, UPDATE,
            SELFTEST, REKEY)

# Event kinds (receiver -> head-end on .../evt).
EV_ACK = "ack"            # a command was accepted (ok) or refused (with reason)
EV_REJECTED = "rejected"  # a message failed authentication or validation
EV_FETCHED = "fetched"    # a media item is in the cache, hash checked
EV_FETCH_FAILED = "fetch_failed"
EV_STARTED = "started"    # proof of play: audio started
EV_ENDED = "ended"        # proof of play: audio ended, with a reason
EV_UPDATE = "update"      # a firmware update got this far (staged, or failed before the switch)
EV_SELFTEST = "selftest"  # the result of a self-test (or why it did not run)
EVENTS = (EV_ACK, EV_REJECTED, EV_FETCHED, EV_FETCH_FAILED, EV_STARTED, EV_ENDED, EV_UPDATE,
          EV_SELFTEST)

# Presence kinds (receiver -> head-end on .../status, retained).
BIRTH = "birth"  # the receiver connected: what it is and how this boot came about
DEATH = "death"  # the last will: the broker publishes it when the connection dies

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


# -- field tables ----------------------------------------------------------------------------
#
# Every message kind is described once here, as a table of rows (protocol/fields.py explains
# the row): the sender builds from it, the receiving edge validates with it (the receiver its
# commands and time replies, the head-end every report) and docs/protocol.md shows it
# (tools/protocol_doc.py renders it; tests/test_protocol_doc.py fails when they differ).

_V = ("v", INT, None, PROTOCOL_VERSION, PROTOCOL_VERSION, REQUIRED, "protocol version")

# The command envelope (head-end -> receiver, sealed): its arguments ``a`` follow its kind.
COMMAND_TABLE = (
    _V,
    ("dev", ID, None, None, None, REQUIRED, "target device id"),
    ("id", STR, None, 1, 64, REQUIRED, "command id, echoed in the ack"),
    ("ctr", INT, None, 1, None, REQUIRED, "counter, strictly increasing per device"),
    ("exp", INT, "net ms", 0, None, REQUIRED, "expiry: refused after this"),
    ("k", ONE_OF, None, COMMANDS, None, REQUIRED, "command kind"),
    ("a", OBJECT, None, None, None, REQUIRED, "arguments of the kind (below)"),
)

_CODEC = ("codec", ONE_OF, None, CODECS, None, REQUIRED, "rendition codec (see Media)")
_RATE = ("rate", INT, "Hz", 8000, 48000, REQUIRED, "sample rate")
_PRIO = ("prio", INT, None, PRIO_NORMAL, PRIO_EMERGENCY, REQUIRED, "bulletin class")
_VOL = ("vol", INT, None, 0, 100, OPTIONAL,
        "volume (null: default, or the emergency volume for prio 3)")

# The media of a fetch; a play is these plus when, how loud and what it belongs to. The ADPCM
# block size is fixed (protocol.media.ADPCM_BLOCK_BYTES), so no command carries one.
FETCH_ARGS = (
    ("item", ID, None, None, None, REQUIRED, "media item id"),
    ("url", STR, None, 1, 512, REQUIRED, "where to fetch the rendition (HTTP, Range)"),
    ("sha", HEX64, None, None, None, REQUIRED, "SHA-256 of the rendition, checked after fetch"),
    ("size", INT, "B", 1, None, REQUIRED, "rendition size"),
    ("dur", INT, "ms", 1, None, REQUIRED, "duration"),
    _CODEC,
    _RATE,
)
PLAY_ARGS = (("bid", ID, None, None, None, REQUIRED, "broadcast id, reported back in events"),
             ) + FETCH_ARGS + (
    ("at", INT, "net ms", 0, None, OPTIONAL, "start time (null: as soon as ready)"),
    _PRIO,
    _VOL,
)
# The early-morning hours of a zone recur every day from one start, so a receiver keeps
# them with its link down for days (firmware/volume.py). 86,400,000 ms fits a small int.
EARLY_TABLE = (
    ("from", INT, "net ms", 0, None, REQUIRED, "a start of the early hours"),
    ("len", INT, "ms", 1, 86399999, REQUIRED, "how long they last, every day from `from`"),
    ("vmax", INT, None, 0, 100, REQUIRED, "the volume limit in them"),
)
# A schedule's items are plays with a start time.
SCHEDULE_ITEM_ARGS = with_use(PLAY_ARGS, "at", REQUIRED)
SCHEDULE_ARGS = (
    ("from", INT, "net ms", 0, None, REQUIRED, "window start"),
    ("to", INT, "net ms", 0, None, REQUIRED, "window end"),
    ("items", LIST, None, ("items", OBJECT, None, SCHEDULE_ITEM_ARGS, None, REQUIRED, "a play"),
     MAX_SCHEDULE_ITEMS, REQUIRED, "play arguments, each with an `at`"),
    ("vmax", INT, None, 0, 100, OPTIONAL,
     "the zone's volume limit, held until the next schedule (null: none)"),
    ("early", OBJECT, None, EARLY_TABLE, None, OPTIONAL,
     "the zone's early-morning hours and their lower limit (below; null: none)"),
)
STREAM_ARGS = (
    ("bid", ID, None, None, None, REQUIRED, "broadcast id"),
    ("sid", ID, None, None, None, REQUIRED, "stream id: frames on .../stream/{sid}"),
    ("sno", INT, None, 0, 0xFFFFFFFF, REQUIRED, "stream number, in every frame header"),
    ("key", HEX64, None, None, None, REQUIRED, "per-stream key for the frame tags"),
    ("codec", ONE_OF, None, CODECS, None, REQUIRED, "frame payload codec"),
    _RATE,
    ("prio", INT, None, PRIO_NORMAL, PRIO_EMERGENCY, REQUIRED, "2 live talk, 3 emergency"),
    _VOL,
    ("until", INT, "net ms", 0, None, OPTIONAL, "the stream ends by then anyway"),
)
STOP_ARGS = (("bid", ID, None, None, None, OPTIONAL, "the broadcast to stop (none: all)"),)
VOLUME_ARGS = (("vol", INT, None, 0, 100, REQUIRED, "default volume"),)
IDENTIFY_ARGS = (("secs", INT, "s", 1, 600, OPTIONAL, "how long to blink and beep"),)
REBOOT_ARGS = ()
# A reset of the counter floor is judged by its nonce instead of the floor: valid only for the
# nonce the receiver put in this boot's birth, once. Its own counter becomes the new floor.
RESET_FLOOR_ARGS = (("nonce", HEX64, None, None, None, REQUIRED,
                     "this boot's `nonce` from the receiver's birth"),)
# A firmware update names the bundle by the SHA-256 of its manifest.json as served: the
# command's MAC authenticates that hash, the manifest names every file's size and SHA-256, so
# every byte the receiver installs is checked against what the head-end signed
# (firmware/ota.py, firmware/updater.py).
UPDATE_ARGS = (
    ("ver", STR, None, 1, 32, REQUIRED, "firmware version of the bundle (its manifest's)"),
    ("man", HEX64, None, None, None, REQUIRED, "SHA-256 of the bundle's manifest.json bytes"),
    ("msize", INT, "B", 1, 65536, REQUIRED, "size of manifest.json"),
    ("url", STR, None, 1, 400, REQUIRED,
     "bundle base URL: `{url}/manifest.json`, `{url}/files{path}` (HTTP, Range)"),
    ("total", INT, "B", 1, None, REQUIRED, "bytes of all the bundle's files (space check)"),
)
# The periodic test: a quiet tone through the sink with the amplifier relay on, then a report
# (EV_SELFTEST). The receiver runs it when nothing plays or starts within a minute, never
# during an emergency (firmware/core.py).
SELFTEST_ARGS = (
    ("run", ID, None, None, None, REQUIRED, "test run id, echoed in the selftest event"),
    ("lvl", INT, "dBFS", -60, -12, OPTIONAL, "tone level (none: -30)"),
    ("ms", INT, "ms", 100, 3000, OPTIONAL, "tone length (none: 1000)"),
)
# Rotation of the device key and broker account in two phases (docs/security.md, "Rotation"):
# with ``box``, signed with the current key, it offers the new credentials (pending beside the
# old ones); without it, signed with the new key, it confirms the head-end has them, and the
# receiver forgets the old ones. Any command signed with the new key confirms as well.
REKEY_ARGS = (
    ("rid", STR, None, 8, 32, REQUIRED, "rotation id (random, one per rotation)"),
    ("user", STR, None, 1, 64, IF_SET, "the new broker account name (with `box`)"),
    ("box", STR, None, 66, 192, IF_SET,
     "new key and broker password, encrypted under the current key (protocol/rekey.py)"),
)

# A fetch command is the media plus whether to pin it: a pinned item (the alert tone, standard
# emergency messages) is kept in the receiver's cache ahead of need, never evicted, outside the
# schedule's cache budget (firmware/cache.py).
FETCH_CMD_ARGS = FETCH_ARGS + (
    ("pin", BOOL, None, None, None, OPTIONAL,
     "true: pin the item; false: unpin it (nothing fetched if not cached); null: as it was"),
)
# An emergency whose media the receiver must fetch first opens with a pinned item (the alert
# tone) it already holds: the first sound is immediate, the alert follows once fetched.
LEAD_TABLE = (
    ("item", ID, None, None, None, REQUIRED, "the pinned media item"),
    ("sha", HEX64, None, None, None, REQUIRED, "SHA-256 of its rendition, as held"),
    ("dur", INT, "ms", 1, None, REQUIRED, "its duration"),
    _CODEC,
    _RATE,
)
PLAY_CMD_ARGS = PLAY_ARGS + (
    ("lead", OBJECT, None, LEAD_TABLE, None, OPTIONAL,
     "played first while this item's media is fetched, if held (below; null: none)"),
)
COMMAND_ARGS = {PLAY: PLAY_CMD_ARGS, FETCH: FETCH_CMD_ARGS, STREAM: STREAM_ARGS, STOP: STOP_ARGS,
                VOLUME: VOLUME_ARGS, IDENTIFY: IDENTIFY_ARGS, SCHEDULE: SCHEDULE_ARGS,
                REBOOT: REBOOT_ARGS, RESET_FLOOR: RESET_FLOOR_ARGS, UPDATE: UPDATE_ARGS,
                SELFTEST: SELFTEST_ARGS, REKEY: REKEY_ARGS}

# Time sync: the request is plain, the reply sealed.
TIME_REQUEST_TABLE = (
    _V,
    ("t0", INT, "ms", None, None, REQUIRED, "the receiver's monotonic ms when sent"),
)
TIME_REPLY_TABLE = (
    _V,
    ("dev", ID, None, None, None, REQUIRED, "device id"),
    ("t0", INT, "ms", None, None, REQUIRED, "the request's t0, echoed"),
    ("t1", INT, "net ms", 0, None, REQUIRED, "when the request arrived"),
    ("t2", INT, "net ms", 0, None, REQUIRED, "when the reply left"),
)

# Presence (.../status, retained): birth and death (the last will).
_BOOT = ("boot", INT, None, 0, MAX_COUNT, REQUIRED, "reboots, kept in flash")
_CONN = ("conn", INT, None, 0, MAX_COUNT, REQUIRED, "connections since boot")
CAPS_TABLE = (
    ("codecs", LIST, None, ("codecs", STR, None, 1, 16, REQUIRED, "a codec"), 8, OPTIONAL,
     "codecs it plays"),
    ("sink", STR, None, 1, 16, OPTIONAL, "vs1053, i2s or sim"),
    ("cache_free", INT, "B", 0, MAX_COUNT, OPTIONAL, "media cache free"),
    ("cache_total", INT, "B", 0, MAX_COUNT, OPTIONAL, "what the media cache may hold"),
    ("rates", LIST, None, ("rates", INT, "Hz", 8000, 48000, REQUIRED, "a rate"), 16, OPTIONAL,
     "sample rates it plays"),
    ("hb", INT, "s", 1, 86400, OPTIONAL, "heartbeat period (the offline allowance follows)"),
)
BIRTH_HEAD_TABLE = (
    _V,
    ("k", ONE_OF, None, (BIRTH,), None, REQUIRED, "birth"),
    ("dev", ID, None, None, None, REQUIRED, "device id"),
    _BOOT,
    _CONN,
    ("fw", STR, None, 1, 64, OPTIONAL, "firmware version"),
    ("caps", OBJECT, None, CAPS_TABLE, None, OPTIONAL, "capabilities (below)"),
    ("link", STR, None, 1, 16, OPTIONAL, "wifi, eth, ppp or sim"),
)
# How this boot came about and what it recovered from (values below the table in the docs).
BIRTH_BOOT_TABLE = (
    ("reset", STR, None, 1, 16, OPTIONAL, "why the board started"),
    ("brownouts", INT, None, 0, MAX_COUNT, OPTIONAL, "brown-out resets seen on this flash"),
    ("crashes", INT, None, 0, MAX_COUNT, OPTIONAL, "boots in a row that crashed (when > 0)"),
    ("safe", STR, None, 1, 16, OPTIONAL, "safe mode and why (in safe mode)"),
    ("config", STR, None, 1, 32, OPTIONAL, "the fallback config file in use"),
    ("config_error", STR, None, 1, 128, OPTIONAL, "why config.json was refused"),
    ("state", STR, None, 1, 8, OPTIONAL, "the state copy recovered from, or lost"),
    ("rebooted", STR, None, 1, 16, OPTIONAL, "why the firmware last rebooted itself"),
    ("nonce", HEX64, None, None, None, OPTIONAL,
     "random per boot, for one `reset_floor` (none once used)"),
    ("ota", STR, None, 1, 16, OPTIONAL, "the last update: updated, rolled-back or trial"),
    ("ota_ver", STR, None, 1, 32, OPTIONAL, "the version that update installed or tried"),
    ("ota_why", STR, None, 1, 32, OPTIONAL, "why it rolled back: crash-loop, no-broker, ..."),
)
BIRTH_TABLE = BIRTH_HEAD_TABLE + BIRTH_BOOT_TABLE
BIRTH_FIELDS = names(BIRTH_HEAD_TABLE)
BIRTH_BOOT_FIELDS = names(BIRTH_BOOT_TABLE)
DEATH_TABLE = (
    _V,
    ("k", ONE_OF, None, (DEATH,), None, REQUIRED, "death"),
    ("dev", ID, None, None, None, REQUIRED, "device id"),
    _BOOT,
    _CONN,
)
_SESSION_TABLE = (_BOOT, _CONN)

# Heartbeat (.../hb): keys short because 4G is paid per byte; IF_SET fields are left out at 0.
HEARTBEAT_TABLE = (
    _V,
    _BOOT,
    _CONN,
    ("up", INT, "s", 0, MAX_COUNT, REQUIRED, "uptime"),
    ("heap", INT, "B", 0, MAX_COUNT, OPTIONAL, "free heap"),
    ("vol", INT, None, 0, 100, OPTIONAL, "default volume"),
    ("cu", INT, "B", 0, MAX_COUNT, OPTIONAL, "media cache used"),
    ("off", INT, "ms", -MAX_TIME_MS, MAX_TIME_MS, OPTIONAL, "clock offset (network - local)"),
    ("amp", INT, None, 0, 1, OPTIONAL, "amplifier relay on"),
    ("mains", INT, None, 0, 1, OPTIONAL, "mains present (0: on battery; none: unknown)"),
    ("dc", NUMBER, "V", 0, 100, OPTIONAL, "DC supply (none: unknown)"),
    ("ln", STR, None, 1, 16, IF_SET, "link type"),
    ("rssi", NUMBER, "dBm", -200, 50, IF_SET, "link signal"),
    ("af", INT, None, 0, 1, IF_SET, "amplifier fault"),
    ("sy", INT, None, 0, 1, IF_SET, "clock synced"),
    ("play", ID, None, None, None, IF_SET, "broadcast id playing now"),
    ("rej", INT, None, 0, MAX_COUNT, IF_SET, "commands rejected since boot"),
    ("mal", INT, None, 0, MAX_COUNT, IF_SET, "malformed messages dropped since boot"),
    ("temp", NUMBER, "°C", -100, 200, IF_SET, "MCU temperature"),
    ("err", INT, None, 0, MAX_COUNT, IF_SET, "errors the shell caught since boot"),
    ("lost", INT, None, 0, MAX_COUNT, IF_SET, "live audio frames lost since boot (concealed "
     "as silence)"),
    ("late", INT, None, 0, MAX_COUNT, IF_SET, "live audio frames that came too late to play, "
     "since boot"),
)

# Events (.../evt): an envelope, then the fields of its kind. What the firmware sends:
# firmware/core.py, _ack and the _event call sites.
EVENT_TABLE = (
    _V,
    ("seq", INT, None, 0, MAX_COUNT, REQUIRED, "event number of this device (grows across "
     "reboots)"),
    ("k", ONE_OF, None, EVENTS, None, REQUIRED, "event kind"),
    ("t", INT, "net ms", 0, MAX_TIME_MS, REQUIRED, "when it happened"),
)
_REASON = ("reason", STR, None, 1, 128, OPTIONAL, "why")
_BID = ("bid", ID, None, None, None, OPTIONAL, "broadcast id")
_ITEM = ("item", ID, None, None, None, OPTIONAL, "media item id (a play)")
_SID = ("sid", ID, None, None, None, OPTIONAL, "stream id (a stream)")
EVENT_FIELDS = {
    EV_ACK: (
        ("cmd", STR, None, 1, 64, OPTIONAL, "command id (none: unreadable)"),
        ("ok", BOOL, None, None, None, REQUIRED, "accepted"),
        ("reason", STR, None, 1, 128, OPTIONAL, "why refused (when not ok)"),
    ),
    EV_REJECTED: (
        ("topic", STR, None, 1, 16, OPTIONAL, "topic leaf: cmd, time, stream"),
        ("reason", STR, None, 1, 128, OPTIONAL, "the ProtocolError reason"),
    ),
    EV_FETCHED: (
        ("item", ID, None, None, None, REQUIRED, "media item id"),
        ("sha", HEX64, None, None, None, REQUIRED, "SHA-256 of what is now cached"),
    ),
    EV_FETCH_FAILED: (
        ("item", ID, None, None, None, REQUIRED, "media item id"),
        ("sha", HEX64, None, None, None, OPTIONAL, "SHA-256 asked for"),
        _REASON,
    ),
    EV_STARTED: (
        _BID,
        _ITEM,
        _SID,
        ("at", INT, "net ms", 0, MAX_TIME_MS, OPTIONAL, "scheduled start"),
        ("skip", INT, "ms", 0, MAX_COUNT, OPTIONAL, "audio skipped by a late start"),
    ),
    EV_ENDED: (
        _BID,
        _ITEM,
        _SID,
        ("reason", ONE_OF, None, END_REASONS, None, REQUIRED, "how it ended"),
        ("played", INT, "ms", 0, MAX_COUNT, OPTIONAL, "audio heard"),
        ("detail", STR, None, 1, 128, OPTIONAL, "why it failed"),
    ),
    EV_UPDATE: (
        ("ver", STR, None, 1, 32, REQUIRED, "the version of the update command"),
        ("ok", BOOL, None, None, None, REQUIRED, "staged and checked (the switch follows)"),
        ("reason", STR, None, 1, 128, OPTIONAL, "why it failed (files kept for a resume)"),
    ),
    EV_SELFTEST: (
        ("run", ID, None, None, None, REQUIRED, "the selftest command's run id"),
        ("ok", BOOL, None, None, None, REQUIRED, "every check passed"),
        ("reason", STR, None, 1, 32, OPTIONAL, "the first check that failed, or why the test "
         "did not run (firmware/reasons.py)"),
        ("sink", BOOL, None, None, None, OPTIONAL, "the sink played the tone"),
        ("relay", BOOL, None, None, None, OPTIONAL, "the amplifier relay switched on (read "
         "back; none: the board cannot read it)"),
        ("fault", BOOL, None, None, None, OPTIONAL, "the amplifier's fault line was active"),
        ("ma", NUMBER, "mA", 0, 100000, OPTIONAL, "amplifier current (none: no sensor)"),
        ("flash", INT, "B", 0, MAX_COUNT, OPTIONAL, "flash free"),
        ("synced", BOOL, None, None, None, OPTIONAL, "the clock is synced"),
        ("detail", STR, None, 1, 128, OPTIONAL, "the sink's error"),
    ),
}


# -- validation (thin wrappers over protocol.fields.check_fields) ---------------------------

def check_args(kind, a):
    """Validate a command's arguments in place; raise ProtocolError("bad-args"/"bad-field")."""
    if not isinstance(a, dict):
        raise ProtocolError("bad-args", "not an object")
    table = COMMAND_ARGS.get(kind) if isinstance(kind, str) else None
    if table is None:
        raise ProtocolError("bad-args", "unknown command %s" % kind)
    check_fields(table, a)


# -- commands ------------------------------------------------------------------------------

def command_body(device, kind, args, ctr, exp, cmd_id):
    """The JSON body of a command, before signing."""
    return encode(build(COMMAND_TABLE, {"dev": device, "id": cmd_id, "ctr": ctr, "exp": exp,
                                        "k": kind, "a": args}))


def sign_command(key, device, kind, args, ctr, exp, cmd_id, checked=False):
    """The signed wire payload of a command (see protocol.signing). ``key``: bytes or a
    ``protocol.signing.HmacKey``; ``checked``: ``args`` were checked for ``kind`` already
    (one emergency's play arguments, shared by many receivers' commands)."""
    if not checked:
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
    core, which holds the last counter and the clock. Checked in place: fields the table
    does not name are left in the dict, and nothing reads them.
    """
    cmd = decode(open_sealed(key, payload))
    if cmd.get("dev") != device:
        raise ProtocolError("wrong-device")
    kind = cmd.get("k")
    if kind not in COMMANDS:
        raise ProtocolError("bad-args", "unknown command")
    if not isinstance(cmd.get("a"), dict):
        raise ProtocolError("bad-args", "not an object")
    check_fields(COMMAND_TABLE, cmd)
    check_args(kind, cmd["a"])
    return cmd


# -- time sync -----------------------------------------------------------------------------

def time_request(t0):
    """Receiver -> head-end: ``t0`` is the receiver's monotonic ms when sent."""
    return encode(build(TIME_REQUEST_TABLE, {"t0": t0}))


def open_time_request(payload):
    """The receiver's ``t0`` from a time request; ProtocolError if it is malformed."""
    return check_fields(TIME_REQUEST_TABLE, decode(payload))["t0"]


def time_reply(key, device, t0, t1, t2):
    """Head-end -> receiver, signed: t1 when the request arrived, t2 when the reply left."""
    return seal(key, encode(build(TIME_REPLY_TABLE, {"dev": device, "t0": t0, "t1": t1,
                                                     "t2": t2})))


def open_time_reply(key, payload, device):
    body = decode(open_sealed(key, payload))
    if body.get("dev") != device:
        raise ProtocolError("wrong-device")
    check_fields(TIME_REPLY_TABLE, body)
    return body["t0"], body["t1"], body["t2"]


# -- presence, heartbeat, events -----------------------------------------------------------

def birth(device, boot, conn, fw, caps, link, boot_info=None):
    """Retained on .../status when the receiver connects (Sparkplug-style birth).

    ``boot`` counts reboots (kept in flash) and ``conn`` counts connections since boot, so the
    head-end can tell a stale death (an older session's will) from a current one.
    ``boot_info``: a dict of BIRTH_BOOT_FIELDS; a None value is left out.
    """
    msg = build(BIRTH_HEAD_TABLE, {"k": BIRTH, "dev": device, "boot": boot, "conn": conn,
                                   "fw": fw, "caps": caps, "link": link})
    return encode(build(BIRTH_BOOT_TABLE, boot_info or {}, msg))


def death(device, boot, conn):
    """The last will on .../status (retained), published by the broker when the link dies."""
    return encode(build(DEATH_TABLE, {"k": DEATH, "dev": device, "boot": boot, "conn": conn}))


def check_status(msg):
    """A birth or death checked (boot and conn strictly, the rest leniently: presence must not
    be lost to one bad capability); only its table's fields are kept."""
    kind = msg.get("k")
    if kind == BIRTH:
        return check_fields(BIRTH_TABLE, msg, True, True)
    if kind == DEATH:
        return check_fields(DEATH_TABLE, msg, True, True)
    raise ProtocolError("bad-field", "k")


def session_of(msg):
    """The (boot, conn) pair of a birth, death or heartbeat, for comparing sessions."""
    check_fields(_SESSION_TABLE, msg)
    return (msg["boot"], msg["conn"])


def heartbeat(fields):
    """The heartbeat payload (bytes) from ``fields`` (HEARTBEAT_TABLE names): a None value is
    left out, and so is an IF_SET field at 0."""
    return encode(build(HEARTBEAT_TABLE, fields))


def check_heartbeat(msg):
    """The heartbeat's known fields, each checked (ProtocolError("bad-field") if one is out of
    bounds or a required one is missing); fields this version does not know are left out."""
    return check_fields(HEARTBEAT_TABLE, msg, True)


def event(seq, kind, t, fields):
    """A receiver event (a dict: the outbox keeps it until the broker has it). ``seq`` grows
    across reboots, so (device, seq) names it for dedup. ``fields``: the kind's
    (EVENT_FIELDS); a None stays null ("at": null, as soon as ready), long texts are cut to
    their limit."""
    msg = build(EVENT_TABLE, {"seq": seq, "k": kind, "t": t})
    return build(EVENT_FIELDS[kind], fields, msg, True)


def check_event(msg):
    """An event checked: the envelope strictly, the kind's fields leniently (a bad optional
    field is left out, never the proof of play); only known fields are kept."""
    out = check_fields(EVENT_TABLE, msg, True)
    return check_fields(EVENT_FIELDS[out["k"]], msg, True, True, out)


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
