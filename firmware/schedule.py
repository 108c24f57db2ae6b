"""What a receiver is going to play: items, and the sorted schedule that holds them.

Sans-IO and MicroPython-safe. An ``Item`` is one thing to play: a cached media item (kind
"play") or a live stream (kind "stream"). Times are network ms.
"""

KIND_PLAY = "play"
KIND_STREAM = "stream"


class StreamInfo:
    """The live-stream half of an item (from a ``stream`` command)."""

    __slots__ = ("sid", "sno", "hkey", "codec", "rate", "until", "topic", "last_rx", "end_at")

    def __init__(self, sid, sno, hkey, codec, rate, until, topic, now):
        self.sid = sid
        self.sno = sno
        self.hkey = hkey          # protocol.signing.HmacKey of the stream key
        self.codec = codec
        self.rate = rate
        self.until = until        # network ms, or None
        self.topic = topic
        self.last_rx = now        # network ms of the last good frame (or of the command)
        self.end_at = None        # set by the FLAG_LAST frame: when its audio ends


class Item:
    """One thing to play.

    ``at`` is the scheduled start (network ms) or None for "as soon as possible" (emergency
    now, live streams); ``since`` is when the receiver accepted it, ``seq`` its arrival order
    (newest wins between emergencies). ``args`` is the validated command arguments, kept so the
    schedule can be persisted and reported. ``waited`` is set once the item was due but had to
    wait for another one: it then starts from the beginning instead of late with a skip.
    ``lead`` marks the pinned item played first while an emergency's media is fetched (the
    ``play``'s ``lead``): it shares the emergency's ``bid`` but is never reported or kept.
    """

    __slots__ = ("bid", "kind", "at", "dur", "prio", "vol", "args", "stream", "since", "seq",
                 "waited", "lead")

    def __init__(self, bid, kind, at, dur, prio, vol, args, since, seq, stream=None):
        self.bid = bid
        self.kind = kind
        self.at = at
        self.dur = dur
        self.prio = prio
        self.vol = vol
        self.args = args
        self.stream = stream
        self.since = since
        self.seq = seq
        self.waited = False
        self.lead = False

    @property
    def media_id(self):
        return self.args.get("item")

    @property
    def sha(self):
        return self.args.get("sha")

    def start_ref(self):
        """When this item wanted to start."""
        return self.since if self.at is None else self.at

    def ident(self):
        """The ``item`` or ``sid`` field pair for events."""
        if self.kind == KIND_STREAM:
            return ("sid", self.stream.sid)
        return ("item", self.args.get("item"))

    def __repr__(self):
        return "<Item %s %s prio=%d at=%r>" % (self.bid, self.kind, self.prio, self.at)


class Schedule:
    """Items not yet started, kept sorted by start (then arrival)."""

    def __init__(self):
        self._items = []

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(list(self._items))

    def add(self, item):
        key = (item.start_ref(), item.seq)
        items = self._items
        pos = len(items)
        while pos > 0 and (items[pos - 1].start_ref(), items[pos - 1].seq) > key:
            pos -= 1
        items.insert(pos, item)

    def remove(self, item):
        if item in self._items:
            self._items.remove(item)

    def by_bid(self, bid):
        return [it for it in self._items if it.bid == bid]

    def clear_window(self, frm, to):
        """Remove and return the scheduled items with ``frm <= at < to``."""
        gone = [it for it in self._items if it.at is not None and frm <= it.at < to]
        for it in gone:
            self._items.remove(it)
        return gone

    def due(self, now):
        """Items whose start has come, in schedule order."""
        return [it for it in self._items if it.start_ref() <= now]

    def next_start(self, now):
        """The earliest start still in the future (network ms), or None."""
        for it in self._items:
            if it.start_ref() > now:
                return it.start_ref()
        return None

    def scheduled(self):
        """Items with a fixed start time (the ones worth persisting)."""
        return [it for it in self._items
                if it.at is not None and it.kind != KIND_STREAM and not it.lead]
