"""Counting the samples in what a receiver writes to its sink, for the recording sinks.

MicroPython-safe: the CPython recording sink (simulator/sink.py) and the one running inside a
MicroPython receiver process (simulator/mp_host.py) count with the same code.
"""

from firmware.adpcm import samples_in_block
from firmware.mp3 import frame_info, id3_length
from protocol.media import ADPCM_BLOCK_BYTES


class Mp3Counter:
    """Counts samples in an MP3 byte stream written in arbitrary pieces (skips ID3 tags)."""

    def __init__(self):
        self._pending = bytearray()

    def samples_in(self, data):
        buf = self._pending
        buf += data
        samples = 0
        pos = 0
        while pos + 10 <= len(buf):
            tag = id3_length(buf[pos:pos + 10])
            if tag:
                if pos + tag > len(buf):
                    break
                pos += tag
                continue
            info = frame_info(buf[pos], buf[pos + 1], buf[pos + 2])
            if info is None:
                pos += 1  # resynchronise, as a decoder does
                continue
            if pos + info[0] > len(buf):
                break
            samples += info[1]
            pos += info[0]
        # A new bytearray rather than ``del buf[:pos]``: MicroPython cannot delete a slice.
        self._pending = buf[pos:] if pos else buf
        return samples

    def flush(self):
        return 0


class AdpcmCounter:
    """Counts samples in whole IMA-ADPCM blocks (protocol.media layout)."""

    def __init__(self, block_bytes=ADPCM_BLOCK_BYTES):
        self._block = block_bytes
        self._pending = 0

    def samples_in(self, data):
        total = self._pending + len(data)
        blocks = total // self._block
        self._pending = total - blocks * self._block
        return blocks * samples_in_block(self._block)

    def flush(self):
        """A short last block still holds samples."""
        rest = self._pending
        self._pending = 0
        return samples_in_block(rest)


def counter_for(codec):
    return Mp3Counter() if codec == "mp3" else AdpcmCounter()
