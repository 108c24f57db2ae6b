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
"""

_SEQ_MASK = 0xFFFFFFFF
_SEQ_HALF = 0x80000000


def seq_before(a, b):
    """True if sequence number ``a`` comes before ``b`` (with 32-bit wrap-around)."""
    return a != b and ((b - a) & _SEQ_MASK) < _SEQ_HALF


class ReleasedFrame:
    """The frame handed out by ``pop``; its payload stays valid until the next ``pop``/``reset``."""

    __slots__ = ("seq", "play_at", "samples", "last", "payload", "duration_ms")

    def __init__(self):
        self.seq = 0
        self.play_at = 0
        self.samples = 0
        self.last = False
        self.payload = None
        self.duration_ms = 0


class JitterBuffer:
    def __init__(self, slots=16, slot_bytes=4096):
        self.slot_bytes = slot_bytes
        self._bufs = [bytearray(slot_bytes) for _ in range(slots)]
        self._len = [0] * slots
        self._seq = [0] * slots
        self._play_at = [0] * slots
        self._samples = [0] * slots
        self._last = [False] * slots
        self._order = []          # slot indices, in sequence order
        self._free = list(range(slots))
        self._out = ReleasedFrame()
        self._held = -1           # slot lent out by the last pop
        self.rate = 16000
        self.released_seq = None  # sequence number of the last frame released
        self.stats = {"frames": 0, "dup": 0, "late": 0, "overflow": 0, "oversize": 0, "lost": 0}

    def reset(self, rate):
        """Empty the buffer for a new stream of ``rate`` samples/s."""
        self._free = list(range(len(self._bufs)))
        self._order = []
        self._held = -1
        self.rate = rate
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
        if play_at + self._frame_ms(samples) < now:
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
        self._play_at[slot] = play_at
        self._samples[slot] = samples
        self._last[slot] = last
        order.insert(pos, slot)
        self.stats["frames"] += 1
        return True

    def next_play_at(self):
        """``play_at`` of the next frame in order, or None when empty."""
        if not self._order:
            return None
        return self._play_at[self._order[0]]

    def pop(self, now):
        """Release the next frame if its time has come (``play_at <= now``), else None."""
        if self._held >= 0:
            self._free.append(self._held)
            self._held = -1
        order = self._order
        while order:
            slot = order[0]
            play_at = self._play_at[slot]
            if play_at + self._frame_ms(self._samples[slot]) < now:
                self.stats["late"] += 1
                self._free.append(order.pop(0))
                continue
            if play_at > now:
                return None
            order.pop(0)
            seq = self._seq[slot]
            if self.released_seq is not None:
                self.stats["lost"] += ((seq - self.released_seq) & _SEQ_MASK) - 1
            self.released_seq = seq
            self._held = slot
            out = self._out
            out.seq = seq
            out.play_at = play_at
            out.samples = self._samples[slot]
            out.last = self._last[slot]
            out.duration_ms = self._frame_ms(out.samples)
            out.payload = memoryview(self._bufs[slot])[:self._len[slot]]
            return out
        return None
