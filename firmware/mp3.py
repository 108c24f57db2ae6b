"""MPEG audio Layer III frame walking: whole frames for the sink, and seeking by samples.

A VS1053 takes the MP3 bytes as they are; the firmware only needs to know where frames start
and how many samples each holds, to seek for a late start and to hand the sink whole frames.
Everything works through a preallocated buffer: no allocation per frame.
"""

_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_RESYNC_LIMIT = 4096  # bytes of junk tolerated between frames before giving up
MAX_FRAME_BYTES = 1441  # MPEG-1 Layer III, 320 kbit/s at 32 kHz, padded


def bitrate_kbps(b1, b2):
    """The bitrate of a Layer III header that ``frame_info`` accepts."""
    return (_BITRATES_V1 if (b1 >> 3) & 3 == 3 else _BITRATES_V2)[b2 >> 4]


def frame_info(b0, b1, b2):
    """``(frame_bytes, samples, rate)`` of a Layer III header starting with these bytes, or None."""
    if b0 != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    version = (b1 >> 3) & 3
    if version == 1 or ((b1 >> 1) & 3) != 1:  # reserved version; not Layer III
        return None
    br_index = b2 >> 4
    rate_index = (b2 >> 2) & 3
    if br_index == 0 or br_index == 15 or rate_index == 3:
        return None
    rate = _RATES[version][rate_index]
    pad = (b2 >> 1) & 1
    if version == 3:
        return (144000 * bitrate_kbps(b1, b2) // rate + pad, 1152, rate)
    return (72000 * bitrate_kbps(b1, b2) // rate + pad, 576, rate)


def id3_length(head):
    """Bytes taken by an ID3v2 tag at the start of a file (``head`` = its first 10 bytes)."""
    if len(head) < 10 or head[0:3] != b"ID3":
        return 0
    size = ((head[6] & 0x7F) << 21) | ((head[7] & 0x7F) << 14) | ((head[8] & 0x7F) << 7) | (
        head[9] & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)


class FrameReader:
    """Reads whole frames from an open binary file into ``buf`` (at least MAX_FRAME_BYTES)."""

    def __init__(self, f, buf):
        self.f = f
        self.buf = buf
        self.view = memoryview(buf)
        head = self.view[:10]
        n = f.readinto(head)
        f.seek(id3_length(bytes(head[:n])) if n == 10 else 0)

    def _header(self, at=0):
        """Find the next frame header; return (frame_bytes, samples, rate) with its 4 bytes in
        ``buf[at:at + 4]``."""
        buf = self.buf
        if self.f.readinto(self.view[at:at + 4]) != 4:
            return None
        for _ in range(_RESYNC_LIMIT):
            info = frame_info(buf[at], buf[at + 1], buf[at + 2])
            if info is not None:
                return info
            buf[at] = buf[at + 1]
            buf[at + 1] = buf[at + 2]
            buf[at + 2] = buf[at + 3]
            if self.f.readinto(self.view[at + 3:at + 4]) != 1:
                return None
        return None

    def skip_samples(self, samples):
        """Skip whole frames worth at most ``samples``; return the samples left over (less
        than one frame), for the sink to drop or to accept as the start error."""
        while samples > 0:
            pos = self.f.tell()
            info = self._header()
            if info is None:
                return 0
            if info[1] > samples:
                self.f.seek(pos)
                return samples
            self.f.seek(info[0] - 4, 1)
            samples -= info[1]
        return 0

    def read_frames(self):
        """Fill ``buf`` with as many whole frames as fit; return a memoryview of them, or None
        at the end of the file (a truncated last frame is left out)."""
        n = 0
        size = len(self.buf)
        while n + 4 <= size:
            pos = self.f.tell()
            info = self._header(n)
            if info is None:
                break
            length = info[0]
            if n + length > size:
                self.f.seek(pos)  # the next call starts with this frame
                break
            if self.f.readinto(self.view[n + 4:n + length]) != length - 4:
                break
            n += length
        return self.view[:n] if n else None
