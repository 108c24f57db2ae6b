"""VS1053 MP3 decoder over SPI: the Sink for MP3 receivers (MP3 bytes passed through as they are).

Wiring (pins from config "pins"): SCK/MOSI/MISO (SPI bus), xCS (command chip select), xDCS
(data chip select), DREQ (high when the chip can take at least 32 data bytes), RESET.

Commands go over SCI (xCS low, 4 bytes: write opcode 0x02, register, value high, low); audio
over SDI (xDCS low, 32-byte chunks while DREQ is high). ``write`` hands back a ``PacedWrite``
(firmware/hw/paced.py) that sleeps while DREQ is low, so the event loop runs while the chip's
FIFO drains: that is the real-time pacing. DREQ low for longer than a full FIFO takes to play
at the stream's lowest bitrate, plus a margin, means the chip is gone or hung: the write raises
``SinkError("vs1053: DREQ stuck low")`` and the play ends failed with that reason.

Nothing is allocated per frame: ``write`` copies the frame into a preallocated stage
(``stage[a:b] = frame`` allocates nothing; a slice of the frame would) and sends it from 32-byte
views of the stage made once. A last partial chunk waits in the stage for the next frame, or for
the end fill of ``drain``.

At reset the sink checks that the chip is there: DREQ must rise, SCI_MODE must read back what
was written, SCI_STATUS must say VS1053; otherwise ``SinkError`` names the chip and the wires to
check (the board refuses to start with an audio path that cannot play).

A late start skips whole MP3 frames: the shell seeks whole frames in the file and passes the
remainder (less than one frame) as ``skip_samples``, a live stream's player the late part of
its first frame (several MPEG frames). The chip cannot drop part of a frame, so the sink drops
every frame already begun and holds the first byte of the next back until its time (up to a
frame, 36 ms at 16 kHz, of silence first): the start is on time to the ms, not rounded to the
nearest frame (which was up to 18 ms off: a pole out of step with its neighbours).
"""

import time

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

from machine import SPI, Pin

from firmware.hw.paced import DONE, PacedWrite
from firmware.mp3 import MAX_FRAME_BYTES, bitrate_kbps, frame_bytes
from firmware.platform import Sink, SinkError

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython: the unit tests run this module with a fake machine module
    def ticks_ms():
        return int(time.time() * 1000)

    def ticks_diff(a, b):
        return a - b

SCI_WRITE = 0x02
SCI_READ = 0x03
SCI_MODE = 0x00
SCI_STATUS = 0x01
SCI_CLOCKF = 0x03
SCI_VOL = 0x0B

