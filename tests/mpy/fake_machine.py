"""A stand-in for MicroPython's ``machine`` module, enough for the audio sinks
(firmware/hw/vs1053.py, firmware/hw/i2s_adpcm.py), that keeps time like the hardware.

Not a test module (no ``test_`` functions): tests/mpy/sink_rig.py installs it as
``sys.modules["machine"]`` only while it imports the sinks, so no other test sees it.

- ``VS1053Chip``: the decoder behind ``SPI`` and the ``Pin`` objects on its wires. SCI
  registers (SCI_MODE read back, SCI_STATUS version 4, SM_CANCEL cleared after some data), and
  a 2048-byte SDI FIFO that plays out at the stream's bitrate (times ``speed``); DREQ is high
  while it has room for 32 bytes. ``present=False`` is an empty socket (MISO reads 0, DREQ
  floats high), ``stuck=True`` a DREQ line held low (``stuck_after``: once that much audio
  came in).
- ``I2S``: a DMA buffer of ``ibuf`` bytes that plays out at the sample rate (times ``SPEED``).
  The three modes of MicroPython's driver (extmod/machine_i2s.c, ports/esp32/machine_i2s.c):
  blocking by default, where ``write`` really sleeps until the buffer fits (the whole process
  stops, as the board's event loop would: counted in ``blocking_waits`` and
  ``max_blocked_ms``); asyncio once ``ioctl`` polled it (``write`` takes what fits); and
  non-blocking after ``irq(handler)``: ``write`` returns at once, a background copy (the
  driver's FreeRTOS task, here ``run_hardware``) moves the buffer into DMA memory as it frees
  up, then calls ``handler``. Its queue holds one buffer besides the one being copied; a write
  beyond that is dropped, as the ESP32's ``xQueueSend(..., 0)`` drops it (``dropped_writes``).

Everything that runs per frame here allocates nothing (small ints, preallocated objects), so
tests can measure the sinks' own allocation with ``gc.mem_alloc()``. Runs under CPython too.
"""

import time

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

try:
    from time import sleep_ms, ticks_diff, ticks_ms
except ImportError:  # CPython
    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        time.sleep(ms / 1000)

SPEED = 1  # how many times faster than real time the DMA and FIFO play out (tests of counts)

_inputs = {}   # GPIO -> bound method giving its level (DREQ)
_outputs = {}  # GPIO -> bound method told each level set (xCS, xDCS, RESET)
_chip = None   # the VS1053Chip on the SPI bus, if any


def reset_board():
    """Forget the chip, its wires and every I2S object (between tests)."""
    global _chip
    _inputs.clear()
    _outputs.clear()
    _chip = None
    del I2S.instances[:]


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1

    def __init__(self, gpio, mode=None, pull=None, value=None):
        self.gpio = gpio
        self.level = 1 if value is None else value

    def value(self, level=None):
        if level is None:
            read = _inputs.get(self.gpio)
            return self.level if read is None else read()
        self.level = level
        told = _outputs.get(self.gpio)
        if told is not None:
            told(self.gpio, level)
        return None


class SPI:
    def __init__(self, spi_id, baudrate=0, sck=None, mosi=None, miso=None):
        self.baudrate = baudrate

    def init(self, baudrate=0):
        self.baudrate = baudrate

    def write(self, buf):
        if _chip is not None:
            _chip.spi_write(buf)

    def write_readinto(self, out, into):
        if _chip is None:
            into[2] = into[3] = 0
        else:
            _chip.spi_read(out, into)


_FIFO_BYTES = 2048
_CANCEL_AFTER_BYTES = 256  # SDI data after SM_CANCEL until the chip clears it


