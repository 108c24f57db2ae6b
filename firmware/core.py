"""The receiver's decisions, sans-IO: what to play, when, what to report.

No sockets, files, asyncio or clocks here. Every method takes the current network time ``now``
(ms since the Unix epoch by the head-end's clock, as estimated by ``firmware.clock``) and returns
a list of actions for the shell to carry out, in order. The shell (``firmware.shell``) and the
tests drive the same class.

Inputs::

    core.on_command(payload, now)       a message on .../cmd (signed JSON, any bytes)
    core.on_frame(sid, payload, now)    a message on .../stream/{sid} (binary frame); no actions
    core.tick(now)                      time passes (call at ``next_due`` or every few 100 ms)
    core.set_synced(now)                the clock is synced: held commands are processed now,
                                        and from now on times are judged
    core.media_ready(sha, now)          a fetch finished, hash checked
    core.media_failed(sha, now, detail) a fetch gave up (retried after FETCH_RETRY_MS if needed)
    core.media_evicted(sha)             the cache dropped an item
    core.finished(item, now)            the player played ``item`` to its end
    core.failed(item, now, detail)      the player could not play ``item``
    core.count(name)                    count something the shell dropped (malformed, ...)

Actions are tuples whose first element names them::

    (START, item, skip_ms, volume)   play ``item`` (schedule.Item) now, ``skip_ms`` into it
    (STOP, item, reason)             cut the playing ``item`` short (preempted, cancelled, ...)
    (FETCH, media)                   fetch media (dict: item, url, sha, size, codec, rate, dur)
    (EVENT, msg)                     publish event ``msg`` (protocol.messages.event dict) on evt
    (VOLUME, volume)                 set the output volume (0..100) of what is playing
    (REBOOT,)                        reboot once the events are out
    (IDENTIFY, secs)                 blink / beep for ``secs`` seconds
    (SUBSCRIBE, topic)               subscribe to a stream topic
    (UNSUBSCRIBE, topic)
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
- "rejected" events are rate-limited to ``REJECT_EVENTS_PER_MIN``; the counters always count.
"""

from firmware.guard import AUTH_REASONS, MALFORMED_REASONS, CommandGuard
from firmware.jitter import JitterBuffer
from firmware.schedule import KIND_PLAY, KIND_STREAM, Item, Schedule, StreamInfo
from protocol import messages as M
from protocol.errors import ProtocolError
from protocol.frames import unpack_frame
from protocol.signing import HmacKey, key_from_hex
from protocol.topics import stream_topic

START = "start"
STOP = "stop"
FETCH = "fetch"
EVENT = "event"
VOLUME = "volume"
REBOOT = "reboot"
IDENTIFY = "identify"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
PERSIST = "persist"

IDLE = "idle"
PLAYING = "playing"
TRANSITIONS = {
    (IDLE, "start"): PLAYING,
    (PLAYING, "finish"): IDLE,
    (PLAYING, "stop"): IDLE,
}