SM_RESET = 0x0004
SM_CANCEL = 0x0008
SM_SDINEW = 0x0800
SM_TESTS = 0x0020
# The chip's own sine test (datasheet 9.12.1), with SM_TESTS set: 8 bytes on SDI start it
# (0x44: sample rate index 2, 22.05 kHz, S 4: 22050 * 4 / 128 = 689 Hz), 8 bytes end it.
_SINE_ON = b"\x53\xef\x6e\x44\x00\x00\x00\x00"
_SINE_OFF = b"\x45\x78\x69\x74\x00\x00\x00\x00"
MODE_DEFAULT = SM_SDINEW
# SCI_CLOCKF (datasheet 9.6.4): SC_MULT in bits 15:13, SC_ADD in 12:11, SC_FREQ in 10:0 (0 for
# the usual 12.288 MHz crystal). The old 0xE000 was SC_MULT 7, XTALI x 5.0 = 61.4 MHz, over
# the 55.3 MHz CLKI maximum (its comment said 4.5x, which is SC_MULT 6). 0x8800 is the value the
# datasheet recommends: SC_MULT 4, 3.5x = 43.0 MHz, ample for MP3 up to 320 kbit/s at 48 kHz,
# and SC_ADD 1 lets the chip's firmware add 1.0x (4.5x = 55.3 MHz, the maximum) when a WMA or
# AAC stream needs it; it never does for MP3.
CLOCKF_DEFAULT = 0x8800
SS_VER_VS1053 = 4   # SCI_STATUS bits 7:4 on a VS1053 (other VS10xx chips give other numbers)
VOLUME_MUTE = 0xFE  # analog power-down value of each channel's attenuation byte
CHUNK = 32          # bytes the chip always accepts while DREQ is high
# SPI clock limits: SCI reads CLKI/7, SCI writes and SDI CLKI/4. Before CLOCKF the chip runs
# from the bare crystal (12.288 MHz: reads up to 1.75 MHz); after it at 43 MHz (reads up to
# 6.1 MHz; the old 8 MHz was over that even at 55 MHz). 6 MHz moves 750 KB/s: 20 times what
# 320 kbit/s needs.
_SLOW_SPI_HZ = 1000000
_FAST_SPI_HZ = 6000000
_FIFO_BYTES = 2048       # the chip's SDI stream buffer
_DREQ_POLL_MS = 5        # shortest sleep while DREQ is low (200 bytes at 320 kbit/s)
_DREQ_MARGIN_MS = 300    # beyond a full FIFO's play time before a low DREQ counts as stuck
_LOWEST_KBPS = 8         # MPEG-2.5's lowest bitrate: the bound until a frame header tells
_SCI_WAIT_MS = 20        # DREQ after a reset (~1.8 ms) or a register write (CLOCKF: ~0.1 ms)
_CANCEL_CHUNKS = 64      # zero chunks sent while waiting for SM_CANCEL to clear (2 KB)
_CANCEL_MS = 100         # and for at most this long: the datasheet allows up to 1 s before a
                         # reset, but stop() holds the event loop, so it resets sooner
# A whole frame behind a partial chunk left from the one before, in whole chunks: 1504 bytes.
_STAGE_BYTES = (MAX_FRAME_BYTES + 2 * CHUNK - 1) // CHUNK * CHUNK
_DREQ_STUCK = "vs1053: DREQ stuck low"


def fifo_ms(kbps):
    """How long a full FIFO plays at ``kbps`` (bytes * 8 / kbit/s = ms): 512 ms at 32 kbit/s."""
    return _FIFO_BYTES * 8 // kbps


