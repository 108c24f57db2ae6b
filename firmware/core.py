"""The receiver's decisions, sans-IO: what to play, when, what to report.

No sockets, files, asyncio or clocks here. Every method takes the current network time ``now``
(ms since the Unix epoch by the head-end's clock, as estimated by ``firmware.clock``) and returns
a list of actions for the shell to carry out, in order. The shell (``firmware.shell``) and the
tests drive the same class.

Inputs::

    core.on_command(payload, now)       a message on .../cmd (signed JSON, any bytes)
    core.on_frame(sid, payload, now)    a message on .../stream/{sid} (binary frame); no actions
    core.tick(now)                      time passes (call at ``next_due(now)``, and every
                                        second or so: a poll catches what no time names)
    core.next_due(now)                  the network time of the next thing to do, or None
    core.set_synced(now)                the clock is synced: held commands are processed now,
                                        and from now on times are judged
    core.clock_stepped(now, step_ms)    a time reply moved the clock by ``step_ms``: waits the
                                        core is timing (sync cadence, fetch backoff, relay
                                        settling) keep their length; start times do not move
    core.link_up(now) / link_down(now)  the broker link came up / went down
    core.media_ready(sha, now)          a fetch attempt finished, hash checked
    core.media_failed(sha, now, detail) a fetch attempt failed (``detail``: why, short)
    core.media_evicted(sha)             the cache dropped an item
    core.update_result(ver, ok, reason, now)  a firmware update staged, or stopped
    core.finished(item, now)            the player played ``item`` to its end
    core.failed(item, now, detail)      the player could not play ``item``
    core.count(name)                    count something the shell dropped (malformed, ...)
    core.selftest_done(result, now)     the shell ran the SELFTEST action (``result``: below)

Queries: ``playing()``, ``needed_media()``, ``busy_within(now, ms)``; ``jitter`` holds the
live frames of the stream that plays (the player takes them at their time).

Actions are tuples whose first element names them::

    (START, item, skip_ms, volume, first_at)
                                     play ``item`` (schedule.Item), ``skip_ms`` into it, its
                                     first sample at network time ``first_at``, not before:
                                     the item's own start (a scheduled item is handed over
                                     ``START_LEAD_MS`` early, so the player can prepare and
                                     wait for the exact moment) or the moment the amplifier
                                     relay has settled, whichever is later
    (AMP, on)                        switch the amplifier relay on (True) or off (False)
    (MUTE, on)                       assert (True) or release (False) the amplifier's mute
                                     line; only on a board that has one (``amp_mute``)
    (SYNC_REQUEST,)                  send a time request (firmware/sync_cadence.py: when)
    (STOP, item, reason)             cut the playing ``item`` short (preempted, cancelled, ...)
    (FETCH, media)                   make one attempt to fetch media (dict: item, url, sha,
                                     size, codec, rate, dur); answer with media_ready or
                                     media_failed (firmware/fetch_policy.py: retries, give-up)
    (PIN, sha, on)                   pin (True) or unpin (False) ``sha`` in the cache: a pinned
                                     item is never evicted (firmware/cache.py ``pin``); asked
                                     by a ``fetch`` with ``pin``, before its FETCH
    (EVENT, msg)                     publish event ``msg`` (protocol.messages.event dict) on evt
    (VOLUME, volume)                 set the output volume (0..100) of what is playing
    (REBOOT,)                        reboot once the events are out
    (IDENTIFY, secs)                 blink / beep for ``secs`` seconds
    (UPDATE, args)                   start a firmware update (the ``update`` command's
                                     arguments; firmware/updater.py), refused "busy" here
                                     while anything plays
    (REKEY, rid, key_hex, user, password)
                                     a rotation offered new credentials (``rekey`` command):
                                     keep them beside the old ones (pending) and reconnect
                                     with them; commands signed with either key pass meanwhile
    (REKEY_CONFIRMED, rid)           a command signed with the new key came: the head-end has
                                     it, the new credentials replace the old ones for good
    (SUBSCRIBE, topic)               subscribe to a stream topic
    (UNSUBSCRIBE, topic)
    (SELFTEST, run, lvl, ms, settle) the periodic test: the relay is on (an AMP action before
                                     it); wait ``settle`` ms, play a quiet tone of ``lvl`` dBFS
                                     for ``ms`` through the sink, read the amplifier's relay,
                                     fault line and current, the flash; then ``selftest_done``
    (SELFTEST_ABORT,)                cut the tone short at once (a broadcast starts; its result
                                     is then ignored)
    (PERSIST, state)                 write ``state`` (dict, JSON-able) to flash; restore with
                                     ``ReceiverCore(..., state=state)``. Emitted when the
                                     counter, volume, schedule or done list changed, not for
                                     events alone: the shell keeps the highest event seq with
                                     its outbox and restores ``seq`` as the larger of the two

Playback state is one variable and a table (``TRANSITIONS``): an illegal transition raises
``IllegalTransition`` instead of being papered over.

Choices (where the protocol leaves room):
- a priority 0/1 item whose start comes while something of equal or higher class plays waits
  and starts from the beginning when the player is free, if that is within ``GRACE_MS`` (5 min)
  of its start; otherwise it is skipped and reported ended "preempted" with played 0;
- live and emergency: the newest of the same class wins; the older one ends "preempted";
  a live stream waiting behind an emergency waits as long as the stream lives;
- an item whose start has passed by less than its duration starts late with skip = now - at;
  one whose whole duration has passed is reported ended "failed" with detail "missed";
  missing media at air time: ended "failed" detail "not-cached";
- ``stop`` without a bid stops what plays and everything already due (now items, streams,
  waiting items); future scheduled items stay (send an empty ``schedule`` to clear them);
- a ``play``/``stream`` whose bid is already scheduled, playing or recently done is
  acknowledged and ignored, so head-end retries are idempotent;
- nothing that depends on wall time is decided before the clock is synced (``set_synced``):
  a board's clock may say year 2000 after a power cut, where every command looks expired or
  valid for decades and every start time is years away. Commands that arrive before the first
  sync are held (the newest ``MAX_HELD``; older ones are dropped and counted) and judged once
  the clock is synced; ``tick`` starts and drops nothing until then. The shell syncs from the
  head-end's time replies, or at boot from an RTC it can trust (firmware/shell.py);
- a command whose counter is beyond the synced clock plus ``M.MAX_COUNTER_AHEAD_MS`` (10 min) is
  rejected "future-counter" and its counter is not consumed (firmware/guard.py): one bad
  counter must not make every later command a replay;
- a ``reset_floor`` command (firmware/guard.py explains the design) is judged by this boot's
  ``reset_nonce`` (given by the shell, published in the birth) instead of the counter floor;
  once accepted (acked, persisted) the floor is its counter and the nonce is gone
  (``reset_nonce`` is None): a reset of another boot, a used nonce or a wrong one is rejected
  "bad-nonce" with a "rejected" event, like a replay;
- "rejected" events are rate-limited to ``REJECT_EVENTS_PER_MIN``; the counters always count;
- a ``play`` with a ``lead`` (an emergency to a receiver that must fetch its media first)
  whose lead it holds (pinned: the alert tone) plays the lead at once while the media is
  fetched, then the emergency as soon as both the lead has ended and the media is in; the
  lead is never reported (no started/ended: what the head-end tracks is the emergency) nor
  kept in flash; a newer emergency cuts it short as it would the emergency;
- the amplifier relay closes ``amp_settle_ms`` before a scheduled start (no thump in the first
  words), at once for an item that starts now (whose first sample then waits for it), and
  opens when nothing plays and nothing starts within ``amp_settle_ms``;
- how the amplifier is held when idle (``amp_standby``, the installation's ``amp_hold``): off
  (the relay open, the default: no idle draw, no hum) or, on a board with a mute line
  (``amp_mute``), standby always or in some local hours: the relay stays closed with the
  mute asserted, so a play waits only ``amp_unmute_ms`` for the unmute instead of the
  settle (an emergency's first words ~300 ms sooner). On such a board the mute is asserted
  whenever nothing plays (also before the relay closes and opens: no pop either way) and
  released as a play (or the periodic test's tone) starts; its first sample waits for the
  settle and the unmute, whichever ends later. Standby in hours is judged by the synced
  clock (before the first sync: off);
- the media of scheduled items is fetched ahead, earliest start first, as far as it fits
  ``cache_budget`` (set by the shell: what the media cache may hold) together with what plays
  and what starts earlier; a later item's fetch waits until earlier ones have played (their
  media may then be evicted). A ``play`` or ``fetch`` command fetches at once regardless;
- the zone's volume limit comes with each ``schedule`` (``vmax``, kept in flash): a
  ``play``, ``stream``, ``volume`` or ``schedule`` asking for more is refused
  "volume-limit", and whatever plays is held to it (a default volume set before the limit
  came down); an emergency is not limited (it is sent by a role of its own, at the
  emergency volume: people must hear a flood warning);
- the zone's early-morning hours come with it too (``early``: a daily start, a length and a
  lower limit, kept in flash, firmware/volume.py): in them the lower limit is the limit. A
  ``play`` or ``stream`` (at its ``at``, else now) or a ``schedule`` item (at its ``at``)
  asking for more is refused "volume-limit"; a ``volume`` (the default for the whole day) is
  judged by the zone's limit alone and held to the lower one in the hours; what plays when
  the hours begin is brought down at once, and up again when they end;
- a ``selftest`` (the periodic test) never runs during an emergency (one playing or waiting:
  reported at once "emergency"); it waits while anything plays or starts within
  ``SELFTEST_QUIET_MS`` (a minute), for at most ``SELFTEST_WAIT_MS`` (then "busy"); while it
  runs (state TESTING) anything that starts cuts it short ("interrupted"): no broadcast ever
  waits for a test. A newer selftest replaces one still waiting (the older is reported
  "busy"). The verdict is the core's: the first failing check of sink, relay read-back,
  fault line, flash free, clock (firmware/reasons.py, in that order);
- fetches follow firmware/fetch_policy.py (one rule for attempts, backoff and giving up;
  a failure while the link is down does not count), time requests
  firmware/sync_cadence.py (burst at each link up, refine, periodic; none while down).
"""