GRACE_MS = 300000
STREAM_TIMEOUT_MS = 10000       # no frame for this long: the stream failed
STREAM_END_MARGIN_MS = 1000     # after the FLAG_LAST frame's audio should have ended
NOW_ITEM_GIVE_UP_MS = 120000    # an "at: now" item whose media never arrives
FETCH_RETRY_MS = 30000
MAX_HELD = 8
REJECT_EVENTS_PER_MIN = 10
DONE_MEMORY = 32
IDENTIFY_DEFAULT_S = 10

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
    before the command acts, firmware/recovery.py); a plain one by default."""

    def __init__(self, device, site, key, codecs=("mp3", "adpcm"), volume=70,
                 emergency_volume=100, state=None, jitter_slots=16, jitter_slot_bytes=4096,
                 guard=None):
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
        self._cached = set()        # sha of media in the cache
        self._fetching = {}         # sha -> [media args, retry_at or None while in flight]
        self._done = []             # bids recently ended
        self._held = []             # payloads received before the first sync
        self._arrivals = 0
        self._reject_window = 0
        self._reject_count = 0
        self._jitter_shape = (jitter_slots, jitter_slot_bytes)
        self.jitter = None          # JitterBuffer, made on the first stream (64 KB by default)
        self._dirty = False
        if state:
            self._restore(state)

    # -- persisted state -----------------------------------------------------------------

    def _restore(self, state):
        self._guard.last_ctr = state.get("ctr", 0)
        self.seq = state.get("seq", 0)
        self.volume = state.get("vol", self.volume)
        self._done = list(state.get("done", ()))
        for since, args in state.get("items", ()):
            try:
                M.check_args(M.PLAY, args)
            except ProtocolError:
                continue
            self.schedule.add(self._play_item(args, since))

    def export_state(self):
        return {"ctr": self._guard.last_ctr, "seq": self.seq, "vol": self.volume,
                "done": list(self._done),
                "items": [[it.since, it.args] for it in self.schedule.scheduled()]}

    def _finish(self, acts):
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

    def _volume_for(self, item):
        if item.vol is not None:
            return item.vol
        if item.prio == M.PRIO_EMERGENCY:
            return self.emergency_volume
        return self.volume

    def playing(self):
        """A small summary of what plays, for telemetry: dict or None."""
        cur = self.current
        if cur is None:
            return None
        name, value = cur.ident()
        return {"bid": cur.bid, name: value, "prio": cur.prio, "since": self.started_at}

    def needed_media(self):
        """sha of every media item the schedule still needs (the cache must not evict them)."""
        need = set()
        items = list(self.schedule)
        if self.current is not None:
            items.append(self.current)
        for it in items:
            if it.kind == KIND_PLAY:
                need.add(it.sha)
        for sha in self._fetching:
            need.add(sha)
        return need

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
        return self._finish(acts)

    def set_synced(self, now):
        acts = []
        if not self.synced:
            self.synced = True
            self._release_held(now, acts)
        return self._finish(acts)

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
        self._dirty = True
        kind = cmd["k"]
        args = cmd["a"]
        refusal = self._refusal(kind, args)
        if refusal:
            self._reject(refusal, cmd["id"], now, acts)
            return
        self._ack(cmd["id"], True, None, now, acts)
        if kind == M.PLAY:
            self._cmd_play(args, now, acts)
        elif kind == M.STREAM:
            self._cmd_stream(args, now, acts)
        elif kind == M.STOP:
            self._cmd_stop(args.get("bid"), now, acts)
        elif kind == M.VOLUME:
            self._cmd_volume(args["vol"], acts)
        elif kind == M.SCHEDULE:
            self._cmd_schedule(args, now, acts)
        elif kind == M.FETCH:
            self._cmd_fetch(args, now, acts)
        elif kind == M.IDENTIFY:
            acts.append((IDENTIFY, args.get("secs") or IDENTIFY_DEFAULT_S))
        elif kind == M.REBOOT:
            acts.append((REBOOT,))

    def _refusal(self, kind, args):
        """A reason to refuse an authentic, well-formed command, or None."""
        if kind in (M.PLAY, M.FETCH, M.STREAM) and args["codec"] not in self.codecs:
            return "unsupported-codec"
        if kind == M.SCHEDULE:
            for a in args["items"]:
                if a["codec"] not in self.codecs:
                    return "unsupported-codec"
        if kind == M.STREAM:
            try:
                key_from_hex(args["key"])
            except ProtocolError:
                return "bad-field"
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
        self._want_media(item.args, now, acts)
        self._run(now, acts)

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

    def _cmd_volume(self, vol, acts):
        self.volume = vol
        self._dirty = True
        cur = self.current
        if cur is not None and cur.vol is None and cur.prio != M.PRIO_EMERGENCY:
            acts.append((VOLUME, vol))

    def _cmd_schedule(self, args, now, acts):
        self.schedule.clear_window(args["from"], args["to"])
        for a in args["items"]:
            if self._known_bid(a["bid"]):
                continue
            item = self._play_item(a, now)
            self.schedule.add(item)
            self._want_media(a, now, acts)
        self._dirty = True
        self._run(now, acts)

    def _cmd_fetch(self, args, now, acts):
        if args["sha"] in self._cached:
            self._event(M.EV_FETCHED, now, {"item": args["item"], "sha": args["sha"]}, acts)
        else:
            self._want_media(args, now, acts)

    # -- media ---------------------------------------------------------------------------

    def _want_media(self, args, now, acts):
        sha = args["sha"]
        if sha in self._cached:
            return
        entry = self._fetching.get(sha)
        if entry is not None and (entry[1] is None or entry[1] > now):
            return  # in flight, or waiting to retry
        self._fetching[sha] = [args, None]
        media = {}
        for name in ("item", "url", "sha", "size", "codec", "rate", "dur"):
            media[name] = args[name]
        acts.append((FETCH, media))

    def media_ready(self, sha, now):
        acts = []
        entry = self._fetching.pop(sha, None)
        self._cached.add(sha)
        if entry is not None:
            self._event(M.EV_FETCHED, now, {"item": entry[0]["item"], "sha": sha}, acts)
        self._run(now, acts)
        return self._finish(acts)

    def media_failed(self, sha, now, detail):
        acts = []
        entry = self._fetching.get(sha)
        if entry is not None:
            entry[1] = now + FETCH_RETRY_MS
            self._event(M.EV_FETCH_FAILED, now,
                        {"item": entry[0]["item"], "sha": sha, "reason": detail}, acts)
        needed = False
        for it in self.schedule:
            if it.kind == KIND_PLAY and it.sha == sha:
                needed = True
        if not needed:
            self._fetching.pop(sha, None)
        return self._finish(acts)

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
        return self._finish(acts)

    def finished(self, item, now):
        """The player reached the end of ``item``."""
        acts = []
        if item is not self.current:
            return acts
        self._transition("finish")
        self._ended(item, M.END_FINISHED, None, now - self.started_at, now, acts)
        self.current = None
        self._run(now, acts)
        return self._finish(acts)

    def failed(self, item, now, detail):
        """The player could not go on with ``item`` (file, decoder or sink error)."""
        acts = []
        if item is not self.current:
            return acts
        self._transition("stop")
        self._ended(item, M.END_FAILED, detail, now - self.started_at, now, acts)
        self.current = None
        self._run(now, acts)
        return self._finish(acts)

    def next_due(self, now):
        """The next network time at which ``tick`` has something to do, or None."""
        due = self.schedule.next_start(now)
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
        return due

    def _ended(self, item, reason, detail, played_ms, now, acts):
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
        self._transition("start")
        self.schedule.remove(item)
        self.current = item
        self.started_at = now
        skip = 0
        if item.at is not None and not item.waited:
            skip = max(0, now - item.at)
        if item.kind == KIND_STREAM:
            if self.jitter is None:
                self.jitter = JitterBuffer(self._jitter_shape[0], self._jitter_shape[1])
            self.jitter.reset(item.stream.rate)
        acts.append((START, item, skip, self._volume_for(item)))
        name, value = item.ident()
        self._event(M.EV_STARTED, now,
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
            if it.start_ref() > now:
                self._want_media(it.args, now, acts)  # prefetch (and retry) ahead of air time
                continue
            ready = it.sha in self._cached
            if it.at is not None:
                if not it.waited and now >= it.at + it.dur:
                    self._drop(it, M.END_FAILED, DETAIL_MISSED, now, acts)
                    continue
                if not ready:
                    self._drop(it, M.END_FAILED, DETAIL_NOT_CACHED, now, acts)
                    continue
            elif not ready:
                if now - it.since >= NOW_ITEM_GIVE_UP_MS:
                    self._drop(it, M.END_FAILED, DETAIL_NOT_CACHED, now, acts)
                else:
                    self._want_media(it.args, now, acts)
                continue
            candidates.append(it)
        # Highest class first; among live/emergency the newest first; otherwise schedule order.
        candidates.sort(key=lambda it: (-it.prio, -it.seq if it.prio >= M.PRIO_LIVE else 0,
                                        it.start_ref(), it.seq))
        for it in candidates:
            cur = self.current
            if cur is None:
                self._start(it, now, acts)
            elif it.prio > cur.prio or (it.prio == cur.prio and it.prio >= M.PRIO_LIVE
                                        and it.seq > cur.seq):
                self._stop_current(M.END_PREEMPTED, None, now, acts)
                self._start(it, now, acts)
            elif it.prio == cur.prio and it.prio >= M.PRIO_LIVE:
                self._drop(it, M.END_PREEMPTED, None, now, acts)  # an older one of its class
            elif it.kind == KIND_STREAM:
                it.waited = True
            elif now - it.start_ref() > GRACE_MS:
                self._drop(it, M.END_PREEMPTED, None, now, acts)
            else:
                it.waited = True
