"""MP3 frame walking for the VS1053 path (firmware/mp3.py): whole frames out, one per read,
seeking by samples for a late start, ID3 tags and junk between frames skipped. (That reading
allocates nothing per frame is measured under MicroPython: tests/mpy/test_sinks.py.)"""

import io

from firmware.mp3 import (
    MAX_FRAME_BYTES,
    FrameReader,
    frame_bytes,
    frame_info,
    frame_rate,
    frame_samples,
    id3_length,
)

# MPEG-2 Layer III, 32 kbit/s, 16 kHz, mono, no padding: 72000 * 32 // 16000 = 144 bytes,
# 576 samples (36 ms).
HEADER = bytes([0xFF, 0xF3, 0x48, 0xC4])
FRAME = 144


def frame(n):
    return HEADER + bytes([n]) * (FRAME - 4)


def id3(size):
    return b"ID3\x04\x00\x00" + bytes([0, 0, size >> 7, size & 0x7F]) + b"t" * size


def test_header_tables():
    assert frame_info(0xFF, 0xF3, 0x48) == (144, 576, 16000)
    assert frame_info(0xFF, 0xFB, 0x90) == (417, 1152, 44100)  # MPEG-1 128 kbit/s
    assert frame_info(0xFF, 0xFB, 0xF0) is None                # "bad" bitrate index
    assert frame_info(0xFF, 0xFD, 0x90) is None                # Layer II
    assert id3_length(id3(300)[:10]) == 310 and id3_length(b"\xff\xf3" + bytes(8)) == 0
    # The allocation-free parts frame_info is made of.
    assert frame_bytes(0xFF, 0xFB, 0x92) == 418 and frame_bytes(0xFF, 0xFB, 0xF0) == 0
    assert frame_bytes(0xFF, 0xE3, 0xE8) == 1440  # MPEG-2.5, 160 kbit/s at 8 kHz, unpadded
    assert (frame_samples(0xFB), frame_samples(0xF3)) == (1152, 576)
    assert (frame_rate(0xFB, 0x90), frame_rate(0xF3, 0x48), frame_rate(0xE3, 0x08)) == (
        44100, 16000, 8000)


def read_all(reader):
    frames = []
    while True:
        frame = reader.read_frame()
        if frame is None:
            return frames
        frames.append(bytes(frame))


def test_frames_come_out_whole_after_the_tag_and_junk():
    data = id3(200) + frame(1) + frame(2) + b"\x00junk" + frame(3)
    reader = FrameReader(io.BytesIO(data), bytearray(MAX_FRAME_BYTES))
    assert read_all(reader) == [frame(1), frame(2), frame(3)]
    assert reader.read_frame() is None


def test_frames_come_one_per_read_in_views_kept_per_length():
    padded = bytes([0xFF, 0xFB, 0x92, 0xC4]) + b"p" * 414  # MPEG-1 128 kbit/s 44.1 kHz: 418
    data = b"".join(frame(i) for i in range(20)) + padded + frame(7) + frame(20)[:50]
    reader = FrameReader(io.BytesIO(data), bytearray(MAX_FRAME_BYTES))
    views = []
    while True:
        view = reader.read_frame()
        if view is None:
            break
        assert len(view) in (FRAME, 418)
        views.append((view, bytes(view)))
    assert [b for _, b in views] == [frame(i) for i in range(20)] + [padded, frame(7)]
    assert views[0][0] is views[19][0] is views[21][0]  # one view per frame length, reused
    assert len(reader._frames) == 2  # the truncated last frame is left out


def test_late_start_skips_whole_frames_and_returns_the_rest():
    data = id3(20) + b"".join(frame(i) for i in range(10))
    reader = FrameReader(io.BytesIO(data), bytearray(MAX_FRAME_BYTES))
    assert reader.skip_samples(3 * 576 + 100) == 100
    assert bytes(reader.read_frame()) == frame(3)
    reader = FrameReader(io.BytesIO(data), bytearray(MAX_FRAME_BYTES))
    assert reader.skip_samples(100 * 576) == 0  # past the end: nothing left to play
    assert reader.read_frame() is None