from firmware import reasons as R
from firmware.daily import in_hours
from firmware.fetch_policy import FetchPolicy
from firmware.guard import AUTH_REASONS, MALFORMED_REASONS, CommandGuard
from firmware.jitter import JitterBuffer
from firmware.reasons import REFUSED_VOLUME
from firmware.schedule import KIND_PLAY, KIND_STREAM, Item, Schedule, StreamInfo
from firmware.sync_cadence import SyncCadence
from firmware.volume import limit_at, next_change
from protocol import messages as M
from protocol.errors import ProtocolError
from protocol.frames import unpack_frame
from protocol.rekey import open_box
from protocol.signing import HmacKey, key_from_hex
from protocol.topics import stream_topic

START = "start"
STOP = "stop"
FETCH = "fetch"
PIN = "pin"
EVENT = "event"
VOLUME = "volume"
REBOOT = "reboot"
IDENTIFY = "identify"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
PERSIST = "persist"
AMP = "amp"
MUTE = "mute"
SYNC_REQUEST = "sync_request"
UPDATE = "update"
SELFTEST = "selftest"
SELFTEST_ABORT = "selftest_abort"
REKEY = "rekey"
REKEY_CONFIRMED = "rekey_confirmed"

STANDBY_ALWAYS = "always"       # amp_standby: held powered and muted at every hour

IDLE = "idle"
PLAYING = "playing"
TESTING = "testing"             # the periodic test's tone (nothing plays)
TRANSITIONS = {
    (IDLE, "start"): PLAYING,
    (PLAYING, "finish"): IDLE,
    (PLAYING, "stop"): IDLE,
    (IDLE, "test"): TESTING,
    (TESTING, "tested"): IDLE,
    (TESTING, "abort"): IDLE,   # something starts: the test gives way
}

GRACE_MS = 300000
STREAM_TIMEOUT_MS = 10000       # no frame for this long: the stream failed
STREAM_END_MARGIN_MS = 1000     # after the FLAG_LAST frame's audio should have ended
NOW_ITEM_GIVE_UP_MS = 120000    # an "at: now" item whose media never arrives
START_LEAD_MS = 250             # a scheduled item goes to the player this long before its
                                # start: the player prepares (file, seek) and then waits for the
                                # exact moment, so the first sample goes out with nothing but a
                                # timer between it and the clock, however busy the loop is
MAX_HELD = 8
REJECT_EVENTS_PER_MIN = 10
DONE_MEMORY = 32
IDENTIFY_DEFAULT_S = 10
SELFTEST_QUIET_MS = 60000       # a selftest waits while something plays or starts this soon
SELFTEST_WAIT_MS = 600000       # ... for at most this long, then reports "busy"
SELFTEST_LEVEL = -30            # dBFS of the tone, when the command names none
SELFTEST_TONE_MS = 1000

