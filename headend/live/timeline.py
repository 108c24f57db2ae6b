"""The session's one timeline: PCM sample positions tied to the wall clock, sans-IO.

Every encoder gets the same PCM, so one sample position means one moment for MP3 and ADPCM
receivers alike. Sample 0 was captured one chunk before the first chunk arrived
(``anchor_ms``); sample ``n`` then belongs at ``anchor_ms + n / rate``. A frame starting at
output sample ``s`` of an encoder that primes ``p`` samples plays at
``anchor_ms + (s - p) / rate + delay_ms``.

The first chunks often wait (the socket is authenticated while the page already sends), so
until the first play-at time is read, the anchor moves back to the earliest any chunk allows:
the timeline settles on the fastest path the audio took, not on the first chunk's delay. And
when the first frame comes out of its encoder so late (a slow ffmpeg start on a busy machine)
that it would reach the receivers after its play time, the anchor moves forward just enough
(``min_lead_ms``): the session starts a little later rather than lose its first words.

A source that falls behind its timeline (a stalled WebSocket, a browser tab throttled) would
push every later frame past its play time: ``admit`` fills a gap longer than ``max_late_ms``
with silence, so the timeline stays on the wall clock (the listener hears a short silence,
not a run of late frames). A source running too far ahead (a burst after a stall, a clock
faster than ours) would overfill the receivers' jitter buffers: a chunk more than
``max_early_ms`` ahead is dropped. Both are counted.
"""

DEFAULT_MAX_LATE_MS = 300
DEFAULT_MAX_EARLY_MS = 600


class PcmTimeline:
    def __init__(self, rate: int, max_late_ms: int = DEFAULT_MAX_LATE_MS,
                 max_early_ms: int = DEFAULT_MAX_EARLY_MS):
        self.rate = rate
        self.max_late_ms = max_late_ms
        self.max_early_ms = max_early_ms
        self.anchor_ms: float | None = None
        self.samples = 0  # PCM samples given to the encoders so far (silence included)
        self.filled_samples = 0
        self.dropped_samples = 0
        self.settled = False  # a play-at time was given out: the anchor no longer moves
        self.late_start_ms = 0.0  # how much later than planned it settled (a slow start)

    def position_ms(self, samples: int) -> float:
        """Wall-clock time (ms) of sample ``samples`` of the timeline."""
        if self.anchor_ms is None:
            raise ValueError("the timeline starts with the first chunk")
        return self.anchor_ms + samples * 1000.0 / self.rate

    def play_at_ms(self, output_sample: int, priming_samples: int, delay_ms: int,
                   now_ms: float | None = None, min_lead_ms: int = 0) -> int:
        """When a frame whose first sample is ``output_sample`` of its encoder plays. The
        first call settles the timeline, at least ``min_lead_ms`` after ``now_ms``."""
        play_at = self.position_ms(output_sample - priming_samples) + delay_ms
        if not self.settled and now_ms is not None and play_at < now_ms + min_lead_ms:
            self.late_start_ms = now_ms + min_lead_ms - play_at
            self.anchor_ms += self.late_start_ms
            play_at += self.late_start_ms
        self.settled = True
        return round(play_at)

    def admit(self, samples: int, now_ms: float) -> tuple[int, bool]:
        """A chunk of ``samples`` arrived at ``now_ms``: returns (samples of silence to feed
        before it, whether to feed it)."""
        chunk_ms = samples * 1000.0 / self.rate
        if self.anchor_ms is None:
            self.anchor_ms = now_ms - chunk_ms
            self.samples = samples
            return 0, True
        if not self.settled:
            # This chunk came faster than the first: sample 0 was captured earlier than thought.
            self.anchor_ms = min(self.anchor_ms, now_ms - chunk_ms - self.samples * 1000.0
                                 / self.rate)
        # Where the chunk's first sample is by the wall clock, against where it falls.
        late_ms = (now_ms - chunk_ms) - self.position_ms(self.samples)
        silence = 0
        if late_ms > self.max_late_ms:
            silence = int(late_ms * self.rate / 1000)
            self.filled_samples += silence
        elif late_ms < -self.max_early_ms:
            self.dropped_samples += samples
            return 0, False
        self.samples += silence + samples
        return silence, True
