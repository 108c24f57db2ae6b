"""VS1053 MP3 decoder over SPI: the Sink for MP3 receivers (MP3 bytes passed through as they are).

Wiring (pins from config "pins"): SCK/MOSI/MISO (SPI bus), xCS (command chip select), xDCS
(data chip select), DREQ (high when the chip can take at least 32 data bytes), RESET.

Commands go over SCI (xCS low, 4 bytes: write opcode 0x02, register, value high, low); audio
over SDI (xDCS low, 32-byte chunks while DREQ is high). ``write`` awaits while DREQ is low, so
the event loop runs while the chip's FIFO drains: that is the real-time pacing.

A late start skips whole MP3 frames: the shell seeks whole frames in the file and passes the
remainder (less than one frame) as ``skip_samples``; the chip cannot drop part of a frame, so
the sink drops one more frame when the remainder is at least half a frame. The start error is
then at most half a frame (18 ms at 16 kHz MPEG-2, 13 ms at 44.1 kHz MPEG-1).
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

from machine import SPI, Pin

from firmware.mp3 import frame_info
from firmware.platform import Sink

SCI_WRITE = 0x02
SCI_READ = 0x03
SCI_MODE = 0x00
SCI_STATUS = 0x01
SCI_CLOCKF = 0x03
SCI_VOL = 0x0B

SM_RESET = 0x0004
SM_CANCEL = 0x0008
SM_SDINEW = 0x0800
MODE_DEFAULT = SM_SDINEW
# CLOCKF: SC_MULT = 4.5x (0xE000) with SC_ADD = 0: 55 MHz internal clock from a 12.288 MHz
# crystal, enough for 320 kbit/s MP3 (datasheet section 9.6.4).
CLOCKF_DEFAULT = 0xE000
VOLUME_MUTE = 0xFE  # analog power-down value of each channel's attenuation byte
CHUNK = 32          # bytes the chip always accepts while DREQ is high
_SLOW_SPI_HZ = 1000000   # before CLOCKF is set: the chip runs from the bare crystal
_FAST_SPI_HZ = 8000000   # SDI after CLOCKF (CLKI/7 at 55 MHz)
_CANCEL_CHUNKS = 64      # zero chunks sent while waiting for SM_CANCEL to clear (2 KB)


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


def frames_to_drop(skip_samples, rate):
    """Whole frames to drop for a late start of ``skip_samples``, rounded to the nearest
    frame (the chip cannot start inside a frame)."""
    spf = samples_per_frame(rate)
    return (skip_samples + spf // 2) // spf


class VS1053Sink(Sink):
    codecs = ("mp3",)
    name = "vs1053"
    rates = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

    def __init__(self, spi_id, sck, mosi, miso, xcs, xdcs, dreq, reset):
        self._spi = SPI(spi_id, baudrate=_SLOW_SPI_HZ, sck=Pin(sck), mosi=Pin(mosi),
                        miso=Pin(miso))
        self._xcs = Pin(xcs, Pin.OUT, value=1)
        self._xdcs = Pin(xdcs, Pin.OUT, value=1)
        self._dreq = Pin(dreq, Pin.IN)
        self._reset = Pin(reset, Pin.OUT, value=1)
        self._cmd = bytearray(4)
        self._zeros = bytearray(CHUNK)
        self._drop = 0
        self.volume = 70
        self.is_open = False
        self.bytes_written = 0
        self.hard_reset()

    # -- SCI -------------------------------------------------------------------------------

    def _wait_dreq(self, spins=100000):
        while not self._dreq.value() and spins:
            spins -= 1

    def sci_write(self, reg, value):
        self._wait_dreq()
        cmd = self._cmd
        cmd[0] = SCI_WRITE
        cmd[1] = reg
        cmd[2] = (value >> 8) & 0xFF
        cmd[3] = value & 0xFF
        self._xcs.value(0)
        self._spi.write(cmd)
        self._xcs.value(1)

    def sci_read(self, reg):
        self._wait_dreq()
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
        self._reset.value(0)
        self._reset.value(1)
        self._wait_dreq()
        self._spi.init(baudrate=_SLOW_SPI_HZ)
        self.sci_write(SCI_MODE, MODE_DEFAULT)
        self.sci_write(SCI_CLOCKF, CLOCKF_DEFAULT)
        self._spi.init(baudrate=_FAST_SPI_HZ)
        self.sci_write(SCI_VOL, volume_register(self.volume))

    # -- Sink ------------------------------------------------------------------------------

    def open(self, codec, rate, skip_samples=0):
        if codec != "mp3":
            raise ValueError("VS1053 sink plays mp3 only")
        self._drop = frames_to_drop(skip_samples, rate)
        self.bytes_written = 0
        self.is_open = True

    async def write(self, buf):
        """Whole MP3 frames (the shell and live frames hand over whole frames)."""
        mv = memoryview(buf)
        n = len(mv)
        off = 0
        while self._drop and off + 4 <= n:
            info = frame_info(mv[off], mv[off + 1], mv[off + 2])
            if info is None:
                break
            off += info[0]
            self._drop -= 1
        while off < n:
            if not self._dreq.value():
                await asyncio.sleep(0.002)
                continue
            end = min(n, off + CHUNK)
            self._xdcs.value(0)
            self._spi.write(mv[off:end])
            self._xdcs.value(1)
            self.bytes_written += end - off
            off = end

    async def drain(self):
        # The chip's 2 KB FIFO: at most ~0.5 s at 32 kbit/s. Feed end-fill bytes so the last
        # frame is decoded, then wait for the FIFO to run empty (DREQ stays high).
        for _ in range(_CANCEL_CHUNKS):
            await self.write(self._zeros)

    def close(self):
        self.is_open = False

    def stop(self):
        """Cut the audio now: SM_CANCEL, then zeros until the chip has dropped its buffer."""
        if not self.is_open:
            return
        self.is_open = False
        self._drop = 0
        self.sci_write(SCI_MODE, MODE_DEFAULT | SM_CANCEL)
        for _ in range(_CANCEL_CHUNKS):
            self._wait_dreq(1000)
            self._xdcs.value(0)
            self._spi.write(self._zeros)
            self._xdcs.value(1)
            if not self.sci_read(SCI_MODE) & SM_CANCEL:
                return
        self.hard_reset()  # the chip did not acknowledge the cancel: start it afresh

    def set_volume(self, volume):
        self.volume = volume
        self.sci_write(SCI_VOL, volume_register(volume))
