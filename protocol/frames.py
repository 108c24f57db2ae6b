"""Binary audio frames for live streams and emergency streams.

Each frame is one MQTT message on ``loaxa/v1/{site}/stream/{stream_id}``: a fixed 32-byte header
then a payload that decodes on its own (whole MP3 frames, or whole IMA-ADPCM blocks that carry
their own predictor state), so a lost frame costs only its own duration.

    offset size type  field
    0      2    bytes magic b"LF"
    2      1    u8    version (1)
    3      1    u8    codec: 1 = MP3, 2 = IMA-ADPCM blocks (see protocol.media)
    4      4    u32   stream number (from the ``stream`` command)
    8      4    u32   sequence number, +1 per frame, wraps at 2**32
    12     8    u64   play_at: head-end clock, ms since the Unix epoch, of the first sample
    20     2    u16   samples in this frame
    22     1    u8    flags: bit 0 = last frame of the stream
    23     1    u8    reserved (0)
    24     8    bytes tag: first 8 bytes of HMAC-SHA256(stream key, bytes 0..23 + payload)
    32     ...        payload

All integers big-endian. The stream key is random per stream and travels only inside the signed
``stream`` command to each receiver, so nobody without it can inject audio.
"""

import struct

from protocol.errors import ProtocolError
from protocol.signing import FRAME_TAG_LEN, equal

MAGIC = b"LF"
VERSION = 1
CODEC_MP3 = 1
CODEC_ADPCM = 2
CODEC_NAMES = {CODEC_MP3: "mp3", CODEC_ADPCM: "adpcm"}
CODEC_IDS = {"mp3": CODEC_MP3, "adpcm": CODEC_ADPCM}
FLAG_LAST = 1

_HEAD = ">2sBBIIQHBB"
HEADER_LEN = 24
FRAME_OVERHEAD = HEADER_LEN + FRAME_TAG_LEN


def pack_frame(hkey, codec, stream_no, seq, play_at_ms, samples, payload, flags=0):
    """Build one frame. ``hkey`` is a ``protocol.signing.HmacKey`` for the stream key."""
    head = struct.pack(_HEAD, MAGIC, VERSION, codec, stream_no, seq & 0xFFFFFFFF,
                       play_at_ms, samples, flags, 0)
    tag = hkey.digest(head, payload)[:FRAME_TAG_LEN]
    return head + tag + payload


class Frame:
    """A decoded frame header; ``payload`` is a memoryview into the received buffer (no copy)."""

    __slots__ = ("codec", "stream_no", "seq", "play_at", "samples", "flags", "payload")

    def __init__(self, codec, stream_no, seq, play_at, samples, flags, payload):
        self.codec = codec
        self.stream_no = stream_no
        self.seq = seq
        self.play_at = play_at
        self.samples = samples
        self.flags = flags
        self.payload = payload

    @property
    def last(self):
        return bool(self.flags & FLAG_LAST)


def unpack_frame(hkey, data):
    """Check and decode a frame; raise ProtocolError("malformed" | "bad-signature")."""
    if len(data) < FRAME_OVERHEAD:
        raise ProtocolError("malformed", "frame shorter than its header")
    mv = memoryview(data)
    try:
        magic, version, codec, stream_no, seq, play_at, samples, flags, _ = struct.unpack(
            _HEAD, mv[:HEADER_LEN])
    except Exception:
        raise ProtocolError("malformed", "bad frame header")
    if magic != MAGIC or version != VERSION:
        raise ProtocolError("malformed", "not a v1 frame")
    if codec not in CODEC_NAMES:
        raise ProtocolError("malformed", "unknown codec %d" % codec)
    payload = mv[FRAME_OVERHEAD:]
    if hkey is not None:
        tag = hkey.digest(mv[:HEADER_LEN], payload)[:FRAME_TAG_LEN]
        if not equal(tag, mv[HEADER_LEN:FRAME_OVERHEAD]):
            raise ProtocolError("bad-signature", "frame tag")
    return Frame(codec, stream_no, seq, play_at, samples, flags, payload)
