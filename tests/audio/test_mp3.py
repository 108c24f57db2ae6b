"""MP3 renditions are plain CBR frames that each decode alone, so a lost frame costs 36 ms."""

import os

import numpy as np
import pytest
from audio_samples import make_samples

from audio import ffmpeg, mp3
from audio.decode import decode_to_pcm
from audio.renditions import make_renditions

RATE = 16000


@pytest.fixture(scope="module")
def rendition(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("mp3"))
    samples = make_samples(directory)
    result = make_renditions(samples["speech"], os.path.join(directory, "cache"), ("mp3",))
    with open(result.renditions["mp3"].path, "rb") as f:
        return {"data": f.read(), "result": result, "samples": samples}


def test_rendition_is_nothing_but_identical_audio_frames(rendition):
    data = rendition["data"]
    frames = mp3.frames(data)
    assert sum(len(f) for f in frames) == len(data)  # no tag, no junk, no partial frame
    headers = {mp3.parse_header(f) for f in frames}
    assert headers == {mp3.FrameHeader(version="2", layer=3, bitrate_kbps=32, sample_rate=RATE,
                                       channels=1, has_crc=False, frame_bytes=144, samples=576)}
    assert not any(mp3.is_info_frame(f) for f in frames)
    assert mp3.duration_ms(data) == pytest.approx(len(frames) * 36.0)


def test_no_frame_borrows_from_another(rendition):
    assert {mp3.main_data_begin(f) for f in mp3.frames(rendition["data"])} == {0}


def test_dropping_every_fifth_frame_the_rest_still_decodes(rendition):
    frames = mp3.frames(rendition["data"])
    full = decode_to_pcm("mp3", rendition["data"], RATE)
    kept = [i for i in range(len(frames)) if i % 5 != 4]
    received = b"".join(bytes(frames[i]) for i in kept)
    _, messages = ffmpeg.run(["-f", "mp3", "-i", "pipe:0", "-f", "s16le", "pipe:1"],
                             input_bytes=received)
    assert "error" not in messages.lower() and "invalid" not in messages.lower()
    pcm = decode_to_pcm("mp3", received, RATE)
    assert len(pcm) == len(kept) * 576
    for position, index in enumerate(kept):
        got = pcm[position * 576:(position + 1) * 576]
        want = full[index * 576:(index + 1) * 576]
        if index % 5 in (2, 3):
            # From the second frame after a gap on, the loss is forgotten entirely (MDCT
            # overlap and synthesis filter state span less than one 576-sample frame).
            assert np.array_equal(got, want), index
        elif np.abs(want).max() > 1000:
            # The two frames right after a gap are still that frame's speech, not silence.
            assert np.abs(got.astype(np.int32)).mean() > 0.1 * np.abs(want.astype(np.int32)).mean()


def test_each_surviving_frame_decodes_alone(rendition):
    frames = mp3.frames(rendition["data"])
    full = decode_to_pcm("mp3", rendition["data"], RATE)
    # A sample of frames across the item (decoding each costs an ffmpeg start).
    checked = 0
    for index in range(3, len(frames), len(frames) // 10):
        expected = full[index * 576:(index + 1) * 576].astype(np.int32)
        if index % 5 == 4 or np.abs(expected[432:]).mean() < 300:
            continue  # dropped, or a pause between words
        alone = decode_to_pcm("mp3", bytes(frames[index]), RATE).astype(np.int32)
        assert len(alone) == 576
        # A decoder starting cold on this frame (no overlap from the frame before, synthesis
        # filter empty) ramps up through the frame: its last quarter is this frame's speech.
        assert np.abs(alone[432:]).mean() > 0.05 * np.abs(expected[432:]).mean()
        checked += 1
    assert checked >= 4


def test_frames_are_found_past_tags_and_junk(rendition):
    frames = mp3.frames(rendition["data"])
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10)
    noisy = tag + bytes(frames[0]) + b"\xff\xe0junk" + b"".join(bytes(f) for f in frames[1:5]) \
        + b"TAG" + bytes(125)
    found = mp3.frames(noisy)
    assert [bytes(f) for f in found] == [bytes(f) for f in frames[:5]]


def test_a_lame_file_from_a_phone_has_its_info_frame_recognised(rendition):
    with open(rendition["samples"]["speech_mp3"], "rb") as f:
        data = f.read()
    frames = mp3.frames(data)
    assert mp3.is_info_frame(frames[0]) and not mp3.is_info_frame(frames[1])
    assert len(mp3.audio_frames(data)) == len(frames) - 1


def test_header_parsing_of_known_headers():
    mpeg1 = mp3.parse_header(bytes((0xFF, 0xFB, 0x90, 0x64)))  # 128 kbit/s, 44.1 kHz, stereo
    assert (mpeg1.version, mpeg1.layer, mpeg1.bitrate_kbps, mpeg1.sample_rate, mpeg1.channels,
            mpeg1.frame_bytes, mpeg1.samples) == ("1", 3, 128, 44100, 2, 417, 1152)
    assert mp3.parse_header(bytes((0xFF, 0xFB, 0xF0, 0x64))) is None  # bad bitrate index
    assert mp3.parse_header(bytes((0xFF, 0xEB, 0x90, 0x64))) is None  # reserved version
    assert mp3.parse_header(b"\xff") is None
