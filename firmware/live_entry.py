"""Where the player enters a live frame it writes after its start (firmware/player.py).

A frame written late into a sink that is not playing would be heard late, and every frame
queued behind it too, for the rest of the stream: out of step with the neighbours. So:

- the first frame of a stream is entered at the sample due now: ``samples_past`` is what the
  sink's ``skip_samples`` drops at ``open`` (sample-accurate on the I2S DAC and the simulator;
  the VS1053 rounds to a whole MPEG frame);
- a frame written later into a sink that ran dry (it came after its time: the head-end's
  encoder or the network was late) cannot be skipped into by the sink, which is open: the
  player drops its whole units (ADPCM blocks, MPEG frames) up to the first one still to come,
  ``units_past``, and writes the rest at that unit's time.

Small ints only: a frame's ms times a rate, a frame's bytes.
"""

from firmware.mp3 import frame_bytes, frame_samples
from protocol.media import ADPCM_BLOCK_BYTES, adpcm_samples_per_block

_ADPCM_BLOCK_SAMPLES = adpcm_samples_per_block(ADPCM_BLOCK_BYTES)


def samples_past(frame, now, rate):
    """Samples of ``frame`` (jitter.ReleasedFrame) whose time has passed at stream time ``now``
    (ms since the stream's base)."""
    late = now - frame.at
    if late <= 0:
        return 0
    if late >= frame.duration_ms:
        return frame.samples
    return late * rate // 1000


def units_past(payload, codec, past):
    """``(bytes, samples)``: the shortest run of whole units at the start of ``payload`` that
    holds at least ``past`` samples; all of it (``len(payload)``) when none is left after it.
    Live frames are whole ADPCM blocks or whole MPEG frames that decode alone."""
    n = len(payload)
    if past <= 0:
        return 0, 0
    if codec == "adpcm":
        blocks = (past + _ADPCM_BLOCK_SAMPLES - 1) // _ADPCM_BLOCK_SAMPLES
        off = blocks * ADPCM_BLOCK_BYTES
        return (off if off < n else n), blocks * _ADPCM_BLOCK_SAMPLES
    off = dropped = 0
    while dropped < past and off + 4 <= n:
        length = frame_bytes(payload[off], payload[off + 1], payload[off + 2])
        if not length:
            return n, dropped  # not a frame header: nothing after it can be entered
        dropped += frame_samples(payload[off + 1])
        off += length
    if dropped < past or off >= n:
        return n, dropped
    return off, dropped
