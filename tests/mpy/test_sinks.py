"""The two audio sinks (firmware/hw/vs1053.py, firmware/hw/i2s_adpcm.py) and the shell's file
loops around them, on a fake board that keeps time like the hardware (tests/mpy/fake_machine.py):
the VS1053's clock, presence check and stuck DREQ; the I2S sink never holding the event loop;
nothing allocated per audio frame (``gc.mem_alloc()``, MicroPython only).

Plain functions and asserts (see tests/mpy/): run by pytest, the WebAssembly MicroPython and
the ESP32-model MicroPython. Assertions are on counts the fake keeps (blocking calls, bytes,
overruns) and on allocation, never on how fast this machine happens to be.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

try:
    import fake_machine
    import sink_rig
except ImportError:  # CPython: pytest imports tests/mpy as a package
    from . import fake_machine, sink_rig

from firmware.adpcm import decode_block, samples_in_block
from firmware.platform import SinkError

vs1053, i2s_adpcm = sink_rig.load_sinks()

# SCI_CLOCKF, datasheet 9.6.4: CLKI = XTALI x SC_MULT's multiplier (+ SC_ADD's, for WMA/AAC),
# in tenths; the crystal in kHz; CLKI at most 55.3 MHz.
CLOCK_MULT_X10 = (10, 20, 25, 30, 35, 40, 45, 50)
CLOCK_ADD_X10 = (0, 10, 15, 20)
XTALI_KHZ = 12288
CLKI_MAX_KHZ_X10 = 553000


def raises(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type as e:
        return str(e)
    raise AssertionError("%s not raised" % exc_type.__name__)


# -- VS1053 --------------------------------------------------------------------------------


def test_vs1053_clock_and_spi_speed_stay_within_the_datasheet():
    sink, chip = sink_rig.new_vs1053(vs1053)
    clockf = chip.regs[3]
    assert (3, clockf) in chip.sci_writes
    mult = CLOCK_MULT_X10[(clockf >> 13) & 7]
    add = CLOCK_ADD_X10[(clockf >> 11) & 3]
    assert XTALI_KHZ * (mult + add) <= CLKI_MAX_KHZ_X10, hex(clockf)  # the most it may run at
    assert clockf == 0x8800  # the datasheet's recommendation: 3.5x, +1.0x for WMA/AAC
    # SCI reads at most CLKI/7 (the slowest of the SPI limits) at the clock MP3 runs at.
    assert sink._spi.baudrate * 7 * 10 <= XTALI_KHZ * mult * 1000


def test_vs1053_refuses_an_empty_socket_naming_the_chip_and_its_wires():
    fake_machine.reset_board()
    fake_machine.VS1053Chip(present=False)
    message = raises(SinkError, vs1053.VS1053Sink, 2, *sink_rig.VS_PINS)
    assert message.startswith("vs1053: no chip answers"), message
    assert "SCI_MODE" in message and "MISO GPIO19" in message and "xCS GPIO5" in message


def test_vs1053_refuses_a_dreq_that_stays_low_after_reset():
    fake_machine.reset_board()
    fake_machine.VS1053Chip(stuck=True)
    message = raises(SinkError, vs1053.VS1053Sink, 2, *sink_rig.VS_PINS)
    assert message.startswith("vs1053: DREQ stays low after reset"), message
    assert "DREQ (GPIO4)" in message and "RESET (GPIO33)" in message


def test_vs1053_refuses_another_chip_of_the_family():
    fake_machine.reset_board()
    fake_machine.VS1053Chip(version=3)  # a VS1003 answers, but is not what the config says
    message = raises(SinkError, vs1053.VS1053Sink, 2, *sink_rig.VS_PINS)
    assert "not a VS1053" in message and "version 3" in message, message


async def test_vs1053_feeds_the_fifo_only_while_dreq_is_high():
    sink, chip = sink_rig.new_vs1053(vs1053, speed=8)
    chip.capture = bytearray()
    data = sink_rig.mp3_frames(40)  # 5.8 KB: three FIFOs' worth, so DREQ paces the writes
    sink.open("mp3", sink_rig.MP3_RATE, 0)
    for frame in sink_rig.views(data, sink_rig.MP3_FRAME_BYTES):
        await sink.write(frame)
    await sink.drain()
    sink.close()
    assert chip.overruns == 0
    assert bytes(chip.capture[:len(data)]) == data
    assert chip.capture[len(data):] == bytearray(len(chip.capture) - len(data))  # end fill
    assert sink.bytes_written == len(chip.capture)


async def test_vs1053_late_start_drops_the_first_frame_of_the_stage():
    sink, chip = sink_rig.new_vs1053(vs1053, speed=50)
    chip.capture = bytearray()
    data = sink_rig.mp3_frames(3)
    sink.open("mp3", sink_rig.MP3_RATE, skip_samples=400)  # over half a 576-sample frame
    await sink.write(data)
    await sink.drain()
    assert bytes(chip.capture[:2 * sink_rig.MP3_FRAME_BYTES]) == data[sink_rig.MP3_FRAME_BYTES:]


async def test_vs1053_dreq_stuck_low_mid_play_fails_with_a_reason():
    sink, chip = sink_rig.new_vs1053(vs1053, speed=4, stuck_after=3000)
    sink.open("mp3", sink_rig.MP3_RATE, 0)
    failures = []

    async def play():
        try:
            for frame in sink_rig.views(sink_rig.mp3_frames(60), sink_rig.MP3_FRAME_BYTES):
                await sink.write(frame)
        except SinkError as e:
            failures.append(str(e))

    # Bounded: a full FIFO at 32 kbit/s plays in 0.5 s, the sink gives up 0.3 s after that.
    # (A deadline of our own: asyncio.wait_for does not work in the WebAssembly port's tests.)
    task = asyncio.create_task(play())
    waited = 0
    while not task.done() and waited < 5000:
        await asyncio.sleep(0.05)
        waited += 50
    if not task.done():
        task.cancel()
    assert failures == ["vs1053: DREQ stuck low"], "no failure within 5 s: %r" % failures
    assert chip.overruns == 0
    sink.stop()  # never raises, even with the chip gone
    # The next play tries a reset and says why it cannot start.
    message = raises(SinkError, sink.open, "mp3", sink_rig.MP3_RATE, 0)
    assert message.startswith("vs1053: DREQ stays low after reset"), message
    sink.set_volume(50)  # a volume command meanwhile does not raise either


async def test_vs1053_stop_cancels_then_plays_again():
    sink, chip = sink_rig.new_vs1053(vs1053, speed=4)
    sink.open("mp3", sink_rig.MP3_RATE, 0)
    for frame in sink_rig.views(sink_rig.mp3_frames(20), sink_rig.MP3_FRAME_BYTES):
        await sink.write(frame)
    resets = chip.resets
    sink.stop()
    assert (0, vs1053.SM_SDINEW | vs1053.SM_CANCEL) in chip.sci_writes
    assert chip.resets == resets  # the chip acknowledged the cancel: no reset needed
    sink.open("mp3", sink_rig.MP3_RATE, 0)
    await sink.write(sink_rig.mp3_frames(1))
    assert chip.overruns == 0


# -- I2S -----------------------------------------------------------------------------------


async def test_i2s_sink_never_holds_the_event_loop():
    """24 blocks at 16 kHz (0.76 s) into a 0.5 s DMA buffer at real speed: the driver's DMA is
    full after 16, then every write waits for room. It must wait by yielding, never inside
    ``I2S.write``. (The sink before this fix wrote through asyncio.StreamWriter, which calls
    I2S.write at once: in blocking mode that held the loop ~30 ms per block.)"""
    fake_machine.SPEED = 1
    sink = sink_rig.new_i2s(i2s_adpcm)
    blocks = sink_rig.views(sink_rig.adpcm_blocks(24), sink_rig.ADPCM_BLOCK)
    probe = sink_rig.LatenessProbe(period_ms=5)
    probing = asyncio.create_task(probe.run())

    async def play():
        sink.open("adpcm", sink_rig.ADPCM_RATE, 0)
        for block in blocks:
            await sink.write(block)

    await sink_rig.with_hardware(play())
    probing.cancel()
    i2s = sink._i2s
    late = "the probe woke up to %d ms late" % probe.max_late_ms  # information, not asserted
    assert i2s.blocking_waits == 0 and i2s.max_blocked_ms == 0, late
    assert i2s.dropped_writes == 0
    assert i2s.bytes_written >= 23 * 2 * samples_in_block(sink_rig.ADPCM_BLOCK), late
    assert probe.wakeups > 0
    sink.stop()


async def test_i2s_sink_plays_the_decoded_blocks_from_the_late_start_on():
    fake_machine.SPEED = 20
    fake_machine.I2S.RECORD = True
    try:
        sink = sink_rig.new_i2s(i2s_adpcm)
        data = sink_rig.adpcm_blocks(4)
        sink.set_volume(100)

        async def play():
            sink.open("adpcm", sink_rig.ADPCM_RATE, skip_samples=100)
            await sink.write(data[:512])
            await sink.write(data[512:])
            await sink.drain()

        await sink_rig.with_hardware(play())
        i2s = sink._i2s
    finally:
        fake_machine.I2S.RECORD = False
        fake_machine.SPEED = 1
    per_block = samples_in_block(sink_rig.ADPCM_BLOCK)
    expected = bytearray()
    pcm = bytearray(2 * per_block)
    for start in range(0, len(data), sink_rig.ADPCM_BLOCK):
        decode_block(data[start:start + sink_rig.ADPCM_BLOCK], pcm)
        expected += pcm
    assert bytes(i2s.played) == bytes(expected[200:])  # the first 100 samples skipped
    assert sink.samples_written == 4 * per_block - 100
    assert i2s.dropped_writes == 0 and i2s.blocking_waits == 0


async def test_i2s_volume_shifts_and_mute_still_plays_in_real_time():
    fake_machine.SPEED = 20
    fake_machine.I2S.RECORD = True
    try:
        sink = sink_rig.new_i2s(i2s_adpcm)
        data = sink_rig.adpcm_blocks(2)

        async def play(volume):
            sink.set_volume(volume)
            sink.open("adpcm", sink_rig.ADPCM_RATE, 0)
            await sink.write(data)
            await sink.drain()
            return sink._i2s.played

        loud = bytes(await sink_rig.with_hardware(play(100)))
        sink.stop()
        quiet = bytes(await sink_rig.with_hardware(play(40)))  # -3 bits
        sink.stop()
        muted = bytes(await sink_rig.with_hardware(play(0)))
    finally:
        fake_machine.I2S.RECORD = False
        fake_machine.SPEED = 1

    def sample(buf, i):
        v = buf[2 * i] | (buf[2 * i + 1] << 8)
        return v - 0x10000 if v & 0x8000 else v

    n = len(loud) // 2
    assert len(quiet) == len(muted) == len(loud)  # a muted item still takes its time
    assert all(sample(quiet, i) == sample(loud, i) >> 3 for i in range(n))
    assert all(sample(muted, i) in (0, -1) for i in range(n))


async def test_i2s_sink_goes_on_when_the_driver_handler_is_lost():
    """MicroPython drops a scheduled handler when its queue is full: the sink must not wait for
    it forever, but go on once the buffer has played out for sure."""
    fake_machine.SPEED = 1
    fake_machine.I2S.LOSE_HANDLER = 2
    try:
        sink = sink_rig.new_i2s(i2s_adpcm)
        blocks = sink_rig.views(sink_rig.adpcm_blocks(6), sink_rig.ADPCM_BLOCK)

        async def play():
            sink.open("adpcm", sink_rig.ADPCM_RATE, 0)
            for block in blocks:
                await sink.write(block)
            await sink.drain()

        await sink_rig.with_hardware(play())
    finally:
        fake_machine.I2S.LOSE_HANDLER = -1
    i2s = sink._i2s
    assert i2s.bytes_written == 6 * 2 * samples_in_block(sink_rig.ADPCM_BLOCK)
    assert i2s.dropped_writes == 0 and i2s.blocking_waits == 0
    sink.stop()


def test_decode_block_by_offsets_matches_a_slice():
    data = sink_rig.adpcm_blocks(3)
    per_block = samples_in_block(sink_rig.ADPCM_BLOCK)
    by_offset = bytearray(2 * per_block)
    by_slice = bytearray(2 * per_block)
    assert decode_block(data, by_offset, 256, 512) == per_block
    decode_block(data[256:512], by_slice)
    assert by_offset == by_slice
    assert decode_block(data, by_offset, 512, 600) == decode_block(data[512:600], by_slice)
    assert by_offset[:2 * 169] == by_slice[:2 * 169]


# -- nothing allocated per frame -----------------------------------------------------------
# (The figures themselves: bench/mp_sink_alloc.py.)


async def test_vs1053_write_allocates_nothing_per_frame():
    if not sink_rig.measures_allocation():  # CPython
        return
    per_frame = await sink_rig.vs1053_write_per_frame(vs1053)
    assert per_frame == 0, "%s bytes per MP3 frame" % per_frame


async def test_i2s_write_allocates_nothing_per_block():
    if not sink_rig.measures_allocation():
        return
    fake_machine.SPEED = 20
    try:
        per_block = await sink_rig.i2s_write_per_frame(i2s_adpcm)
    finally:
        fake_machine.SPEED = 1
    assert per_block == 0, "%s bytes per ADPCM block" % per_block


async def test_the_shell_mp3_file_loop_allocates_nothing_per_frame():
    if not sink_rig.measures_allocation():
        return
    per_frame = await sink_rig.shell_mp3_per_frame(vs1053, "/tmp/loaxa-sink-test")
    assert per_frame == 0, "%s bytes per MP3 frame" % per_frame


async def test_the_shell_adpcm_file_loop_allocates_nothing_per_block():
    if not sink_rig.measures_allocation():
        return
    fake_machine.SPEED = 20
    try:
        per_block = await sink_rig.shell_adpcm_per_frame(i2s_adpcm, "/tmp/loaxa-sink-test")
    finally:
        fake_machine.SPEED = 1
    assert per_block == 0, "%s bytes per ADPCM block" % per_block


# -- the periodic test's self-tests ---------------------------------------------------------

async def test_vs1053_self_test_runs_the_chips_sine_test_quietly_and_fails_an_empty_socket():
    sink, chip = sink_rig.new_vs1053(vs1053)
    chip.capture = bytearray()
    del chip.sci_writes[:]
    await sink.self_test(-30, 20)
    assert chip.sci_writes == [(0, vs1053.SM_SDINEW | vs1053.SM_TESTS), (0x0B, 0x3C3C),
                               (0, vs1053.SM_SDINEW), (0x0B, vs1053.volume_register(70))]
    assert bytes(chip.capture) == vs1053._SINE_ON + vs1053._SINE_OFF
    sink.open("mp3", sink_rig.MP3_RATE, 0)  # plays as before
    await sink.write(sink_rig.mp3_frames(1))
    assert chip.overruns == 0
    sink.stop()
    chip.present = False
    error = None
    try:
        await sink.self_test(-30, 20)
    except SinkError as e:
        error = str(e)
    assert error is not None and "no chip answers" in error


async def test_i2s_self_test_sends_a_quiet_tone_through_the_driver():
    fake_machine.I2S.RECORD = True
    try:
        sink = sink_rig.new_i2s(i2s_adpcm)
        made = []
        start_i2s = sink._start_i2s

        def start(rate):
            start_i2s(rate)
            made.append(sink._i2s)

        sink._start_i2s = start
        await sink_rig.with_hardware(sink.self_test(-30, 100))
    finally:
        fake_machine.I2S.RECORD = False
    played = made[0].played
    assert len(played) == 2 * 800  # 100 ms at 8 kHz, 16-bit
    assert played[0] | (played[1] << 8) == 1023  # about -30 dBFS
    assert sink._i2s is None  # the driver released after
