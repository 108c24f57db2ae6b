"""A sine tone as a real 16-bit mono WAV file, made on the spot: what tests and benchmarks
upload to the head-end when the content does not matter, only that it is real audio.

    tone_wav(seconds=1.5)                       # the file's bytes
    write_tone_wav(path, seconds=6, freq=880)   # written to ``path``; returns it as a Path
"""

import io
import math
import struct
import wave
from pathlib import Path

AMPLITUDE = 9000  # about -11 dBFS: clearly audible, far from clipping


def tone_wav(seconds=1.5, rate=16000, freq=440.0):
    """The bytes of a WAV file holding ``seconds`` of a ``freq`` Hz sine at ``rate`` Hz."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(
            struct.pack("<h", int(AMPLITUDE * math.sin(2 * math.pi * freq * i / rate)))
            for i in range(int(seconds * rate))))
    return buf.getvalue()


def write_tone_wav(path, seconds=1.5, rate=16000, freq=440.0):
    """``tone_wav`` written to ``path``."""
    path = Path(path)
    path.write_bytes(tone_wav(seconds, rate, freq))
    return path
