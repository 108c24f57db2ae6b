"""When a receiver fetches media, retries, and gives up, sans-IO (the core owns one).

The shell's fetcher makes one attempt per FETCH action (a Range request resumes what an earlier
attempt left in the cache's ``.part``) and reports it: ``ready`` or ``failed``. The rule:

- a wanted item is fetched at once; a failed attempt is tried again after
  ``BACKOFF_MS`` x the attempts so far (2 s, then 4 s);
- after ``ATTEMPTS`` failed attempts the fetch gives up: ``fetch_failed`` is reported once,
  with the last attempt's reason. A failure that retrying soon cannot mend (``GIVE_UP_AT_ONCE``:
  the cache or the flash is full) gives up at the first attempt;
- an item the schedule still needs is then tried again every ``RETRY_MS``, without a new
  report, until it arrives (``fetched`` is reported then) or the schedule no longer needs it;
- a command that asks for the item again (``play``, ``schedule``, ``fetch``) starts a new round
  with its own report: the head-end is waiting for an answer;
- an attempt that failed while the broker link was down does not count: the failure is the
  link's, not the media's; when the link comes back every waiting fetch goes at once.

Times are network ms, as the core gets them.
"""

from firmware.reasons import CACHE_FULL, REFUSED_NO_SPACE

ATTEMPTS = 3
BACKOFF_MS = 2000
RETRY_MS = 30000
GIVE_UP_AT_ONCE = (CACHE_FULL, REFUSED_NO_SPACE)

_FIELDS = ("item", "url", "sha", "size", "codec", "rate", "dur")


class _Fetch:
    __slots__ = ("media", "attempts", "due", "reported")

    def __init__(self, media, now):
        self.media = media
        self.attempts = 0      # failed attempts that count, in this round
        self.due = now         # network ms of the next attempt; None while one is in flight
        self.reported = False  # this round's fetch_failed went out


class FetchPolicy:
    def __init__(self):
        self._fetches = {}     # sha -> _Fetch
        self.link = False      # the broker link is up

    def __contains__(self, sha):
        return sha in self._fetches

    def shas(self):
        return list(self._fetches)

    def want(self, args, now, asked):
        """``args`` (play or fetch arguments) needs its media. ``asked``: a command asked for
        it now (a new round if the last one gave up), rather than the schedule needing it."""
        entry = self._fetches.get(args["sha"])
        if entry is None:
            media = {}
            for name in _FIELDS:
                media[name] = args[name]
            self._fetches[args["sha"]] = _Fetch(media, now)
        elif asked and entry.reported and entry.due is not None:
            entry.attempts = 0
            entry.reported = False
            entry.due = now

    def due(self, now):
        """The media to fetch now (each put in flight)."""
        out = []
        for entry in self._fetches.values():
            if entry.due is not None and entry.due <= now:
                entry.due = None
                out.append(entry.media)
        return out

    def next_due(self):
        due = None
        for entry in self._fetches.values():
            if entry.due is not None and (due is None or entry.due < due):
                due = entry.due
        return due

    def ready(self, sha):
        """The media arrived: its ``item`` id if it was being fetched, else None."""
        entry = self._fetches.pop(sha, None)
        return None if entry is None else entry.media["item"]

    def failed(self, sha, now, detail, needed):
        """An attempt failed. ``needed``: the schedule still needs the item. Returns the item
        id when this failure gives up the round (report ``fetch_failed`` once), else None."""
        entry = self._fetches.get(sha)
        if entry is None:
            return None
        if not self.link:
            entry.due = now + RETRY_MS  # or at once when the link is back (``link_up``)
            return None
        entry.attempts = ATTEMPTS if detail in GIVE_UP_AT_ONCE else entry.attempts + 1
        if entry.attempts < ATTEMPTS:
            entry.due = now + BACKOFF_MS * entry.attempts
            return None
        give_up = not entry.reported
        entry.reported = True
        if needed:
            entry.due = now + RETRY_MS
        else:
            del self._fetches[sha]
        return entry.media["item"] if give_up else None

    def drop_unneeded(self, needed):
        """Forget given-up fetches whose item nothing needs any more (``needed``: sha set)."""
        for sha in list(self._fetches):
            entry = self._fetches[sha]
            if entry.reported and entry.due is not None and sha not in needed:
                del self._fetches[sha]

    def link_up(self, now):
        self.link = True
        for entry in self._fetches.values():
            if entry.due is not None and entry.due > now:
                entry.due = now

    def link_down(self):
        self.link = False

    def shift(self, step_ms):
        for entry in self._fetches.values():
            if entry.due is not None:
                entry.due += step_ms
