"""MPEG audio Layer III frame walking: whole frames for the sink, and seeking by samples.

A VS1053 takes the MP3 bytes as they are; the firmware only needs to know where frames start
and how many samples each holds, to seek for a late start and to hand the sink whole frames.
Everything works through a preallocated buffer and views made once: no allocation per frame.
"""

_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_RESYNC_LIMIT = 4096  # bytes of junk tolerated between frames before giving up
MAX_FRAME_BYTES = 1441  # MPEG-1 Layer III, 320 kbit/s at 32 kHz, padded


def bitrate_kbps(b1, b2):
    """The bitrate of a Layer III header that ``frame_info`` accepts."""
    return (_BITRATES_V1 if (b1 >> 3) & 3 == 3 else _BITRATES_V2)[b2 >> 4]


def frame_bytes(b0, b1, b2):
    """Length of the Layer III frame whose header starts with these bytes, or 0 when they are
    not one. Small ints only and no tuple, so it can run once per frame without allocating."""
    if b0 != 0xFF or (b1 & 0xE0) != 0xE0:
        return 0
    version = (b1 >> 3) & 3
    if version == 1 or ((b1 >> 1) & 3) != 1:  # reserved version; not Layer III
        return 0
    br_index = b2 >> 4
    rate_index = (b2 >> 2) & 3
    if br_index == 0 or br_index == 15 or rate_index == 3:
        return 0
    rate = _RATES[version][rate_index]
    pad = (b2 >> 1) & 1
    if version == 3:
        return 144000 * _BITRATES_V1[br_index] // rate + pad
    return 72000 * _BITRATES_V2[br_index] // rate + pad


def frame_samples(b1):
    """Samples in a frame of a header that ``frame_bytes`` accepts: 1152 (MPEG-1) or 576."""
    return 1152 if (b1 >> 3) & 3 == 3 else 576


def frame_rate(b1, b2):
    """Sample rate of a header that ``frame_bytes`` accepts."""
    return _RATES[(b1 >> 3) & 3][(b2 >> 2) & 3]


def frame_info(b0, b1, b2):
    """``(frame_bytes, samples, rate)`` of a Layer III header starting with these bytes, or None."""
    length = frame_bytes(b0, b1, b2)
    if not length:
        return None
    return (length, frame_samples(b1), frame_rate(b1, b2))


def id3_length(head):
    """Bytes taken by an ID3v2 tag at the start of a file (``head`` = its first 10 bytes)."""
    if len(head) < 10 or head[0:3] != b"ID3":
        return 0
    size = ((head[6] & 0x7F) << 21) | ((head[7] & 0x7F) << 14) | ((head[8] & 0x7F) << 7) | (
        head[9] & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)


class FrameReader:
    """Reads whole frames, one per call, from an open binary file into ``buf`` (a bytearray of
    at least MAX_FRAME_BYTES).

    Nothing is allocated per frame once each frame length of the file has been seen: a
    memoryview slice allocates in MicroPython, so the views this reads into and hands out are
    made once per length and kept (a file at one sample rate has at most 28 lengths: 14
    bitrates, padded or not).
    """

    def __init__(self, f, buf):
        self.f = f
        self.buf = buf
        self.view = memoryview(buf)
        self._head = self.view[:4]
        self._next_byte = self.view[3:4]
        self._frames = {}  # frame length -> view[:length], what read_frame returns
        self._bodies = {}  # frame length -> view[4:length], what the rest of a frame is read into
        head = self.view[:10]
        n = f.readinto(head)
        f.seek(id3_length(bytes(head[:n])) if n == 10 else 0)

    def _header(self):
        """Find the next frame header, its 4 bytes into ``buf[0:4]``; return the frame's length,
        or 0 at the end of the file."""
        buf = self.buf
        if self.f.readinto(self._head) != 4:
            return 0
        for _ in range(_RESYNC_LIMIT):
            length = frame_bytes(buf[0], buf[1], buf[2])
            if length:
                return length
            buf[0] = buf[1]
            buf[1] = buf[2]
            buf[2] = buf[3]
            if self.f.readinto(self._next_byte) != 1:
                return 0
        return 0

    def skip_samples(self, samples):
        """Skip whole frames worth at most ``samples``; return the samples left over (less
        than one frame), for the sink to drop or to accept as the start error."""
        while samples > 0:
            pos = self.f.tell()
            length = self._header()
            if not length:
                return 0
            in_frame = frame_samples(self.buf[1])
            if in_frame > samples:
                self.f.seek(pos)
                return samples
            self.f.seek(length - 4, 1)
            samples -= in_frame
        return 0

    def read_frame(self):
        """The next whole frame as a memoryview of ``buf`` (good until the next call), or None
        at the end of the file (a truncated last frame is left out)."""
        length = self._header()
        if not length or length > len(self.buf):
            return None
        body = self._bodies.get(length)
        if body is None:  # a length not seen before in this file
            body = self.view[4:length]
            self._bodies[length] = body
            self._frames[length] = self.view[:length]
        if self.f.readinto(body) != length - 4:
            return None
        return self._frames[length]
