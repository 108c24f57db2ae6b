"""Turn what a receiver played back into PCM, so tests can check what a listener heard.

- "mp3": ffmpeg's MP3 decoder (what a VS1053 does in hardware), resampled to ``rate``.
- "adpcm": the firmware's own decoder (``firmware.adpcm``), so a test hears exactly what the
  receiver's I2S path would; ``rate`` is the rate the blocks were encoded at.

``decoded_delay`` is how many samples each decoder gives before the first one encoded;
``lag_samples`` finds how far apart two such recordings play the same audio (cross-correlation).
"""

import numpy as np

from audio import adpcm, ffmpeg, mp3
from protocol.media import ADPCM_BLOCK_BYTES


def decoded_delay(codec):
    """Samples a receiver's decoder of ``codec`` gives before the first sample encoded (LAME's
    MP3: 1,105; IMA-ADPCM: none)."""
    if codec == "mp3":
        return mp3.LAME_DECODED_DELAY
    if codec == "adpcm":
        return adpcm.DECODED_DELAY
    raise ValueError("unknown codec %r (expected mp3 or adpcm)" % codec)


def decode_to_pcm(codec, data, rate, *, block_bytes=ADPCM_BLOCK_BYTES):
    """Decode ``data`` (bytes of ``codec``) to a mono int16 numpy array at ``rate``."""
    data = bytes(data)
    if not data:
        return np.zeros(0, dtype=np.int16)
    if codec == "adpcm":
        return np.frombuffer(adpcm.decode(data, block_bytes), dtype="<i2").astype(np.int16)
    if codec == "mp3":
        keep = None
        single = mp3.frames(data)
        if len(single) == 1:
            # ffmpeg's MP3 demuxer refuses a stream of one frame (it wants to see the next
            # header). Decode the frame followed by a copy of itself and keep the first frame's
            # samples: a frame's output does not depend on what comes after it.
            header = mp3.parse_header(single[0])
            keep = header.samples * int(rate) // header.sample_rate
            data = bytes(single[0]) * 2
        out, _ = ffmpeg.run(["-f", "mp3", "-i", "pipe:0", "-map", "0:a:0", "-ac", "1",
                             "-ar", str(int(rate)), "-f", "s16le", "pipe:1"], input_bytes=data)
        pcm = np.frombuffer(out, dtype="<i2").astype(np.int16)
        return pcm[:keep] if keep is not None else pcm
    raise ValueError("unknown codec %r (expected mp3 or adpcm)" % codec)


def lag_samples(a, b):
    """The lag (samples) at which ``a`` best matches ``b``: ``a[n]`` ~ ``b[n - lag]``.

    By cross-correlation (FFT, zero-padded: no wrap-around), so use a signal with one clear
    peak, a chirp or clicks, not a steady tone.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if not len(a) or not len(b):
        raise ValueError("nothing to correlate")
    a, b = a - a.mean(), b - b.mean()
    size = 1 << (len(a) + len(b)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lag = int(np.argmax(corr))
    return lag - size if lag > size // 2 else lag