DETAIL_MISSED = "missed"
DETAIL_NOT_CACHED = "not-cached"
DETAIL_STREAM_TIMEOUT = "stream-timeout"


class IllegalTransition(Exception):
    def __init__(self, state, event):
        super().__init__("illegal transition %s --%s-->" % (state, event))
        self.state = state
        self.event = event


class ReceiverCore:
    """One receiver's state. ``codecs`` are what its sink decodes; ``state`` from PERSIST.
    ``guard``: the CommandGuard to judge commands with (the shell's makes each counter durable
    before the command acts, firmware/recovery.py); a plain one by default. ``amp_settle_ms``:
    how long the amplifier relay needs before the first sample; ``timesync_burst`` and
    ``timesync_ms``: the time-sync cadence (firmware/sync_cadence.py); ``random_below(n)``:
    an int in [0, n) (the board's), to spread a fleet's time requests; none: 0.
    ``reset_nonce``: this boot's nonce for one ``reset_floor`` (64 hex digits from the board's
    RNG; the shell puts it in the birth), None: no reset is accepted. ``amp_mute``: the
    board has an amplifier mute line, which needs ``amp_unmute_ms`` from release to sound;
    ``amp_standby``: how the amplifier is held when idle (``firmware.config.amp_standby``:
    None off, ``STANDBY_ALWAYS``, or ``(from_min, to_min)`` local minutes of the day, the
    local time being the network time plus ``utc_offset_min``); standby needs the mute line."""

    def __init__(self, device, site, key, codecs=("mp3", "adpcm"), volume=70,
                 emergency_volume=100, state=None, jitter_slots=16, jitter_slot_bytes=4096,
                 guard=None, amp_settle_ms=0, timesync_burst=5, timesync_ms=300000,
                 random_below=None, reset_nonce=None, amp_mute=False, amp_unmute_ms=0,
                 amp_standby=None, utc_offset_min=0):
        self.device = device
        self.site = site
        self.codecs = codecs
        self.emergency_volume = emergency_volume
        self.volume = volume
        self.state = IDLE
        self.current = None         # the Item playing
        self.started_at = None      # network ms when it started
        self.schedule = Schedule()
        self.synced = False
        self.seq = 0                # last event seq used
        self.counters = {"rejected": 0, "malformed": 0, "bad_frames": 0}
        self._guard = guard if guard is not None else CommandGuard(key, device)
        self._guard.reset_nonce = reset_nonce  # the one place it is set (the guard forgets it)
        self._cached = set()        # sha of media in the cache
        self._fetches = FetchPolicy()
        self._sync = SyncCadence(timesync_burst, timesync_ms, random_below)
        self.amp_settle_ms = amp_settle_ms
        self._amp_since = None      # network ms the relay closed; None while it is open
        self.amp_mute = amp_mute
        self.amp_unmute_ms = amp_unmute_ms if amp_mute else 0
        self.amp_standby = amp_standby if amp_mute else None  # no mute line: no standby
        self.utc_offset_min = utc_offset_min
        # Local (from_min, to_min) as daily hours on the network clock: (phase ms, length ms).
        self._standby_hours = None
        if self.amp_standby is not None and self.amp_standby != STANDBY_ALWAYS:
            start, end = self.amp_standby
            self._standby_hours = ((start - utc_offset_min) * 60000,
                                   (end - start) % 1440 * 60000)
        self._muted = True          # the mute line as last set (the board boots it asserted)
        self._unmuted_at = None     # network ms the mute was released; None while asserted
        self._done = []             # bids recently ended
        self._held = []             # payloads received before the first sync
        self._arrivals = 0
        self._reject_window = 0
        self._reject_count = 0
        self._jitter_shape = (jitter_slots, jitter_slot_bytes)
        self.jitter = None          # JitterBuffer, made on the first stream (64 KB by default)
        self._dirty = False
        # Bytes the media cache may hold (the shell's MediaCache.budget()); None: no limit
        # known. Media of the schedule is fetched ahead, earliest first, only as far as it
        # fits (``_fitting``): the rest waits until what plays first has played.
        self.cache_budget = None
        # The zone's volume limit (a ``schedule``'s ``vmax``; None: none): see _volume_for.
        self.volume_limit = None
        # The zone's early-morning hours and their lower limit (a ``schedule``'s ``early``:
        # {"from", "len", "vmax"}, recurring every day; None: none), and the limit last
        # applied to what plays, so the hours' start and end bring it down and up again.
        self.early = None
        self._applied_limit = None
        self._limit_until = None    # when the early hours next begin or end (epoch ms)
        self._selftest = None       # [args, since] of a selftest waiting for a quiet moment
        self._testing = None        # the args of the selftest the shell is running
        self.rekey_rid = None       # the rotation whose credentials are pending, if any
        if state:
            self._restore(state)

    def set_pending_key(self, rid, key):
        """A rotation left pending by an earlier boot (firmware/rotation.py): commands signed
        with its key (bytes) pass too, and the first one confirms it."""
        self.rekey_rid = rid
        self._guard.pending_key = key

    @property
    def reset_nonce(self):
        """This boot's nonce for a ``reset_floor`` while it is unused, else None: what the
        birth carries."""
        return self._guard.reset_nonce

    # -- persisted state -----------------------------------------------------------------

    def _restore(self, state):
        self._guard.last_ctr = state.get("ctr", 0)
        self.seq = state.get("seq", 0)
        self.volume = state.get("vol", self.volume)
        self.volume_limit = state.get("vmax")
        self.early = state.get("early")
        self._done = list(state.get("done", ()))
        for since, args in state.get("items", ()):
            try:
                M.check_args(M.PLAY, args)
            except ProtocolError:
                continue
            self.schedule.add(self._play_item(args, since))

    def export_state(self):
        return {"ctr": self._guard.last_ctr, "seq": self.seq, "vol": self.volume,
                "vmax": self.volume_limit, "early": self.early, "done": list(self._done),
                "items": [[it.since, it.args] for it in self.schedule.scheduled()]}

    def _finish(self, acts, now):
        """What every input ends with: the relay, what has come due, the state to flash."""
        self._follow_limit(now, acts)
        self._relay(now, acts)
        for media in self._fetches.due(now):
            acts.append((FETCH, media))
        if self._sync.poll(now, self.synced):
            acts.append((SYNC_REQUEST,))
        if self._dirty:
            self._dirty = False
            acts.append((PERSIST, self.export_state()))
        return acts

    # -- helpers -------------------------------------------------------------------------

    def _transition(self, event):
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise IllegalTransition(self.state, event)
        self.state = new

    def _event(self, kind, now, fields, acts):
        # The seq alone does not make the state dirty: the outbox keeps the last seq it saw
        # in flash, and the shell restores max(state, outbox) (one flash write less per event).
        self.seq += 1
        acts.append((EVENT, M.event(self.seq, kind, now, fields)))

    def _ack(self, cmd_id, ok, reason, now, acts):
        fields = {"cmd": cmd_id, "ok": ok}
        if reason:
            fields["reason"] = reason
        self._event(M.EV_ACK, now, fields, acts)

    def count(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n

    def _fold_stream_stats(self):
        # The jitter buffer's stats are per stream (reset for each); the heartbeat reports
        # since boot, so a finished stream's figures move into the counters first.
        for name in ("lost", "late"):
            self.count(name, self.jitter.stats[name])

    def frames_since_boot(self, name):
        """Live audio frames ``name`` ("lost" or "late") since boot, the current stream's
        included: the heartbeat's ``lost``/``late``."""
        n = self.counters.get(name, 0)
        return n + self.jitter.stats[name] if self.jitter is not None else n

    def _remember_done(self, bid):
        if bid in self._done:
            return
        self._done.append(bid)
        if len(self._done) > DONE_MEMORY:
            self._done.pop(0)
        self._dirty = True

    def _known_bid(self, bid):
        if self.current is not None and self.current.bid == bid:
            return True
        return bid in self._done or bool(self.schedule.by_bid(bid))

    def _volume_for(self, item, now):
        if item.prio == M.PRIO_EMERGENCY:
            return self.emergency_volume if item.vol is None else item.vol
        return self._limited(self.volume if item.vol is None else item.vol, now)

    def _limited(self, vol, now):
        """``vol`` held to the limit at ``now``: whatever a command said (a default volume
        set before the limit came down), nothing but an emergency plays louder."""
        limit = limit_at(self.volume_limit, self.early, now)
        return vol if limit is None or vol <= limit else limit

    def _too_loud(self, vol, prio, limit):
        return vol is not None and limit is not None and vol > limit \
            and prio != M.PRIO_EMERGENCY

    def _follow_limit(self, now, acts):
        """The early-morning hours began or ended: what plays follows the new limit. Worked
        out again only when they do (every input ends here, live frames included)."""
        if self.early is None:
            limit = self.volume_limit
        elif self._limit_until is None or now >= self._limit_until:
            limit = limit_at(self.volume_limit, self.early, now)
            self._limit_until = next_change(self.early, now)
        else:
            return
        if limit == self._applied_limit:
            return
        self._applied_limit = limit
        cur = self.current
        if cur is not None and cur.prio != M.PRIO_EMERGENCY:
            acts.append((VOLUME, self._volume_for(cur, now)))

    def playing(self):
        """A small summary of what plays, for telemetry: dict or None."""
        cur = self.current
        if cur is None:
            return None
        name, value = cur.ident()
        return {"bid": cur.bid, name: value, "prio": cur.prio, "since": self.started_at}

    def _played_media(self):
        """sha of the media the schedule and what plays need."""
        need = set()
        items = list(self.schedule)
        if self.current is not None:
            items.append(self.current)
        for it in items:
            if it.kind == KIND_PLAY:
                need.add(it.sha)
        return need

    def needed_media(self):
        """sha of every media item the schedule still needs or is being fetched (the cache
        must not evict them)."""
        need = self._played_media()
        for sha in self._fetches.shas():
            need.add(sha)
        return need

    def _fitting(self):
        """sha of the media the schedule needs that fit the cache budget together, earliest
        start first (what plays now first); None: no budget known, all of it. The earliest
        is always in (the fetch says so if even it does not fit)."""
        budget = self.cache_budget
        if budget is None:
            return None
        items = list(self.schedule)
        if self.current is not None:
            items.insert(0, self.current)
        fits = set()
        total = 0
        for it in items:
            if it.kind != KIND_PLAY or it.sha in fits:
                continue
            total += it.args["size"]
            if fits and total > budget:
                break
            fits.add(it.sha)
        return fits

    def _scheduled_needs(self, sha):
        for it in self.schedule:
            if it.kind == KIND_PLAY and it.sha == sha:
                return True
        return False

    def _emergency_on(self):
        """An emergency plays, or waits to (due or scheduled)."""
        cur = self.current
        if cur is not None and cur.prio == M.PRIO_EMERGENCY:
            return True
        for it in self.schedule:
            if it.prio == M.PRIO_EMERGENCY:
                return True
        return False

    def busy_within(self, now, window_ms):
        """Whether something plays, or (by a synced clock) starts within ``window_ms``."""
        if self.current is not None:
            return True
        if not self.synced:
            return False  # nothing is started before the sync anyway
        for it in self.schedule:
            if it.start_ref() - now <= window_ms:
                return True
        return False

    def set_cached(self, shas):
        self._cached = set(shas)

    # -- commands ------------------------------------------------------------------------

    def on_command(self, payload, now):
        acts = []
        if not self.synced:
            # Never judged on an unsynced clock, however long the sync takes: the head-end
            # retries what it still wants, so dropping the oldest is safe, acting is not.
            self._held.append(bytes(payload))
            if len(self._held) > MAX_HELD:
                self._held.pop(0)
                self.count("held_overflow")
            return acts
        self._command(payload, now, acts)
        return self._finish(acts, now)

    def set_synced(self, now):
        acts = []
        if not self.synced:
            self.synced = True
            self._release_held(now, acts)
        return self._finish(acts, now)

    def clock_stepped(self, now, step_ms):
        """The clock moved by ``step_ms`` (a time sample; years at a first sync after a power
        cut): what the core times as a wait keeps its length, and so does what is playing.
        Start times are wall times."""
        self._sync.shift(step_ms)
        self._fetches.shift(step_ms)
        if self._amp_since is not None:
            self._amp_since += step_ms
        if self._unmuted_at is not None:
            self._unmuted_at += step_ms
        if self.current is not None and self.started_at is not None:
            # The play began at the same instant, now read on the corrected clock: its played
            # time stays what was heard (a resync mid-play once logged 21 s heard as 0 ms).
            self.started_at += step_ms
        return self._finish([], now)

    # -- the broker link -------------------------------------------------------------------

    def link_up(self, now):
        """The broker link is up (connected, subscribed): a time-sync burst, and the fetches
        that waited for the link go at once."""
        self._sync.link_up(now)
        self._fetches.link_up(now)
        return self._finish([], now)

    def link_down(self, now):
        """The broker link is gone: no time requests until it is back, and a fetch that fails
        meanwhile does not count towards giving up."""
        self._sync.link_down()
        self._fetches.link_down()
        return self._finish([], now)

    def _release_held(self, now, acts):
        held = self._held
        self._held = []
        for payload in held:
            self._command(payload, now, acts)

    def _reject(self, reason, cmd_id, now, acts, leaf="cmd"):
        self.count("rejected")
        self.count(reason)
        if reason in MALFORMED_REASONS:
            self.count("malformed")
        # Rate limit what goes on air: a flood of junk must not become a flood of uplink.
        if now - self._reject_window >= 60000:
            self._reject_window = now
            self._reject_count = 0
        self._reject_count += 1
        if self._reject_count > REJECT_EVENTS_PER_MIN:
            self.count("unreported")
            return
        self._ack(cmd_id, False, reason, now, acts)
        if reason in AUTH_REASONS:
            self._event(M.EV_REJECTED, now, {"topic": leaf, "reason": reason}, acts)

    def _command(self, payload, now, acts):
        try:
            cmd = self._guard.check(payload, now)
        except ProtocolError as e:
            cmd_id = None
            if e.reason not in ("malformed", "bad-signature"):
                cmd_id = self._guard.command_id(payload)
            self._reject(e.reason, cmd_id, now, acts)
            return
        except Exception:  # never let peer input raise out of the core
            self._reject("malformed", None, now, acts)
            return
        self._guard.accept(cmd)
        now = self._guard.acting_now(now)
        self._dirty = True
        kind = cmd["k"]
        args = cmd["a"]
        if self._guard.by_pending:
            # Signed with the offered key: the head-end has it and signs with nothing else now.
            self._guard.promote()
            acts.append((REKEY_CONFIRMED, self.rekey_rid))
            self.rekey_rid = None
        refusal = self._refusal(kind, args, now)
        offer = None
        if not refusal and kind == M.REKEY and "box" in args:
            try:
                offer = self._rekey_offer(args)
            except ProtocolError as e:
                refusal = e.reason
        if refusal:
            self._reject(refusal, cmd["id"], now, acts)
            return
        self._ack(cmd["id"], True, None, now, acts)
        if offer is not None:
            acts.append(offer)
        if kind == M.PLAY:
            self._cmd_play(args, now, acts)
        elif kind == M.STREAM:
            self._cmd_stream(args, now, acts)
        elif kind == M.STOP:
            self._cmd_stop(args.get("bid"), now, acts)
        elif kind == M.VOLUME:
            self._cmd_volume(args["vol"], now, acts)
        elif kind == M.SCHEDULE:
            self._cmd_schedule(args, now, acts)
        elif kind == M.FETCH:
            self._cmd_fetch(args, now, acts)
        elif kind == M.IDENTIFY:
            acts.append((IDENTIFY, args.get("secs") or IDENTIFY_DEFAULT_S))
        elif kind == M.REBOOT:
            acts.append((REBOOT,))
        elif kind == M.UPDATE:
            acts.append((UPDATE, args))
        elif kind == M.SELFTEST:
            self._cmd_selftest(args, now, acts)
        # M.RESET_FLOOR: the guard has set the floor; the PERSIST (dirty) writes it.

    def _rekey_offer(self, args):
        """The REKEY action for a ``rekey`` offering credentials; raises ProtocolError for an
        offer that does not open. The same offer again gives the same action: the head-end
        sends it again when it still hears the old key (the receiver went back to the old
        account after a refusal), so the shell tries the new account again."""
        if not args.get("user"):
            raise ProtocolError("bad-args", "rekey box without user")
        key_hex, password = open_box(self._guard.key, args["rid"], args["box"])
        self.rekey_rid = args["rid"]
        self._guard.pending_key = key_from_hex(key_hex)
        return (REKEY, args["rid"], key_hex, args["user"], password)

    def _refusal(self, kind, args, now):
        """A reason to refuse an authentic, well-formed command, or None."""
        if kind in (M.PLAY, M.FETCH, M.STREAM) and args["codec"] not in self.codecs:
            return "unsupported-codec"
        if kind == M.SCHEDULE:
            for a in args["items"]:
                if a["codec"] not in self.codecs:
                    return "unsupported-codec"
                limit = limit_at(args.get("vmax"), args.get("early"), a["at"])
                if self._too_loud(a.get("vol"), a["prio"], limit):
                    return REFUSED_VOLUME
        if kind in (M.PLAY, M.STREAM):
            at = args.get("at")
            limit = limit_at(self.volume_limit, self.early, now if at is None else at)
            if self._too_loud(args.get("vol"), args["prio"], limit):
                return REFUSED_VOLUME
        if kind == M.VOLUME and self._too_loud(args["vol"], None, self.volume_limit):
            return REFUSED_VOLUME
        if kind == M.STREAM:
            try:
                key_from_hex(args["key"])
            except ProtocolError:
                return "bad-field"
        if kind == M.UPDATE and self.current is not None:
            return "busy"  # never while an emergency, live talk or a programme plays
        return None

    def _play_item(self, args, since):
        self._arrivals += 1
        return Item(args["bid"], KIND_PLAY, args.get("at"), args["dur"], args["prio"],
                    args.get("vol"), args, since, self._arrivals)

    def _cmd_play(self, args, now, acts):
        if self._known_bid(args["bid"]):
            return
        item = self._play_item(args, now)
        self.schedule.add(item)
        lead = args.get("lead")
        if lead is not None and item.at is None and item.sha not in self._cached \
                and lead["sha"] in self._cached and lead["codec"] in self.codecs:
            # Newer than its emergency, so the emergency (same class) never cuts it short.
            self.schedule.add(self._lead_item(item, lead, now))
        self._want_media(item.args, now, True)
        self._run(now, acts)

    def _lead_item(self, item, lead, now):
        """The pinned item an emergency opens with while its own media is fetched."""
        args = dict(item.args)
        for name in ("item", "sha", "dur", "codec", "rate"):
            args[name] = lead[name]
        del args["lead"]
        self._arrivals += 1
        it = Item(item.bid, KIND_PLAY, None, lead["dur"], item.prio, item.vol, args, now,
                  self._arrivals)
        it.lead = True
        return it

    def _cmd_stream(self, args, now, acts):
        if self._known_bid(args["bid"]):
            return
        topic = stream_topic(self.site, args["sid"])
        info = StreamInfo(args["sid"], args["sno"], HmacKey(key_from_hex(args["key"])),
                          args["codec"], args["rate"], args.get("until"), topic, now)
        self._arrivals += 1
        item = Item(args["bid"], KIND_STREAM, None, None, args["prio"], args.get("vol"),
                    args, now, self._arrivals, info)
        acts.append((SUBSCRIBE, topic))
        self.schedule.add(item)
        self._run(now, acts)

    def _cmd_stop(self, bid, now, acts):
        cur = self.current
        if cur is not None and (bid is None or cur.bid == bid):
            self._stop_current(M.END_CANCELLED, None, now, acts)
        for it in self.schedule:
            if (bid is None and it.start_ref() <= now) or (bid is not None and it.bid == bid):
                self.schedule.remove(it)
                self._remember_done(it.bid)
                if it.kind == KIND_STREAM:
                    acts.append((UNSUBSCRIBE, it.stream.topic))
        self._dirty = True
        self._run(now, acts)

    def _cmd_volume(self, vol, now, acts):
        self.volume = vol
        self._dirty = True
        cur = self.current
        if cur is not None and cur.vol is None and cur.prio != M.PRIO_EMERGENCY:
            acts.append((VOLUME, self._limited(vol, now)))

    def _cmd_schedule(self, args, now, acts):
        """Replace what the window [from, to) holds with its items; their media is fetched
        ahead as far as the cache budget goes (``_fitting``), the rest as room comes."""
        self._set_limit(args.get("vmax"), args.get("early"), now, acts)
        self.schedule.clear_window(args["from"], args["to"])
        added = []
        for a in args["items"]:
            if self._known_bid(a["bid"]):
                continue  # playing, played or stopped: never twice
            item = self._play_item(a, now)
            self.schedule.add(item)
            added.append(a)
        fits = self._fitting()
        for a in added:
            if fits is None or a["sha"] in fits:
                self._want_media(a, now, True)
        self._dirty = True
        self._run(now, acts)

    def _set_limit(self, limit, early, now, acts):
        """A new zone volume limit or early hours; what plays is brought under it at once
        (by ``_follow_limit``, which every input ends with)."""
        if limit == self.volume_limit and early == self.early:
            return
        self.volume_limit = limit
        self.early = early
        self._limit_until = None
        self._dirty = True
        self._follow_limit(now, acts)

    def _cmd_fetch(self, args, now, acts):
        pin = args.get("pin")
        if pin is not None:
            acts.append((PIN, args["sha"], pin))
            if not pin and args["sha"] not in self._cached:
                return  # unpinning what it does not hold: nothing to fetch
        if args["sha"] in self._cached:
            self._event(M.EV_FETCHED, now, {"item": args["item"], "sha": args["sha"]}, acts)
        else:
            self._want_media(args, now, True)

    # -- media ---------------------------------------------------------------------------

    def _want_media(self, args, now, asked):
        """Fetch ``args``' media unless it is cached (firmware/fetch_policy.py); ``asked``: a
        command wants it now, rather than the schedule still needing it."""
        if args["sha"] not in self._cached:
            self._fetches.want(args, now, asked)

    def media_ready(self, sha, now):
        acts = []
        item_id = self._fetches.ready(sha)
        self._cached.add(sha)
        if item_id is not None:
            self._event(M.EV_FETCHED, now, {"item": item_id, "sha": sha}, acts)
        self._run(now, acts)
        return self._finish(acts, now)

    def media_failed(self, sha, now, detail):
        """One fetch attempt failed; retried, or given up and reported once, by the policy."""
        acts = []
        item_id = self._fetches.failed(sha, now, detail, self._scheduled_needs(sha))
        if item_id is not None:
            self._event(M.EV_FETCH_FAILED, now, {"item": item_id, "sha": sha, "reason": detail},
                        acts)
        return self._finish(acts, now)

    def update_result(self, ver, ok, reason, now):
        """The shell's updater staged version ``ver`` (ok) or stopped (``reason``): reported."""
        acts = []
        self._event(M.EV_UPDATE, now, {"ver": ver, "ok": ok, "reason": reason}, acts)
        return self._finish(acts, now)

    def media_evicted(self, sha):
        self._cached.discard(sha)

    # -- live frames ---------------------------------------------------------------------

    def _stream_item(self, sid):
        cur = self.current
        if cur is not None and cur.kind == KIND_STREAM and cur.stream.sid == sid:
            return cur
        for it in self.schedule:
            if it.kind == KIND_STREAM and it.stream.sid == sid:
                return it
        return None

    def on_frame(self, sid, payload, now):
        """A frame for stream ``sid``: checked, then buffered if that stream plays."""
        item = self._stream_item(sid)
        if item is None:
            self.count("stray_frames")
            return
        info = item.stream
        try:
            frame = unpack_frame(info.hkey, payload)
        except ProtocolError as e:
            self.count("malformed" if e.reason == "malformed" else "bad_frames")
            return
        if frame.stream_no != info.sno:
            self.count("stale_frames")
            return
        info.last_rx = now
        if frame.last:
            info.end_at = frame.play_at + frame.samples * 1000 // info.rate
        if item is self.current:
            self.jitter.push(frame.seq, frame.play_at, frame.samples, frame.last,
                             frame.payload, now)

    # -- playback ------------------------------------------------------------------------

    def tick(self, now):
        acts = []
        self._run(now, acts)
        return self._finish(acts, now)

    def finished(self, item, now):
        """The player reached the end of ``item``."""
        acts = []
        if item is not self.current:
            return acts
        self._transition("finish")
        self._ended(item, M.END_FINISHED, None, now - self.started_at, now, acts)
        self.current = None
        self._run(now, acts)
        return self._finish(acts, now)

    def failed(self, item, now, detail):
        """The player could not go on with ``item`` (file, decoder or sink error)."""
        acts = []
        if item is not self.current:
            return acts
        self._transition("stop")
        self._ended(item, M.END_FAILED, detail, now - self.started_at, now, acts)
        self.current = None
        self._run(now, acts)
        return self._finish(acts, now)

    def next_due(self, now):
        """The next network time at which ``tick`` has something to do, or None: a hand-over
        to the player, the relay, a stream's end, a fetch attempt, a time request."""
        due = self._fetches.next_due()
        sync = self._sync.due
        if sync is not None and (due is None or sync < due):
            due = sync
        if not self.synced:
            return due  # nothing in the schedule is judged before the sync
        items = list(self.schedule)
        if self.current is not None:
            items.append(self.current)
        for it in items:
            if it.kind == KIND_STREAM:
                info = it.stream
                for t in (info.until, info.last_rx + STREAM_TIMEOUT_MS,
                          None if info.end_at is None else info.end_at + STREAM_END_MARGIN_MS):
                    if t is not None and (due is None or t < due):
                        due = t
                continue
            start = it.start_ref()
            if start <= now:
                continue  # due already: waiting for the player, looked at on every tick
            # The hand-over, or (in the lead window, the player busy) the start itself.
            t = start - START_LEAD_MS
            if t <= now:
                t = start
            if self._amp_since is None and now < start - self.amp_settle_ms < t:
                t = start - self.amp_settle_ms
            if due is None or t < due:
                due = t
        return due

    def _relay(self, now, acts):
        """The amplifier relay: closed while something plays or starts within the settle time
        (it settles before the first sample), or while the amplifier is held in standby; open
        otherwise. The mute (a board with the line): asserted whenever nothing sounds."""
        sounding = self.current is not None or self.state == TESTING
        wanted = sounding or self._standby(now)
        if not wanted and self.synced:
            for it in self.schedule:  # a start to come (not one waiting for its media)
                if now < it.start_ref() <= now + self.amp_settle_ms:
                    wanted = True
                    break
        if not sounding:
            self._mute(True, now, acts)  # before the relay opens: no pop
        if wanted and self._amp_since is None:
            self._close_relay(now, acts)
        elif not wanted and self._amp_since is not None:
            self._amp_since = None
            acts.append((AMP, False))

    def _close_relay(self, now, acts):
        self._mute(True, now, acts)  # before the relay closes: the power-up is not heard
        self._amp_since = now
        acts.append((AMP, True))

    def _mute(self, on, now, acts):
        if self.amp_mute and on != self._muted:
            self._muted = on
            self._unmuted_at = None if on else now
            acts.append((MUTE, on))

    def _sound_from(self, now, acts):
        """Make the amplifier pass sound (relay closed, mute released); return the network
        time from which it does: its settle and its unmute both over."""
        if self._amp_since is None:
            self._close_relay(now, acts)
        self._mute(False, now, acts)
        ready = self._amp_since + self.amp_settle_ms
        if self._unmuted_at is not None and self._unmuted_at + self.amp_unmute_ms > ready:
            ready = self._unmuted_at + self.amp_unmute_ms
        return ready

    def _standby(self, now):
        """Whether the amplifier is held powered (muted) now: the installation's ``amp_hold``."""
        hold = self.amp_standby
        if hold is None:
            return False
        if hold == STANDBY_ALWAYS:
            return True
        if not self.synced:
            return False  # local hours mean nothing before the clock is set
        hours = self._standby_hours  # set with amp_standby's hours: across midnight too
        return hours is not None and in_hours(hours[0], hours[1], now)

    def _ended(self, item, reason, detail, played_ms, now, acts):
        if item.lead:
            return  # not the emergency itself: it still comes, and is what is reported
        name, value = item.ident()
        fields = {"bid": item.bid, name: value, "reason": reason, "played": max(0, played_ms)}
        if detail:
            fields["detail"] = detail
        self._event(M.EV_ENDED, now, fields, acts)
        self._remember_done(item.bid)
        if item.kind == KIND_STREAM:
            acts.append((UNSUBSCRIBE, item.stream.topic))

    def _drop(self, item, reason, detail, now, acts):
        """End an item that never started."""
        self.schedule.remove(item)
        self._ended(item, reason, detail, 0, now, acts)

    def _stop_current(self, reason, detail, now, acts):
        cur = self.current
        self._transition("stop")
        acts.append((STOP, cur, reason))
        self._ended(cur, reason, detail, now - self.started_at, now, acts)
        self.current = None

    def _start(self, item, now, acts):
        """Hand ``item`` to the player: now, or up to START_LEAD_MS before its start, which
        is then when it starts (events, played time)."""
        if self.state == TESTING:
            self._abort_selftest(now, acts)
        self._transition("start")
        self.schedule.remove(item)
        self.current = item
        start = now
        skip = 0
        if item.at is not None and not item.waited:
            skip = max(0, now - item.at)
            start = max(now, item.at)
        self.started_at = start
        if item.kind == KIND_STREAM:
            if self.jitter is None:
                self.jitter = JitterBuffer(self._jitter_shape[0], self._jitter_shape[1])
            else:
                self._fold_stream_stats()
            self.jitter.reset(item.stream.rate)
        first = self._sound_from(now, acts)
        acts.append((START, item, skip, self._volume_for(item, start), first if first > start else start))
        if item.lead:
            return
        name, value = item.ident()
        self._event(M.EV_STARTED, start,
                    {"bid": item.bid, name: value, "at": item.at, "skip": skip}, acts)

    def _stream_end(self, info, now):
        """Why a stream is over: (reason, detail) or None while it lives."""
        if info.until is not None and now >= info.until:
            return (M.END_FINISHED, None)
        if info.end_at is not None and now >= info.end_at + STREAM_END_MARGIN_MS:
            return (M.END_FINISHED, None)
        if now - info.last_rx >= STREAM_TIMEOUT_MS:
            return (M.END_FAILED, DETAIL_STREAM_TIMEOUT)
        return None

    def _run(self, now, acts):
        """Apply the rules of the module docstring at time ``now``."""
        if not self.synced:
            return  # ``now`` may be year 2000: start nothing, drop nothing as missed
        cur = self.current
        if cur is not None and cur.kind == KIND_STREAM:
            end = self._stream_end(cur.stream, now)
            if end is not None:
                if end[0] == M.END_FINISHED:
                    self._transition("finish")
                    acts.append((STOP, cur, end[0]))
                    self._ended(cur, end[0], None, now - self.started_at, now, acts)
                    self.current = None
                else:
                    self._stop_current(end[0], end[1], now, acts)
        candidates = []
        horizon = now + START_LEAD_MS
        fits = self._fitting()
        for it in self.schedule:
            if it.kind == KIND_STREAM:
                end = self._stream_end(it.stream, now)
                if end is not None:
                    # It never got the speaker: over before its turn came.
                    self._drop(it, M.END_PREEMPTED if end[0] == M.END_FINISHED else end[0],
                               end[1], now, acts)
                else:
                    candidates.append(it)
                continue
            ready = it.sha in self._cached
            if it.start_ref() > now:
                if it.start_ref() <= horizon and ready:
                    candidates.append(it)  # in the lead window: handed over early
                elif fits is None or it.sha in fits:
                    self._want_media(it.args, now, False)  # prefetch ahead of air time
                continue
            if it.at is not None:
                if not it.waited and now >= it.at + it.dur:
                    self._drop(it, M.END_FAILED, DETAIL_MISSED, now, acts)
                    continue
                if not ready:
                    self._drop(it, M.END_FAILED, DETAIL_NOT_CACHED, now, acts)
                    continue
            elif not ready and it.lead:
                self.schedule.remove(it)  # a pinned item gone from the cache: no opening
                continue
            elif not ready:
                if now - it.since >= NOW_ITEM_GIVE_UP_MS:
                    self._drop(it, M.END_FAILED, DETAIL_NOT_CACHED, now, acts)
                else:
                    self._want_media(it.args, now, False)
                continue
            candidates.append(it)
        # Highest class first; among live/emergency the newest first; otherwise schedule order.
        candidates.sort(key=lambda it: (-it.prio, -it.seq if it.prio >= M.PRIO_LIVE else 0,
                                        it.start_ref(), it.seq))
        for it in candidates:
            cur = self.current
            ahead = it.start_ref() > now  # in the lead window: started early, never waits
            if cur is None:
                self._start(it, now, acts)
            elif it.prio > cur.prio or (it.prio == cur.prio and it.prio >= M.PRIO_LIVE
                                        and it.seq > cur.seq):
                self._stop_current(M.END_PREEMPTED, None, now, acts)
                self._start(it, now, acts)
            elif cur.lead and cur.bid == it.bid:
                it.waited = True  # fetched while its opening plays: follows it
            elif it.prio == cur.prio and it.prio >= M.PRIO_LIVE:
                self._drop(it, M.END_PREEMPTED, None, now, acts)  # an older one of its class
            elif ahead:
                continue  # judged again at its start
            elif it.kind == KIND_STREAM:
                it.waited = True
            elif now - it.start_ref() > GRACE_MS:
                self._drop(it, M.END_PREEMPTED, None, now, acts)
            else:
                it.waited = True
        self._fetches.drop_unneeded(self._played_media())
        if self._selftest is not None:
            self._selftest_poll(now, acts)

    # -- the periodic test -------------------------------------------------------------------

    def _selftest_event(self, run, ok, reason, fields, now, acts):
        fields["run"] = run
        fields["ok"] = ok
        if reason:
            fields["reason"] = reason
        self._event(M.EV_SELFTEST, now, fields, acts)

    def _cmd_selftest(self, args, now, acts):
        waiting = self._selftest
        if waiting is not None:
            self._selftest_event(waiting[0]["run"], False, R.SELFTEST_BUSY, {}, now, acts)
        if self._emergency_on():
            self._selftest = None
            self._selftest_event(args["run"], False, R.SELFTEST_EMERGENCY, {}, now, acts)
            return
        self._selftest = [args, now]
        self._run(now, acts)

    def _selftest_poll(self, now, acts):
        """Run the waiting selftest once the receiver is quiet (the module docstring)."""
        waiting = self._selftest
        if waiting is None:
            return
        args, since = waiting
        if self.state != IDLE:
            reason = None
            if self.state == PLAYING and self._emergency_on():
                reason = R.SELFTEST_EMERGENCY
            elif now - since >= SELFTEST_WAIT_MS:
                reason = R.SELFTEST_BUSY
            if reason:
                self._selftest = None
                self._selftest_event(args["run"], False, reason, {}, now, acts)
            return
        if self._emergency_on():
            reason = R.SELFTEST_EMERGENCY
        elif self.busy_within(now, SELFTEST_QUIET_MS):
            if now - since < SELFTEST_WAIT_MS:
                return  # looked at again on the next tick
            reason = R.SELFTEST_BUSY
        else:
            reason = None
        self._selftest = None
        if reason:
            self._selftest_event(args["run"], False, reason, {}, now, acts)
            return
        self._transition("test")
        self._testing = args
        settle = max(0, self._sound_from(now, acts) - now)
        acts.append((SELFTEST, args["run"], args.get("lvl") or SELFTEST_LEVEL,
                     args.get("ms") or SELFTEST_TONE_MS, settle))

    def _abort_selftest(self, now, acts):
        self._transition("abort")
        acts.append((SELFTEST_ABORT,))
        testing = self._testing
        self._testing = None
        if testing is not None:
            self._selftest_event(testing["run"], False, R.SELFTEST_INTERRUPTED, {}, now, acts)

    def selftest_done(self, result, now):
        """The shell ran the SELFTEST action. ``result``: ``run``; ``sink`` (True: the tone
        played), ``detail`` (the sink's error, or None); ``relay`` (the relay read back on:
        True/False, None when the board cannot read it); ``fault`` (the amplifier's fault line
        was active); ``ma`` (amplifier current, or None); ``flash`` and ``flash_min`` (bytes
        free, and the least that is fine); ``synced``. A result for a test that was cut short
        (or for another run) is ignored."""
        acts = []
        testing = self._testing
        if self.state != TESTING or testing is None or result.get("run") != testing["run"]:
            return acts
        self._transition("tested")
        self._testing = None
        flash = result.get("flash")
        synced = bool(result.get("synced", self.synced))
        fields = {"sink": bool(result.get("sink")), "relay": result.get("relay"),
                  "fault": bool(result.get("fault")), "ma": result.get("ma"), "flash": flash,
                  "synced": synced, "detail": result.get("detail")}
        if not fields["sink"]:
            reason = R.SELFTEST_SINK
        elif fields["relay"] is False:
            reason = R.SELFTEST_RELAY
        elif fields["fault"]:
            reason = R.SELFTEST_FAULT
        elif flash is not None and flash < (result.get("flash_min") or 0):
            reason = R.SELFTEST_FLASH
        elif not synced:
            reason = R.SELFTEST_CLOCK
        else:
            reason = None
        self._selftest_event(result["run"], reason is None, reason, fields, now, acts)
        self._run(now, acts)
        return self._finish(acts, now)