class VS1053Chip:
    def __init__(self, xcs=5, xdcs=32, dreq=4, reset=33, kbps=32, speed=1, present=True,
                 stuck=False, stuck_after=-1, log=True, version=4):
        global _chip
        _chip = self
        self.xcs, self.xdcs, self.reset_gpio = xcs, xdcs, reset
        self.present = present
        self.stuck = stuck
        self.stuck_after = stuck_after  # audio bytes after which DREQ sticks low (-1: never)
        self.log = log
        self.version = version  # SCI_STATUS bits 7:4 (4: a VS1053; a VS1003 says 3)
        self.bytes_per_ms = kbps // 8 * speed  # every MP3 bitrate is a multiple of 8 kbit/s
        self.regs = [0] * 16
        self.sci_writes = []   # (register, value), in order
        self.sdi_bytes = 0     # audio bytes taken
        self.overruns = 0      # SDI writes while DREQ was low (the FIFO had no room)
        self.capture = None    # a bytearray to keep what came over SDI
        self.resets = 0
        self._fifo = 0
        self._t = ticks_ms()
        self._cancel_left = 0
        self._xcs_low = False
        self._xdcs_low = False
        self._reset_regs()
        _inputs[dreq] = self.dreq
        told = self._wire
        for gpio in (xcs, xdcs, reset):
            _outputs[gpio] = told

    def _reset_regs(self):
        for i in range(16):
            self.regs[i] = 0
        self.regs[0] = 0x4800  # SCI_MODE after reset (datasheet)
        self.regs[1] = self.version << 4  # SCI_STATUS: SS_VER
        self._fifo = 0

    def _play(self):
        now = ticks_ms()
        played = ticks_diff(now, self._t) * self.bytes_per_ms
        self._t = now
        self._fifo = self._fifo - played if played < self._fifo else 0

    def dreq(self):
        if self.stuck:
            return 0
        if not self.present:
            return 1  # floating: reads high
        self._play()
        return 1 if _FIFO_BYTES - self._fifo >= 32 else 0

    def _wire(self, gpio, level):
        if gpio == self.xcs:
            self._xcs_low = level == 0
        elif gpio == self.xdcs:
            self._xdcs_low = level == 0
        elif gpio == self.reset_gpio and level:
            self.resets += 1
            self._reset_regs()

    def spi_write(self, buf):
        if not self.present:
            return
        if self._xcs_low:
            if buf[0] == 0x02:
                value = (buf[2] << 8) | buf[3]
                self.regs[buf[1]] = value
                if self.log:
                    self.sci_writes.append((buf[1], value))
                if buf[1] == 0 and value & 0x0008:  # SM_CANCEL
                    self._cancel_left = _CANCEL_AFTER_BYTES
            return
        if self._xdcs_low:
            n = len(buf)
            if not self.dreq():
                self.overruns += 1
            self._fifo = self._fifo + n if self._fifo + n < _FIFO_BYTES else _FIFO_BYTES
            self.sdi_bytes += n
            if 0 <= self.stuck_after <= self.sdi_bytes:
                self.stuck = True
            if self.capture is not None:
                self.capture += buf
            if self._cancel_left:
                self._cancel_left = self._cancel_left - n if n < self._cancel_left else 0
                if not self._cancel_left:
                    self.regs[0] &= ~0x0008
                    self._fifo = 0  # the decoder dropped its buffer

    def spi_read(self, out, into):
        value = self.regs[out[1] & 15] if self.present and out[0] == 0x03 else 0
        into[2] = value >> 8
        into[3] = value & 0xFF


