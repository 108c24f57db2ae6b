"""IMA-ADPCM block decoder, the one the receiver runs in front of its I2S DAC.

Blocks have the layout of ``protocol.media`` (IMA WAV, mono): s16 LE first sample, u8 step
index, u8 0, then 4-bit codes low nibble first. Every block carries its own predictor state, so
any block decodes alone and a lost block costs only its own 31.6 ms (at 16 kHz).

``decode_block(block, out[, start, end])`` writes 16-bit little-endian PCM into the
preallocated ``out`` (a bytearray of at least ``2 * samples_in_block(len(block))`` bytes) and
returns the number of samples; ``start``/``end`` pick one block out of a longer buffer without
slicing it. It allocates nothing per call, so it can run in the audio path on a ~100 KB heap.

The arithmetic is ffmpeg's (``diff = (2 * magnitude + 1) * step >> 3``), so this decoder's
output is bit-identical to ffmpeg's IMA WAV decoder and to what the encoder predicted.

Two implementations of the same algorithm:
- ``_decode_python``: plain Python, runs anywhere (CPython, MicroPython bytecode, the
  MicroPython-wasm test runner). Tests use it.
- ``firmware.adpcm_viper``: a ``@micropython.viper`` version (native code, ~20x faster on an
  ESP32). It lives in its own module because a port without a native emitter (wasm) refuses
  the decorator when *compiling* the module; importing it inside try/except lets such a port
  fall back to the plain path instead of failing to import this module.

The encoder side (head-end) is ``audio.adpcm``; it imports ``STEP_TABLE`` from here, so the two
sides cannot disagree on the table.
"""

from protocol.media import ADPCM_HEADER_BYTES as HEADER_BYTES
from protocol.media import adpcm_samples_per_block

# The IMA step table (89 entries) and the step-index change per 3-bit code magnitude.
STEP_TABLE = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45,
    50, 55, 60, 66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307,
    337, 371, 408, 449, 494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552,
    1707, 1878, 2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484,
    7132, 7845, 8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385,
    24623, 27086, 29794, 32767)
INDEX_TABLE = (-1, -1, -1, -1, 2, 4, 6, 8)
MAX_STEP_INDEX = 88

# The step table as little-endian u16 bytes, for the viper path (ptr16 indexing). Immutable.
STEP_TABLE_LE16 = b"".join(bytes((s & 0xFF, s >> 8)) for s in STEP_TABLE)


def samples_in_block(nbytes):
    """Samples a block of ``nbytes`` bytes decodes to (0 if it is shorter than its header)."""
    if nbytes < HEADER_BYTES:
        return 0
    return adpcm_samples_per_block(nbytes)


def _decode_python(block, start, end, out):
    pred = block[start] | (block[start + 1] << 8)
    if pred & 0x8000:
        pred -= 0x10000
    idx = block[start + 2]
    if idx > MAX_STEP_INDEX:
        idx = MAX_STEP_INDEX
    out[0] = pred & 0xFF
    out[1] = (pred >> 8) & 0xFF
    o = 2
    steps = STEP_TABLE
    for i in range(start + HEADER_BYTES, end):
        byte = block[i]
        # Two codes per byte, low nibble first. Unrolled by hand: a nested loop or a helper
        # call costs more than the arithmetic in MicroPython bytecode.
        # diff = (2 * magnitude + 1) * step / 8: the multiplying form (ffmpeg's), not the
        # reference's sum of shifted steps, which rounds differently. Our encoder (ffmpeg's
        # adpcm_ima_wav) predicts with this form, so encoder and decoder stay bit-exact.
        code = byte & 15
        diff = ((((code & 7) << 1) + 1) * steps[idx]) >> 3
        if code & 8:
            pred -= diff
            if pred < -32768:
                pred = -32768
        else:
            pred += diff
            if pred > 32767:
                pred = 32767
        if (code & 7) < 4:
            idx = idx - 1 if idx > 0 else 0
        else:
            idx += ((code & 7) - 3) * 2
            if idx > MAX_STEP_INDEX:
                idx = MAX_STEP_INDEX
        out[o] = pred & 0xFF
        out[o + 1] = (pred >> 8) & 0xFF
        code = byte >> 4
        diff = ((((code & 7) << 1) + 1) * steps[idx]) >> 3
        if code & 8:
            pred -= diff
            if pred < -32768:
                pred = -32768
        else:
            pred += diff
            if pred > 32767:
                pred = 32767
        if (code & 7) < 4:
            idx = idx - 1 if idx > 0 else 0
        else:
            idx += ((code & 7) - 3) * 2
            if idx > MAX_STEP_INDEX:
                idx = MAX_STEP_INDEX
        out[o + 2] = pred & 0xFF
        out[o + 3] = (pred >> 8) & 0xFF
        o += 4
    return (end - start - HEADER_BYTES) * 2 + 1


try:
    from firmware import adpcm_viper

    # A viper function takes at most 4 arguments on the MicroPython versions a board may run
    # (block, start, end, out), so the step table reaches it as a module global, set here: the
    # native decoder uses the one table this module defines.
    adpcm_viper.STEPS_LE16 = STEP_TABLE_LE16
    _decode_native = adpcm_viper.decode_viper
    IMPLEMENTATION = "viper"
except (ImportError, SyntaxError, NotImplementedError, ValueError):
    # CPython (no `micropython` module) or a port without native code (wasm): plain Python.
    _decode_native = None
    IMPLEMENTATION = "python"


def decode_block(block, out, start=0, end=-1):
    """Decode one block into ``out`` (16-bit LE PCM); return the number of samples written.

    The block is ``block[start:end]`` (``end`` -1: to the end), given by offsets because a
    memoryview slice allocates in MicroPython and the I2S sink decodes every block of what it
    is handed in place. ``block`` may be bytes, bytearray or a memoryview; a short last block
    is decoded as far as it goes. ``out`` must hold ``2 * samples_in_block(end - start)`` bytes.
    """
    if end < 0:
        end = len(block)
    if end - start < HEADER_BYTES:
        return 0
    if _decode_native is not None:
        return _decode_native(block, start, end, out)
    return _decode_python(block, start, end, out)
