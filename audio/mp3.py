"""MPEG audio frame headers (ISO 11172-3, 13818-3 and MPEG-2.5): where frames start and end.

Used to cut MP3 at frame boundaries (live frames carry whole MPEG frames), to compute a
rendition's duration without decoding, and by tests that drop frames and decode the rest.

A Layer III frame decodes on its own only if it does not borrow bits from earlier frames (the
bit reservoir): ``main_data_begin`` is then 0. Renditions are encoded with the reservoir off.
"""

from dataclasses import dataclass

_BITRATES_KBPS = {
    # (MPEG-1?, layer): 15 entries for indices 0..14 (0 = free format, refused)
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# version bits -> sample rates by index
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_VERSION_NAMES = {3: "1", 2: "2", 0: "2.5"}


@dataclass(frozen=True)
class FrameHeader:
    version: str          # "1", "2" or "2.5"
    layer: int            # 1, 2 or 3
    bitrate_kbps: int
    sample_rate: int
    channels: int
    has_crc: bool
    frame_bytes: int
    samples: int          # PCM samples per channel this frame decodes to

    @property
    def duration_ms(self):
        return self.samples * 1000.0 / self.sample_rate

    @property
    def side_info_offset(self):
        return 4 + (2 if self.has_crc else 0)

    @property
    def side_info_bytes(self):
        if self.version == "1":
            return 17 if self.channels == 1 else 32
        return 9 if self.channels == 1 else 17


def parse_header(buf, pos=0):
    """The FrameHeader at ``buf[pos:]``, or None if no valid header starts there."""
    if pos + 4 > len(buf):
        return None
    b0, b1, b2, b3 = buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]
    if b0 != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    version_bits = (b1 >> 3) & 3
    layer_bits = (b1 >> 1) & 3
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 3
    if version_bits == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer = 4 - layer_bits
    mpeg1 = version_bits == 3
    bitrate = _BITRATES_KBPS[(mpeg1, layer)][bitrate_index]
    rate = _RATES[version_bits][rate_index]
    padding = (b2 >> 1) & 1
    if layer == 1:
        samples = 384
        frame_bytes = (12 * bitrate * 1000 // rate + padding) * 4
    else:
        samples = 1152 if (layer == 2 or mpeg1) else 576
        frame_bytes = samples // 8 * bitrate * 1000 // rate + padding
    return FrameHeader(version=_VERSION_NAMES[version_bits], layer=layer, bitrate_kbps=bitrate,
                       sample_rate=rate, channels=1 if (b3 >> 6) == 3 else 2,
                       has_crc=not (b1 & 1), frame_bytes=frame_bytes, samples=samples)


def _skip_id3v2(buf):
    if len(buf) >= 10 and bytes(buf[:3]) == b"ID3":
        size = (buf[6] << 21) | (buf[7] << 14) | (buf[8] << 7) | buf[9]
        footer = 10 if buf[5] & 0x10 else 0
        return 10 + size + footer
    return 0


def iter_frames(buf):
    """Yield (offset, FrameHeader) for each whole frame in ``buf``.

    Skips an ID3v2 tag and any junk between frames. While in step (at the start, or right
    after a frame) a valid header is taken as it is; after junk, a header counts only if the
    next frame's header follows where it says (or a tag, or the end), so a stray 0xFFE inside
    data is not taken for a frame.
    """
    pos = _skip_id3v2(buf)
    end = len(buf)
    in_step = True
    while pos + 4 <= end:
        header = parse_header(buf, pos)
        following = pos + header.frame_bytes if header is not None else end + 1
        if following > end:
            # No header, or a cut-off last frame, or a false sync pointing past the end.
            pos += 1
            in_step = False
            continue
        if not in_step and following + 4 <= end and parse_header(buf, following) is None \
                and not _tail_is_tag(buf, following):
            pos += 1
            continue
        yield pos, header
        pos = following
        in_step = True


def _tail_is_tag(buf, pos):
    head = bytes(buf[pos:pos + 8])
    return head[:3] == b"TAG" or head == b"APETAGEX" or head[:3] == b"ID3"


def frames(buf):
    """Memoryviews of each whole frame."""
    view = memoryview(buf)
    return [view[offset:offset + header.frame_bytes] for offset, header in iter_frames(buf)]


def main_data_begin(frame):
    """How many bytes a Layer III frame borrows from earlier frames (0 = decodes alone)."""
    header = parse_header(frame)
    if header is None or header.layer != 3:
        return 0
    at = header.side_info_offset
    if header.version == "1":
        return (frame[at] << 1) | (frame[at + 1] >> 7)
    return frame[at]


def is_info_frame(frame):
    """True for the silent first frame that carries a Xing/Info/VBRI tag instead of audio."""
    header = parse_header(frame)
    if header is None:
        return False
    at = header.side_info_offset + header.side_info_bytes
    tag = bytes(frame[at:at + 4])
    return tag in (b"Xing", b"Info") or bytes(frame[36:40]) == b"VBRI"


def audio_frames(buf):
    """Frames that carry audio (the Xing/Info tag frame, if any, left out)."""
    return [f for f in frames(buf) if not is_info_frame(f)]


def duration_ms(buf):
    """Duration of the audio frames in ``buf`` (without decoding)."""
    total = 0.0
    for frame in audio_frames(buf):
        total += parse_header(frame).duration_ms
    return total
