"""Bytes allocated per audio frame in both sinks' play paths, under MicroPython.

    MICROPYPATH=.frozen:.:tests/mpy build/micropython-esp32like -X heapsize=2m bench/mp_sink_alloc.py

Prints one JSON line::

    {"vs1053_mp3": 0.0, "i2s_adpcm": 0.0, "shell_mp3": 0.0, "shell_adpcm": 0.0,
     "vs1053_heap": ..., "i2s_heap": ..., "frames": ..., "adpcm_decoder": "viper", ...}

- ``vs1053_mp3``: ``VS1053Sink.write`` per MP3 frame (144-byte frames, 32 kbit/s, 16 kHz);
- ``i2s_adpcm``: ``I2SAdpcmSink.write`` per 256-byte IMA-ADPCM block (decode, volume shift,
  hand-over to the I2S driver);
- ``shell_mp3`` / ``shell_adpcm``: the player's file loops (``Player._stream_mp3`` with
  ``FrameReader``, ``Player._stream_adpcm`` with 2 KB reads, firmware/player.py) around each sink, per frame;
- ``vs1053_heap`` / ``i2s_heap``: bytes of heap each sink keeps from its construction (its
  preallocated buffers and views; the I2S DMA buffer is the driver's, outside this heap).

Per frame is a difference of two plays (``2n`` and ``n`` frames, the collector off), so what
a play costs once cancels out (tests/mpy/sink_rig.py). The board is tests/mpy/fake_machine.py,
which keeps time like the hardware at a multiple of real speed and allocates nothing per frame
itself. The same measurements are asserted to be 0 by tests/mpy/test_sinks.py.
"""

import json
import sys

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

import fake_machine
import sink_rig

FRAMES = 40


async def measure():
    vs1053, i2s_adpcm = sink_rig.load_sinks()
    from firmware.adpcm import IMPLEMENTATION

    fake_machine.SPEED = 20
    out = {
        "vs1053_mp3": await sink_rig.vs1053_write_per_frame(vs1053, FRAMES),
        "i2s_adpcm": await sink_rig.i2s_write_per_frame(i2s_adpcm, FRAMES),
        "shell_mp3": await sink_rig.shell_mp3_per_frame(vs1053, "/tmp/loaxa-sink-bench", FRAMES),
        "shell_adpcm": await sink_rig.shell_adpcm_per_frame(i2s_adpcm, "/tmp/loaxa-sink-bench",
                                                            FRAMES),
    }
    fake_machine.reset_board()
    fake_machine.VS1053Chip(log=False)
    out["vs1053_heap"] = sink_rig.preallocated(lambda: vs1053.VS1053Sink(2, *sink_rig.VS_PINS))[0]
    fake_machine.reset_board()
    out["i2s_heap"] = sink_rig.preallocated(lambda: i2s_adpcm.I2SAdpcmSink(0, *sink_rig.I2S_PINS))[0]
    out["frames"] = FRAMES
    out["adpcm_decoder"] = IMPLEMENTATION
    out["mp3_frame_bytes"] = sink_rig.MP3_FRAME_BYTES
    out["adpcm_block_bytes"] = sink_rig.ADPCM_BLOCK
    out["micropython"] = "%d.%d.%d" % sys.implementation.version[:3]
    print(json.dumps(out))


if not sink_rig.measures_allocation():
    print(json.dumps({"error": "gc.mem_alloc is missing: run this under MicroPython"}))
    sys.exit(1)
asyncio.run(measure())
