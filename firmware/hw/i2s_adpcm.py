"""I2S DAC/amplifier sink (e.g. MAX98357A) with IMA-ADPCM decoded on the ESP32.

``machine.I2S`` in TX mode, 16-bit mono, with a DMA buffer (``ibuf``) of about half a second.
Each ADPCM block is decoded by ``firmware.adpcm.decode_block`` (viper code where the port has
it), in place in the buffer it came in (by offsets), into one of two preallocated PCM buffers.

Writes never block the event loop. MicroPython's I2S has three modes (extmod/machine_i2s.c and
ports/esp32/machine_i2s.c): blocking, the default, where ``write`` waits until the whole buffer
is in DMA memory (``i2s_channel_write`` with ``portMAX_DELAY``: 31.6 ms per block once the DMA is
full, the whole event loop held); asyncio, entered only when something polls the object
(``ioctl``); and non-blocking, entered by ``I2S.irq(handler)``: ``write`` hands the buffer to a
FreeRTOS task and returns at once, the task copies it into DMA memory as that frees up, then
schedules ``handler`` (``mp_sched_schedule``). The old sink wrote through
``asyncio.StreamWriter(i2s, {})``, whose ``write`` calls ``I2S.write`` at once: nothing had
polled the object, so it was in blocking mode and blocked (and its ``out_buf += buf`` path
allocates). This sink uses the irq mode: decode the next block into the free PCM buffer while
the other goes to DMA, wait (sleeping, see firmware/hw/paced.py) until the handler says it has,
write the next. The ESP32's queue to that task holds one buffer and a write to a full queue is
dropped (``xQueueSend`` with no wait), so there is never more than one buffer in flight; the
one being written is not touched until its handler ran. ``write(buf, offset, length)`` is
MicroPython's stream write with an offset (py/stream.c): no slice for a late start's partial
block. Nothing is allocated per block.

``skip_samples`` (a late start's remainder, less than one block, from a file; or the late part
of a live stream's first frame, several blocks) is dropped from the start of the first decoded
blocks: the start is sample-accurate.

Volume: the DAC has no volume register, so PCM is attenuated in place with ``I2S.shift`` in
6 dB steps (0..-36 dB over 100..1); 0 shifts by 15 bits (silence) and still plays in real time,
so a muted item ends when it would have.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

from machine import I2S, Pin

from firmware.adpcm import decode_block, samples_in_block
from firmware.hw.paced import DONE, PacedWrite
from firmware.platform import Sink, SinkError
from protocol.media import ADPCM_BLOCK_BYTES

IBUF_BYTES = 16000   # DMA buffer: 0.5 s at 16 kHz, 16-bit mono
_MAX_SHIFT = 6
_MUTE_SHIFT = -15    # a 16-bit sample shifted this far is 0 or -1: silence


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
        pcm_bytes = 2 * samples_in_block(block_bytes)
        self._pcm = (bytearray(pcm_bytes), bytearray(pcm_bytes))  # one in flight, one filling
        self._fill = 0           # index of the PCM buffer to decode into next
        self._ready_off = 0      # decoded PCM waiting in self._pcm[self._fill] (bytes)
        self._ready_len = 0
        self._in_flight = False  # a buffer is with the driver; cleared by its irq handler
        self._flight_polls = 0   # polls since it was handed over
        self._lost_after = 1     # polls after which its handler must have been lost
        self._on_sent = self._buffer_sent  # bound once: the handler is called per block
        self._src = self._pcm[0]  # the ADPCM being written, and where in it
        self._src_off = 0
        self._src_end = 0
        self._paced = PacedWrite(self._feed)
        self._i2s = None
        self._rate = 0
        self._poll_ms = 1
        self._skip = 0
        self._shift = volume_shift(70)
        self.volume = 70
        self.samples_written = 0

    def _start_i2s(self, rate):
        if self._i2s is not None and rate == self._rate:
            return
        self._deinit()
        sck, ws, sd = self._pins
        self._i2s = I2S(self._id, sck=sck, ws=ws, sd=sd, mode=I2S.TX, bits=16,
                        format=I2S.MONO, rate=rate, ibuf=IBUF_BYTES)
        self._i2s.irq(self._on_sent)  # non-blocking mode: write returns at once
        self._rate = rate
        # A quarter of a block's play time: the handler is waited for with that much lag at
        # most, against half a second of audio in the DMA buffer.
        block_ms = samples_in_block(self._block) * 1000 // rate
        self._poll_ms = max(1, block_ms // 4)
        # The handler reaches Python through mp_sched_schedule, which drops it when the
        # scheduler's queue is full. By the time the whole DMA buffer and two blocks have
        # played, the buffer is in DMA memory for sure: go on without the handler then.
        self._lost_after = (IBUF_BYTES * 500 // rate + 2 * block_ms) // self._poll_ms + 1

    def _deinit(self):
        if self._i2s is not None:
            self._i2s.deinit()
        self._i2s = None
        self._in_flight = False
        self._ready_len = 0

    def _buffer_sent(self, i2s):
        # Scheduled by the driver once the buffer is in DMA memory: the buffer is free again.
        self._in_flight = False

    def open(self, codec, rate, skip_samples=0):
        if codec != "adpcm":
            raise ValueError("I2S sink plays adpcm only")
        self._start_i2s(rate)
        self._skip = skip_samples
        self._ready_len = 0
        self.samples_written = 0

    def write(self, buf):
        """Await the result: whole ADPCM blocks (a short last block of a file is decoded too).
        Done once every block is decoded and all but the last is with the driver."""
        self._src = buf
        self._src_off = 0
        self._src_end = len(buf)
        return self._paced

    def _feed(self):
        """One step of a write (``PacedWrite``): hand decoded PCM to the driver when it has
        taken the last, decode the next block meanwhile; DONE, or the ms to sleep."""
        while True:
            if self._ready_len:
                if self._in_flight:
                    self._flight_polls += 1
                    if self._flight_polls <= self._lost_after:
                        return self._poll_ms
                self._in_flight = True
                self._flight_polls = 0
                self._i2s.write(self._pcm[self._fill], self._ready_off, self._ready_len)
                self._fill ^= 1
                self._ready_len = 0
            if self._src_off >= self._src_end:
                return DONE
            self._decode_next()

    def _decode_next(self):
        start = self._src_off
        end = min(start + self._block, self._src_end)
        self._src_off = end
        pcm = self._pcm[self._fill]
        samples = decode_block(self._src, pcm, start, end)
        first = 0
        if self._skip:
            first = min(self._skip, samples)
            self._skip -= first
        if first >= samples:
            return
        if self._shift:
            I2S.shift(buf=pcm, bits=16, shift=self._shift)
        self._ready_off = 2 * first
        self._ready_len = 2 * (samples - first)
        self.samples_written += samples - first

    async def drain(self):
        # The decoded block still waiting goes to the driver, then what is in the DMA buffer
        # plays out in at most IBUF_BYTES / (2 * rate) seconds.
        self._src_off = self._src_end = 0
        await self._paced
        polls = 0
        while self._in_flight and polls <= self._lost_after:
            await asyncio.sleep(self._poll_ms / 1000)
            polls += 1
        if self._rate:
            await asyncio.sleep(IBUF_BYTES / (2 * self._rate))

    def close(self):
        self._skip = 0

    def stop(self):
        self._skip = 0
        self._src_off = self._src_end = 0
        self._deinit()  # drops what is queued in the DMA buffer at once

    async def self_test(self, level_dbfs, ms):
        """The periodic test: ``ms`` of a 500 Hz square wave at ``level_dbfs`` (8 kHz) through
        the I2S driver, then drained. What it proves: the driver takes the samples and its
        DMA buffers come free (its handler runs); not that the DAC or the horn sound (no
        loopback on this board: the amplifier's fault line is the shell's other check)."""
        amp = 32767
        for _ in range(-level_dbfs // 6):   # -6 dB a halving: within 6 dB of the level
            amp //= 2
        rate = 8000
        try:
            self._start_i2s(rate)
            pcm = self._pcm[self._fill]
            n = len(pcm) // 2
            for i in range(n):               # 8 samples high, 8 low: 500 Hz at 8 kHz
                v = amp if (i // 8) % 2 == 0 else -amp
                pcm[2 * i] = v & 0xFF
                pcm[2 * i + 1] = (v >> 8) & 0xFF
            left = rate * ms // 1000
            while left > 0:
                take = min(n, left)
                self._src_off = self._src_end = 0
                self._ready_off = 0
                self._ready_len = 2 * take
                await self._paced
                pcm = self._pcm[self._fill]
                pcm[:] = self._pcm[self._fill ^ 1]
                left -= take
            await self.drain()
        except OSError as e:
            self.stop()
            raise SinkError("i2s: the driver refused the samples (%s)" % e)
        # Cut short (a broadcast starts), the shell has stopped the sink already and the
        # player may own it now: nothing more here.
        self.stop()

    def set_volume(self, volume):
        self.volume = volume
        self._shift = volume_shift(volume) if volume > 0 else _MUTE_SHIFT
