"""MPEG audio Layer III frame headers (ISO 11172-3, 13818-3 and MPEG-2.5): where frames start
and end. The header itself is read by ``firmware.mp3`` (the receivers' parser, so head-end and
receivers agree on what a frame is); this module adds the fields and walks the head-end needs.

Used to cut MP3 at frame boundaries (live frames carry whole MPEG frames), to compute a
rendition's duration without decoding, and by tests that drop frames and decode the rest.

A Layer III frame decodes on its own only if it does not borrow bits from earlier frames (the
bit reservoir): ``main_data_begin`` is then 0. Renditions are encoded with the reservoir off.
"""

from dataclasses import dataclass

from firmware.mp3 import bitrate_kbps, frame_info, id3_length

_VERSION_NAMES = {3: "1", 2: "2", 0: "2.5"}  # version bits of the header

# Decoded samples that come before the first input sample, in an MP3 made by LAME (ffmpeg's
# libmp3lame) and played by any ISO 11172-3 decoder, the VS1053 and ffmpeg's alike: LAME's
# encoder delay (576, its ENCDELAY) plus the decoder's (528 + 1, the hybrid and polyphase
# synthesis). Measured by cross-correlation: the same at every rate from 8 to 48 kHz, MPEG-1,
# -2 and -2.5 (tests/audio/test_renditions_in_step.py holds it). A decoder cannot skip it on a
# VS1053 (it starts only on a frame, and a frame decoded without its predecessor is garbled),
# so the renditions put the same lead-in in front of every other codec instead.
LAME_DECODED_DELAY = 576 + 529


@dataclass(frozen=True)
class FrameHeader:
    version: str          # "1", "2" or "2.5"
    layer: int            # always 3: the only layer receivers play
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
    """The FrameHeader at ``buf[pos:]``, or None if no valid Layer III header starts there."""
    if pos + 4 > len(buf):
        return None
    b1, b2, b3 = buf[pos + 1], buf[pos + 2], buf[pos + 3]
    info = frame_info(buf[pos], b1, b2)
    if info is None:
        return None
    frame_bytes, samples, rate = info
    return FrameHeader(version=_VERSION_NAMES[(b1 >> 3) & 3], layer=3,
                       bitrate_kbps=bitrate_kbps(b1, b2), sample_rate=rate,
                       channels=1 if (b3 >> 6) == 3 else 2, has_crc=not (b1 & 1),
                       frame_bytes=frame_bytes, samples=samples)


def iter_frames(buf):
    """Yield (offset, FrameHeader) for each whole frame in ``buf``.

    Skips an ID3v2 tag and any junk between frames. While in step (at the start, or right
    after a frame) a valid header is taken as it is; after junk, a header counts only if the
    next frame's header follows where it says (or a tag, or the end), so a stray 0xFFE inside
    data is not taken for a frame.
    """
    pos = id3_length(bytes(buf[:10]))
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
    if header is None:
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