def dreq_sleep_ms(kbps):
    """How long to sleep when DREQ is low (the FIFO full but for 32 bytes): a quarter of the
    FIFO's play time, so a wake-up sends a quarter FIFO at once and three quarters stay queued
    against a busy loop (at 32 kbit/s 128 ms: 8 wake-ups a second, not one per 32 bytes)."""
    return max(_DREQ_POLL_MS, fifo_ms(kbps) // 4)


def volume_register(volume):
    """SCI_VOL for a 0..100 volume: 0.5 dB steps of attenuation, 100 = 0 dB, 1 = -49.5 dB,
    0 = muted; the same for both channels."""
    if volume <= 0:
        att = VOLUME_MUTE
    else:
        att = min(VOLUME_MUTE, 100 - min(100, volume))
    return (att << 8) | att


def samples_per_frame(rate):
    """MP3 (Layer III) frame length in samples: 1152 for MPEG-1 rates, 576 below 32 kHz."""
    return 1152 if rate >= 32000 else 576


def late_start(skip_samples, rate):
    """``(whole frames to drop, ms to hold the first byte back)`` for a late start of
    ``skip_samples``: the chip cannot start inside a frame, so every frame already begun is
    dropped and the next one is sent at its own time."""
    spf = samples_per_frame(rate)
    frames = (skip_samples + spf - 1) // spf
    return frames, (frames * spf - skip_samples) * 1000 // rate


class VS1053Sink(Sink):
    codecs = ("mp3",)
    name = "vs1053"
    rates = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

    def __init__(self, spi_id, sck, mosi, miso, xcs, xdcs, dreq, reset):
        self._gpios = (sck, mosi, miso, xcs, dreq, reset)  # for error messages
        self._spi = SPI(spi_id, baudrate=_SLOW_SPI_HZ, sck=Pin(sck), mosi=Pin(mosi),
                        miso=Pin(miso))
        self._xcs = Pin(xcs, Pin.OUT, value=1)
        self._xdcs = Pin(xdcs, Pin.OUT, value=1)
        self._dreq = Pin(dreq, Pin.IN)
        self._reset = Pin(reset, Pin.OUT, value=1)
        self._cmd = bytearray(4)
        self._zeros = bytearray(CHUNK)
        # The stage and its 32-byte views: what is sent to the chip, without a slice per chunk.
        self._stage = bytearray(_STAGE_BYTES)
        stage_view = memoryview(self._stage)
        self._chunks = [stage_view[i:i + CHUNK] for i in range(0, _STAGE_BYTES, CHUNK)]
        self._staged = 0      # valid bytes in the stage, from its start
        self._sent = 0        # of which already sent (always a whole number of chunks)
        self._src = self._zeros  # the buffer being written, and what of it is left
        self._src_off = 0
        self._src_end = 0
        self._low_ms = 0      # slept in a row with DREQ low (at least; sleeps run late)
        self._kbps = 0        # the lowest bitrate seen in this play, and what follows from it
        self._sleep_ms = _DREQ_POLL_MS
        self._stuck_ms = fifo_ms(_LOWEST_KBPS) + _DREQ_MARGIN_MS
        self._paced = PacedWrite(self._feed)
        self._failed = None   # why the chip is unusable (reported by the next open)
        self._drop = 0
        self._hold_ms = 0
        self.volume = 70
        self._testing = False  # the sine test runs (self_test)
        self.is_open = False
        self.bytes_written = 0
        self.hard_reset()

    # -- SCI -------------------------------------------------------------------------------

    def _wait_dreq(self, limit_ms):
        """Spin until DREQ is high, for at most ``limit_ms``; False if it stayed low. It holds
        the event loop, so it is only for commands (the chip answers within ~2 ms), never for
        audio data (that waits in ``_feed``, sleeping)."""
        if self._dreq.value():
            return True
        start = ticks_ms()
        while not self._dreq.value():
            if ticks_diff(ticks_ms(), start) >= limit_ms:
                return False
        return True

    def sci_write(self, reg, value):
        if not self._wait_dreq(_SCI_WAIT_MS):
            raise SinkError(_DREQ_STUCK)
        cmd = self._cmd
        cmd[0] = SCI_WRITE
        cmd[1] = reg
        cmd[2] = (value >> 8) & 0xFF
        cmd[3] = value & 0xFF
        self._xcs.value(0)
        self._spi.write(cmd)
        self._xcs.value(1)

    def sci_read(self, reg):
        if not self._wait_dreq(_SCI_WAIT_MS):
            raise SinkError(_DREQ_STUCK)
        cmd = self._cmd
        cmd[0] = SCI_READ
        cmd[1] = reg
        cmd[2] = 0
        cmd[3] = 0
        self._xcs.value(0)
        self._spi.write_readinto(cmd, cmd)
        self._xcs.value(1)
        return (cmd[2] << 8) | cmd[3]

    def hard_reset(self):
        """Reset the chip, check that it answers, set its clock; SinkError if it is not there."""
        sck, mosi, miso, xcs, dreq, reset = self._gpios
        self._reset.value(0)
        self._reset.value(1)
        self._spi.init(baudrate=_SLOW_SPI_HZ)
        if not self._wait_dreq(_SCI_WAIT_MS):
            raise SinkError("vs1053: DREQ stays low after reset: check the chip's power, RESET "
                            "(GPIO%d) and DREQ (GPIO%d)" % (reset, dreq))
        self._check_chip(MODE_DEFAULT)
        self.sci_write(SCI_CLOCKF, CLOCKF_DEFAULT)
        self._spi.init(baudrate=_FAST_SPI_HZ)
        self.sci_write(SCI_VOL, volume_register(self.volume))

    def _check_chip(self, mode_value):
        """Write SCI_MODE, read it back, read the version: SinkError unless a VS1053 answers."""
        sck, mosi, miso, xcs, dreq, reset = self._gpios
        self.sci_write(SCI_MODE, mode_value)
        mode = self.sci_read(SCI_MODE)
        if mode != mode_value:  # MISO floating or tied: all ones or all zeros, typically
            raise SinkError("vs1053: no chip answers (SCI_MODE reads 0x%04x, not 0x%04x): check "
                            "its power and SPI wiring (SCK GPIO%d, MOSI GPIO%d, MISO GPIO%d, "
                            "xCS GPIO%d)" % (mode, mode_value, sck, mosi, miso, xcs))
        version = (self.sci_read(SCI_STATUS) >> 4) & 0xF
        if version != SS_VER_VS1053:
            raise SinkError("vs1053: the chip on the SPI bus is not a VS1053 (SCI_STATUS "
                            "version %d, not %d)" % (version, SS_VER_VS1053))

    async def self_test(self, level_dbfs, ms):
        """The periodic test: the chip answers on SPI both ways (SCI_MODE written with SM_TESTS
        and read back, its version), then its own sine test for ``ms`` at ``level_dbfs`` of
        attenuation (SCI_VOL, 0.5 dB steps; the sine itself is near full scale), then the
        chip back as it was. What it proves: the chip is there and takes commands and data
        (DREQ); not that sound reaches the horn (no loopback on this board)."""
        if self.is_open:
            raise SinkError("vs1053: busy")
        att = min(VOLUME_MUTE - 1, -2 * level_dbfs)
        self._testing = True
        try:
            self._check_chip(MODE_DEFAULT | SM_TESTS)
            self.sci_write(SCI_VOL, (att << 8) | att)
            self._sdi(_SINE_ON)
            await asyncio.sleep(ms / 1000)
        finally:
            self._end_test()

    def _end_test(self):
        """The sine test off, the chip as it plays (at once: a broadcast may follow)."""
        if not self._testing:
            return
        self._testing = False
        try:
            self._sdi(_SINE_OFF)
            self.sci_write(SCI_MODE, MODE_DEFAULT)
            self.sci_write(SCI_VOL, volume_register(self.volume))
        except SinkError as e:
            self._failed = str(e)  # reported by the next open, which resets the chip

    def _sdi(self, data):
        if not self._wait_dreq(_SCI_WAIT_MS):
            raise SinkError(_DREQ_STUCK)
        self._xdcs.value(0)
        self._spi.write(data)
        self._xdcs.value(1)

    # -- Sink ------------------------------------------------------------------------------

    def open(self, codec, rate, skip_samples=0):
        if codec != "mp3":
            raise ValueError("VS1053 sink plays mp3 only")
        if self._failed is not None:
            # It failed during the last play: a reset may bring it back; if not, say why.
            self._failed = None
            try:
                self.hard_reset()
            except SinkError as e:
                self._failed = str(e)
                raise
        self._drop, self._hold_ms = late_start(skip_samples, rate)
        self._discard()
        self._kbps = 10000  # none seen yet: short sleeps, and the longest bound
        self._sleep_ms = _DREQ_POLL_MS
        self._stuck_ms = fifo_ms(_LOWEST_KBPS) + _DREQ_MARGIN_MS
        self.bytes_written = 0
        self.is_open = True

    def write(self, buf):
        """Await the result: MP3 bytes, whole frames at least at the start of a play (the
        shell's file loop and live frames hand over whole frames). Done once all of it but a
        last partial chunk is in the chip's FIFO."""
        n = len(buf)
        off = 0
        while self._drop and off + 4 <= n:
            length = frame_bytes(buf[off], buf[off + 1], buf[off + 2])
            if not length:
                break
            off += length
            self._drop -= 1
        # Sleeps and the stuck-DREQ bound follow the lowest bitrate seen (a VBR stream may
        # drop to it, and a FIFO of it then plays longest).
        if off + 4 <= n and frame_bytes(buf[off], buf[off + 1], buf[off + 2]):
            kbps = bitrate_kbps(buf[off + 1], buf[off + 2])
            if kbps < self._kbps:
                self._kbps = kbps
                self._sleep_ms = dreq_sleep_ms(kbps)
                self._stuck_ms = fifo_ms(kbps) + _DREQ_MARGIN_MS
        self._src = buf
        self._src_off = off
        self._src_end = n
        self._low_ms = 0
        return self._paced

    def _feed(self):
        """One step of a write (``PacedWrite``): send whole chunks while DREQ is high, refill
        the stage from the source; DONE, or the ms to sleep while DREQ is low."""
        if self._hold_ms:  # a late start: the first frame kept goes out at its own time
            hold = self._hold_ms
            self._hold_ms = 0
            return hold
        stage = self._stage
        while True:
            while self._sent + CHUNK <= self._staged:
                if not self._dreq.value():
                    if self._low_ms > self._stuck_ms:
                        self._failed = _DREQ_STUCK
                        raise SinkError(_DREQ_STUCK)
                    self._low_ms += self._sleep_ms
                    return self._sleep_ms
                self._low_ms = 0
                self._xdcs.value(0)
                self._spi.write(self._chunks[self._sent // CHUNK])
                self._xdcs.value(1)
                self._sent += CHUNK
                self.bytes_written += CHUNK
            if self._sent:  # less than a chunk left: move it to the front of the stage
                tail = self._staged - self._sent
                if tail:
                    stage[0:CHUNK] = self._chunks[self._sent // CHUNK]
                self._staged = tail
                self._sent = 0
            left = self._src_end - self._src_off
            if left <= 0:
                return DONE
            room = _STAGE_BYTES - self._staged
            if self._src_off == 0 and left <= room:
                take = left  # the usual case, a whole frame: stored whole, nothing allocated
                stage[self._staged:self._staged + take] = self._src
            else:  # a late start's dropped frame, or more than the stage holds: one view
                take = min(left, room)
                stage[self._staged:self._staged + take] = memoryview(self._src)[
                    self._src_off:self._src_off + take]
            self._src_off += take
            self._staged += take

    def _discard(self):
        """Forget what is staged and what is left of the buffer being written."""
        self._staged = 0
        self._sent = 0
        self._src = self._zeros
        self._src_off = 0
        self._src_end = 0

    async def drain(self):
        # End fill (for MP3 the end-fill byte is 0): the partial chunk left in the stage made
        # whole with zeros, then 2 KB of zeros, so the chip decodes the last frame and its
        # FIFO runs empty.
        if self._staged:
            stage = self._stage
            for i in range(self._staged, CHUNK):
                stage[i] = 0
            self._staged = CHUNK
        self._src_off = self._src_end = 0
        await self._paced
        for _ in range(_CANCEL_CHUNKS):
            await self.write(self._zeros)

    def close(self):
        self.is_open = False

    def stop(self):
        """Cut the audio now: SM_CANCEL, then zeros until the chip has dropped its buffer, or a
        reset. Never raises: a chip that does not answer is reported by the next ``open``."""
        self._discard()
        self._end_test()
        if not self.is_open:
            return
        self.is_open = False
        self._drop = 0
        self._hold_ms = 0
        try:
            if not self._cancelled():
                self.hard_reset()  # the chip did not acknowledge the cancel: start it afresh
        except SinkError as e:
            self._failed = str(e)

    def _cancelled(self):
        """SM_CANCEL, then zero chunks until the chip clears it (datasheet: within 2 KB);
        False if it did not within ``_CANCEL_CHUNKS`` chunks and ``_CANCEL_MS``."""
        try:
            self.sci_write(SCI_MODE, MODE_DEFAULT | SM_CANCEL)
            start = ticks_ms()
            sent = 0
            while sent < _CANCEL_CHUNKS and ticks_diff(ticks_ms(), start) < _CANCEL_MS:
                if not self._dreq.value():
                    continue
                self._xdcs.value(0)
                self._spi.write(self._zeros)
                self._xdcs.value(1)
                sent += 1
                if not self.sci_read(SCI_MODE) & SM_CANCEL:
                    return True
        except SinkError:
            pass
        return False

    def set_volume(self, volume):
        """Never raises (a volume command may arrive at any time): a chip that does not answer
        is reported by the next ``open``."""
        self.volume = volume
        if self._failed is not None:
            return
        try:
            self.sci_write(SCI_VOL, volume_register(volume))
        except SinkError as e:
            self._failed = str(e)
