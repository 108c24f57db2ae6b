"""I2S DAC/amplifier sink (e.g. MAX98357A) with IMA-ADPCM decoded on the ESP32.

``machine.I2S`` in TX mode, 16-bit mono. Each written ADPCM block is decoded by
``firmware.adpcm.decode_block`` (viper code where the port has it) into one preallocated PCM
buffer: nothing is allocated per block by this module. The DMA buffer (``ibuf``) holds about
half a second, and writes go through an asyncio stream over the I2S object, so ``write`` awaits
while the DMA is full: the real-time pacing.

``skip_samples`` (a late start's remainder, less than one block) is dropped from the start of
the first decoded block: the start is sample-accurate.

Volume: the DAC has no volume register, so PCM is attenuated in place with ``I2S.shift`` in
6 dB steps (0..-36 dB over 100..1; 0 mutes by writing nothing).
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

from machine import I2S, Pin

from firmware.adpcm import decode_block, samples_in_block
from firmware.platform import Sink
from protocol.media import ADPCM_BLOCK_BYTES

IBUF_BYTES = 16000   # DMA buffer: 0.5 s at 16 kHz, 16-bit mono
_MAX_SHIFT = 6


def volume_shift(volume):
    """Right shift (as a negative ``I2S.shift`` amount) for a 0..100 volume."""
    return -((100 - max(0, min(100, volume))) * _MAX_SHIFT // 100)


def split_skip(skip_samples, block_samples):
    """``(whole blocks to drop, samples to drop from the next block)`` for a late start."""
    return skip_samples // block_samples, skip_samples % block_samples


class I2SAdpcmSink(Sink):
    codecs = ("adpcm",)
    name = "i2s"
    rates = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)

    def __init__(self, i2s_id, sck, ws, sd, block_bytes=ADPCM_BLOCK_BYTES):
        self._id = i2s_id
        self._pins = (Pin(sck), Pin(ws), Pin(sd))
        self._block = block_bytes
        self._pcm = bytearray(2 * samples_in_block(block_bytes))
        self._pcm_view = memoryview(self._pcm)
        self._i2s = None
        self._writer = None
        self._rate = 0
        self._skip = 0
        self.volume = 70
        self.samples_written = 0

    def _start_i2s(self, rate):
        if self._i2s is not None and rate == self._rate:
            return
        self._deinit()
        sck, ws, sd = self._pins
        self._i2s = I2S(self._id, sck=sck, ws=ws, sd=sd, mode=I2S.TX, bits=16,
                        format=I2S.MONO, rate=rate, ibuf=IBUF_BYTES)
        self._writer = asyncio.StreamWriter(self._i2s, {})  # MicroPython: StreamWriter(stream, extra)
        self._rate = rate

    def _deinit(self):
        if self._i2s is not None:
            self._i2s.deinit()
        self._i2s = None
        self._writer = None

    def open(self, codec, rate, skip_samples=0):
        if codec != "adpcm":
            raise ValueError("I2S sink plays adpcm only")
        self._start_i2s(rate)
        self._skip = skip_samples
        self.samples_written = 0

    async def write(self, buf):
        """Whole ADPCM blocks (a short last block of a file is decoded too)."""
        mv = memoryview(buf)
        block = self._block
        for off in range(0, len(mv), block):
            samples = decode_block(mv[off:off + block], self._pcm)
            first = 0
            if self._skip:
                first = min(self._skip, samples)
                self._skip -= first
            if first >= samples or self.volume <= 0:
                continue
            pcm = self._pcm_view[2 * first:2 * samples]
            shift = volume_shift(self.volume)
            if shift:
                I2S.shift(buf=pcm, bits=16, shift=shift)
            self._writer.write(pcm)
            await self._writer.drain()
            self.samples_written += samples - first

    async def drain(self):
        # What is in the DMA buffer plays out in at most IBUF_BYTES / (2 * rate) seconds.
        if self._rate:
            await asyncio.sleep(IBUF_BYTES / (2 * self._rate))

    def close(self):
        self._skip = 0

    def stop(self):
        self._skip = 0
        self._deinit()  # drops what is queued in the DMA buffer at once

    def set_volume(self, volume):
        self.volume = volume
