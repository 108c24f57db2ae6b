"""One rendition of a live session: PCM in, signed protocol frames out, on the session's timeline.

A thin layer over audio/live.py's ``LiveFramer`` (ffmpeg encodes the PCM and its cutters make
self-contained frames); the play-at time comes from the session's ``PcmTimeline``, not from the
framer's own clock, so MP3 and ADPCM frames of one moment carry one play time.
"""

import time
from collections.abc import AsyncIterator

from audio.live import LiveFramer, PushSource
from headend.live.session import LiveStream
from headend.live.timeline import PcmTimeline
from protocol.frames import CODEC_IDS, pack_frame
from protocol.signing import HmacKey

_QUEUE_CHUNKS = 512  # ~10 s of 20 ms chunks: a stuck ffmpeg is noticed (stall) long before


class CodecEncoder:
    def __init__(self, stream: LiveStream, *, pcm_rate: int, frame_ms: int,
                 stall_timeout_s: float, wall_clock=time.time):
        self.stream = stream
        self._wall_clock = wall_clock
        self._source = PushSource(_QUEUE_CHUNKS)
        # Paced by its source (a microphone speaks in real time): frames go out as soon as
        # they are cut, nothing is held back or prebuffered, so no latency is added here.
        self.framer = LiveFramer(self._source, codec=stream.codec, frame_ms=frame_ms,
                                 prebuffer_ms=0, paced=False, pcm_rate=pcm_rate,
                                 hold_last=False, stall_timeout_s=stall_timeout_s)
        self._hkey = HmacKey(stream.key)
        self._ended = False

    async def push(self, pcm: bytes) -> None:
        if not self._ended:
            await self._source.push(pcm)

    def end(self) -> None:
        """No more PCM: ffmpeg flushes what it holds and the frames end."""
        if not self._ended:
            self._ended = True
            self._source.end()

    async def frames(self, timeline: PcmTimeline, delay_ms: int, network_ms: int = 0,
                     until_ms: int | None = None) -> AsyncIterator[bytes]:
        """Signed frames, each stamped ``timeline`` time of its first sample + ``delay_ms``;
        the first frame of the session leaves at least ``network_ms`` before its play time.
        None is sent that would play at or after ``until_ms`` (the session's end). Raises
        audio.live.LiveSourceError if ffmpeg fails."""
        codec = CODEC_IDS[self.stream.codec]
        position = 0  # output samples before this frame, at the encoder's own rate
        async for frame in self.framer:
            # The output rate equals the timeline's (the renditions' 16 kHz); with another
            # source rate, scale the position onto the timeline.
            start = position * timeline.rate // self.framer.rate
            priming = self.framer.priming_samples * timeline.rate // self.framer.rate
            play_at = timeline.play_at_ms(start, priming, delay_ms, self._wall_clock() * 1000,
                                          network_ms)
            position += frame.samples
            if until_ms is not None and play_at >= until_ms:
                continue  # past the session's window: the receivers stop at until anyway
            yield pack_frame(self._hkey, codec, self.stream.sno, frame.seq, play_at,
                             frame.samples, frame.payload, 0)

    async def aclose(self) -> None:
        self.end()
        await self.framer.aclose()
