"""MP3 frame walking for the VS1053 path (firmware/mp3.py): whole frames out, seeking by samples
for a late start, ID3 tags and junk between frames skipped."""

import io

from firmware.mp3 import MAX_FRAME_BYTES, FrameReader, frame_info, id3_length

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


def test_frames_come_out_whole_after_the_tag_and_junk():
    data = id3(200) + frame(1) + frame(2) + b"\x00junk" + frame(3)
    reader = FrameReader(io.BytesIO(data), bytearray(MAX_FRAME_BYTES))
    assert bytes(reader.read_frames()) == frame(1) + frame(2) + frame(3)
    assert reader.read_frames() is None


def test_frames_are_read_in_buffer_sized_batches_of_whole_frames():
    data = b"".join(frame(i) for i in range(20)) + frame(20)[:50]  # truncated last frame
    reader = FrameReader(io.BytesIO(data), bytearray(MAX_FRAME_BYTES))
    batches = []
    while True:
        frames = reader.read_frames()
        if frames is None:
            break
        batches.append(bytes(frames))
    assert [len(b) for b in batches] == [10 * FRAME, 10 * FRAME]  # 1441 // 144 = 10 per batch
    assert b"".join(batches) == data[:20 * FRAME]


def test_late_start_skips_whole_frames_and_returns_the_rest():
    data = id3(20) + b"".join(frame(i) for i in range(10))
    reader = FrameReader(io.BytesIO(data), bytearray(MAX_FRAME_BYTES))
    assert reader.skip_samples(3 * 576 + 100) == 100
    assert bytes(reader.read_frames())[:FRAME] == frame(3)
    reader = FrameReader(io.BytesIO(data), bytearray(MAX_FRAME_BYTES))
    assert reader.skip_samples(100 * 576) == 0  # past the end: nothing left to play
    assert reader.read_frames() is None
