"""Jitter buffer for live-stream frames: ordered by sequence number, released at play time.

Sans-IO and heap-friendly: the frame payloads are copied into a fixed pool of preallocated slots
(an MQTT payload is only valid during the callback), so a running stream allocates nothing per
frame except one memoryview on release.

Rules:
- a frame whose sequence number was already buffered or released is a duplicate: dropped;
- a frame whose whole duration is already in the past (``play_at + frame_ms < now``) is late:
  dropped, on arrival or on release;
- frames are released in sequence order once ``play_at <= now`` (network time; the caller may
  pass ``now + lead`` to hand frames to a sink with its own buffer a little early);
- a missing frame is simply not there: the next frame is released at its own ``play_at``, so a
  lost frame costs only its own duration (the gap is silence) and counts in ``stats["lost"]``;
- when every slot is taken, the frame that would play last is dropped ("overflow").

Sequence numbers are 32-bit and wrap: they are compared with serial-number arithmetic
(RFC 1982), which works as long as the buffer spans less than 2**31 frames.

Times on the board: a play time is epoch ms (1.8e12), a heap-allocated big int on the ESP32
(31-bit small ints), and every arithmetic on one allocates (32 B each, measured under the
ESP32 number model). So the buffer keeps each frame's time relative to the stream's ``base``
(the first frame's play_at), a small int for 12 days of stream, and ``pop_at``/``next_at``
work on those: the player (firmware/shell.py) turns ticks into stream time with small ints
only, and releasing a frame allocates nothing. ``push`` (the receive path) and the
epoch-time ``pop``/``next_play_at`` convert once per call.
"""

_SEQ_MASK = 0xFFFFFFFF
_SEQ_HALF = 0x80000000


def seq_before(a, b):
    """True if sequence number ``a`` comes before ``b`` (with 32-bit wrap-around)."""
    return a != b and ((b - a) & _SEQ_MASK) < _SEQ_HALF


class ReleasedFrame:
    """The frame handed out by ``pop``; its payload stays valid until the next ``pop``/``reset``.

    ``at``: its play time relative to the stream's base (small int ms); ``play_at``: epoch ms.
    """

    __slots__ = ("seq", "at", "base", "samples", "last", "payload", "duration_ms")

    def __init__(self):
        self.seq = 0
        self.at = 0
        self.base = 0
        self.samples = 0
        self.last = False
        self.payload = None
        self.duration_ms = 0

    @property
    def play_at(self):
        return self.base + self.at


class JitterBuffer:
    def __init__(self, slots=16, slot_bytes=4096):
        self.slot_bytes = slot_bytes
        self._bufs = [bytearray(slot_bytes) for _ in range(slots)]
        # A memoryview of each slot's payload, kept while frames keep the same length (a
        # constant-bitrate stream): slicing a memoryview allocates in MicroPython.
        self._views = [memoryview(b)[:0] for b in self._bufs]
        self._len = [0] * slots
        self._seq = [0] * slots
        self._at = [0] * slots          # play time - base, ms
        self._samples = [0] * slots
        self._last = [False] * slots
        self._order = []          # slot indices, in sequence order
        self._free = list(range(slots))
        self._out = ReleasedFrame()
        self._held = -1           # slot lent out by the last pop
        self.rate = 16000
        self.base = None          # epoch ms of the stream's first frame: the time origin
        self.released_seq = None  # sequence number of the last frame released
        self.stats = {"frames": 0, "dup": 0, "late": 0, "overflow": 0, "oversize": 0, "lost": 0}

    def reset(self, rate):
        """Empty the buffer for a new stream of ``rate`` samples/s."""
        self._free = list(range(len(self._bufs)))
        self._order = []
        self._held = -1
        self.rate = rate
        self.base = None
        self.released_seq = None
        for name in self.stats:
            self.stats[name] = 0

    def __len__(self):
        return len(self._order)

    def _frame_ms(self, samples):
        return samples * 1000 // self.rate

    def push(self, seq, play_at, samples, last, payload, now):
        """Copy one frame in; return True if kept, False if dropped (see ``stats``)."""
        n = len(payload)
        if n > self.slot_bytes:
            self.stats["oversize"] += 1
            return False
        if self.base is None:
            self.base = play_at
        at = play_at - self.base
        if at + self._frame_ms(samples) < now - self.base:
            self.stats["late"] += 1
            return False
        if self.released_seq is not None and not seq_before(self.released_seq, seq):
            self.stats["dup"] += 1
            return False
        order = self._order
        pos = len(order)
        while pos > 0 and seq_before(seq, self._seq[order[pos - 1]]):
            pos -= 1
        if pos > 0 and self._seq[order[pos - 1]] == seq:
            self.stats["dup"] += 1
            return False
        if not self._free:
            if pos == len(order):
                self.stats["overflow"] += 1
                return False
            self._free.append(order.pop())
            self.stats["overflow"] += 1
        slot = self._free.pop()
        self._bufs[slot][:n] = payload
        self._len[slot] = n
        self._seq[slot] = seq
        self._at[slot] = at
        self._samples[slot] = samples
        self._last[slot] = last
        order.insert(pos, slot)
        self.stats["frames"] += 1
        return True

    def next_play_at(self):
        """``play_at`` (epoch ms) of the next frame in order, or None when empty."""
        at = self.next_at()
        return None if at is None else self.base + at

    def next_at(self):
        """Play time of the next frame relative to ``base``, or None when empty."""
        if not self._order:
            return None
        return self._at[self._order[0]]

    def pop(self, now, lead=0):
        """``pop_at`` with epoch ms ``now``."""
        if self.base is None:
            return None
        return self.pop_at(now - self.base, lead)

    def pop_at(self, now, lead=0):
        """Release the next frame if its time has come (``at <= now + lead``), else None.

        ``now`` is stream time (ms since ``base``). ``lead`` hands frames to a sink with a
        buffer of its own that much early, so each is queued before the previous one ends;
        lateness is judged on ``now`` itself.
        """
        if self._held >= 0:
            self._free.append(self._held)
            self._held = -1
        order = self._order
        while order:
            slot = order[0]
            at = self._at[slot]
            if at + self._frame_ms(self._samples[slot]) < now:
                self.stats["late"] += 1
                self._free.append(order.pop(0))
                continue
            if at > now + lead:
                return None
            order.pop(0)
            seq = self._seq[slot]
            if self.released_seq is not None:
                self.stats["lost"] += ((seq - self.released_seq) & _SEQ_MASK) - 1
            self.released_seq = seq
            self._held = slot
            out = self._out
            out.seq = seq
            out.at = at
            out.base = self.base
            out.samples = self._samples[slot]
            out.last = self._last[slot]
            out.duration_ms = self._frame_ms(out.samples)
            n = self._len[slot]
            view = self._views[slot]
            if len(view) != n:
                view = memoryview(self._bufs[slot])[:n]
                self._views[slot] = view
            out.payload = view
            return out
        return None
