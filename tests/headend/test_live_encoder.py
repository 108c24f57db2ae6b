"""A live session's encoders (real ffmpeg): raw PCM in, signed frames out, and one moment of
the input carries one play time in MP3 and in ADPCM, so poles of both kinds play in step."""

import asyncio

import numpy as np

from audio.decode import decode_to_pcm
from headend.live.encoder import CodecEncoder
from headend.live.session import new_stream
from headend.live.timeline import PcmTimeline
from protocol.frames import CODEC_NAMES, unpack_frame
from protocol.signing import HmacKey

RATE = 16000
CLICK_AT = 8000  # input sample
DELAY_MS = 470


async def encode(codec, pcm, timeline):
    stream = new_stream("live-test", codec, RATE)
    # The wall clock of this timeline (it starts at 1 000 000 ms): never a late first frame.
    encoder = CodecEncoder(stream, pcm_rate=RATE, frame_ms=120, stall_timeout_s=5.0,
                           wall_clock=lambda: 1_000.1)
    frames = []

    async def collect():
        async for packet in encoder.frames(timeline, DELAY_MS):
            frames.append(unpack_frame(HmacKey(stream.key), packet))

    collecting = asyncio.create_task(collect())
    data = pcm.tobytes()
    for i in range(0, len(data), 640):
        await encoder.push(data[i:i + 640])
    encoder.end()
    await asyncio.wait_for(collecting, 30)
    await encoder.aclose()
    return stream, frames


def click_play_time(codec, frames):
    """When the loudest sample is heard: the stream decoded as a receiver does (one decoder
    throughout), the click's output sample mapped to its frame's play_at."""
    decoded = decode_to_pcm(codec, b"".join(bytes(f.payload) for f in frames), RATE)
    sample = int(np.argmax(np.abs(decoded.astype(np.int32))))
    start = 0
    for frame in frames:
        if sample < start + frame.samples:
            return frame.play_at + (sample - start) * 1000 / RATE
        start += frame.samples
    raise AssertionError("click beyond the last frame")


async def test_a_click_has_one_play_time_in_mp3_and_adpcm():
    pcm = np.zeros(RATE, dtype="<i2")
    pcm[CLICK_AT:CLICK_AT + 10] = 20000
    timeline = PcmTimeline(RATE)
    timeline.admit(320, now_ms=1_000_020)  # sample 0 captured at 1 000 000 ms
    heard = {}
    for codec in ("mp3", "adpcm"):
        stream, frames = await encode(codec, pcm, timeline)
        assert {CODEC_NAMES[f.codec] for f in frames} == {codec}
        assert {f.stream_no for f in frames} == {stream.sno}
        assert [f.seq for f in frames] == list(range(len(frames)))
        # Nothing held back or flagged last: the session's end is a command, not a frame.
        assert not any(f.last for f in frames)
        assert sum(f.samples for f in frames) >= RATE - 1152
        heard[codec] = click_play_time(codec, frames)
    expected = 1_000_000 + CLICK_AT * 1000 / RATE + DELAY_MS
    assert abs(heard["adpcm"] - expected) < 2, heard
    assert abs(heard["mp3"] - heard["adpcm"]) < 2, heard