class I2S:
    TX = 5
    RX = 4
    MONO = 0
    STEREO = 1
    instances = []   # the ones not deinit'ed: run_hardware serves them
    RECORD = False   # keep what is played in .played (allocates: not for allocation tests)
    LOSE_HANDLER = -1  # the n-th handler call (from 0) never comes, as when mp_sched_schedule
                       # finds the scheduler's queue full

    def __init__(self, i2s_id, sck=None, ws=None, sd=None, mode=5, bits=16, format=0,
                 rate=16000, ibuf=16000):
        self.rate = rate
        self.ibuf = ibuf
        self.level = 0            # bytes in DMA memory, not yet played
        self.played = bytearray() if I2S.RECORD else None
        self.handler = None       # set by irq(): non-blocking mode
        self.asyncio_mode = False
        self.blocking_waits = 0   # writes that stopped everything until the DMA had room
        self.max_blocked_ms = 0
        self.dropped_writes = 0
        self.bytes_written = 0
        self.handler_calls = 0
        self.closed = False
        self._t = ticks_ms()
        self._frac = 0
        self._copy_buf = None     # what the background copy is moving into DMA memory
        self._copy_off = 0
        self._copy_left = 0
        self._queued_buf = None   # the one buffer waiting behind it
        self._queued_off = 0
        self._queued_len = 0
        I2S.instances.append(self)

    def _play(self):
        now = ticks_ms()
        elapsed = ticks_diff(now, self._t)
        self._t = now
        if elapsed > 10000:  # keeps the product a small int; the buffer is empty by then
            elapsed = 10000
        acc = elapsed * 2 * self.rate * SPEED + self._frac
        played = acc // 1000
        self._frac = acc % 1000
        self.level = self.level - played if played < self.level else 0

    def _accept(self, buf, off, n):
        self.level += n
        self.bytes_written += n
        if self.played is not None:
            self.played += memoryview(buf)[off:off + n]

    def irq(self, handler):
        self.handler = handler

    def ioctl(self, request, flags):  # MP_STREAM_POLL (3) puts the driver in asyncio mode
        self.asyncio_mode = True
        self._play()
        return flags if self.level < self.ibuf else 0

    def write(self, buf, off=0, n=-1):
        if n < 0:
            n = len(buf) - off
        if self.handler is not None:  # non-blocking: hand it to the background copy
            if self._copy_buf is None:
                self._copy_buf, self._copy_off, self._copy_left = buf, off, n
            elif self._queued_buf is None:
                self._queued_buf, self._queued_off, self._queued_len = buf, off, n
            else:
                self.dropped_writes += 1
            return n
        self._play()
        room = self.ibuf - self.level
        if self.asyncio_mode:
            n = n if n < room else room
        elif n > room:  # blocking mode: the caller stops until the DMA has played enough
            wait = ((n - room) * 1000 + 2 * self.rate * SPEED - 1) // (2 * self.rate * SPEED)
            start = ticks_ms()
            sleep_ms(wait)
            blocked = ticks_diff(ticks_ms(), start)
            self.blocking_waits += 1
            if blocked > self.max_blocked_ms:
                self.max_blocked_ms = blocked
            self._play()
        self._accept(buf, off, n)
        return n

    def service(self):
        """The driver's background task: copy into DMA memory what fits, call the handler
        once a buffer is all in (as ``mp_sched_schedule`` would, between Python steps)."""
        if self._copy_buf is None:
            return
        self._play()
        room = self.ibuf - self.level
        take = self._copy_left if self._copy_left < room else room
        if take > 0:
            self._accept(self._copy_buf, self._copy_off, take)
            self._copy_off += take
            self._copy_left -= take
        if self._copy_left:
            return
        self._copy_buf = self._queued_buf
        self._copy_off, self._copy_left = self._queued_off, self._queued_len
        self._queued_buf = None
        self.handler_calls += 1
        if self.handler_calls - 1 != I2S.LOSE_HANDLER:
            self.handler(self)

    def deinit(self):
        self.closed = True
        self._copy_buf = self._queued_buf = None
        self.level = 0
        if self in I2S.instances:
            I2S.instances.remove(self)

    @staticmethod
    def shift(buf, bits, shift):
        for i in range(0, len(buf) - 1, 2):
            v = buf[i] | (buf[i + 1] << 8)
            if v & 0x8000:
                v -= 0x10000
            v = v << shift if shift >= 0 else v >> -shift
            buf[i] = v & 0xFF
            buf[i + 1] = (v >> 8) & 0xFF


async def _sleep_ms(ms):
    await asyncio.sleep(ms / 1000)


async def run_hardware(period_ms=1):
    """The board's background work (the I2S driver's task): run it as a task while a sink
    plays, cancel it after. Allocates nothing per round on MicroPython."""
    sleep = getattr(asyncio, "sleep_ms", None) or _sleep_ms
    while True:
        for i2s in I2S.instances:
            i2s.service()
        await sleep(period_ms)
