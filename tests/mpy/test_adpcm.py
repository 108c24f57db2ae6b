# The receiver's IMA-ADPCM block decoder (firmware/adpcm.py), on vectors made by ffmpeg.
# Runs under CPython (pytest) and under MicroPython (tools/mptest): plain asserts, no pytest.

import binascii
import gc

from firmware.adpcm import IMPLEMENTATION, decode_block, samples_in_block

# 14.25 ms of 0.6*sin(700 Hz) + 0.3*sin(2300 Hz) at 8 kHz, encoded by
#   ffmpeg -i vec.wav -c:a adpcm_ima_wav -block_size 32 -map 0:a -f data vec.adpcm
# (two 32-byte blocks of 57 samples), and what ffmpeg's own decoder makes of them.
VECTOR = binascii.unhexlify(
    "000000007777f7ffdf1738d11abb2428960ae828881589b11ca86388828da049"
    "ea12540028b31cda3008060ad019905309a10da86080129ca03b9373b8918d82")
EXPECTED = (
    0, 13, 43, 106, 242, 536, -95, -1452, -4362, -10600, -20406, -828, 7566, 5023, 21210,
    27516, 6494, -7496, 135, -16052, -30767, -13567, -2005, -4107, 5448, 28033, 18800, 4810,
    7353, 5041, -22288, -26012, -9084, -12161, -14959, 13022, 24194, 14037, 10960, 19354, 1548,
    -19264, -10870, -13413, -24975, -10260, 14584, 11199, 8122, 22112, 19569, -5868, -9253,
    -6176, -20166, -27797, -6985, 4842, 2044, 14762, 30949, 16234, -966, 5971, -4540, -25562,
    -22764, -4958, -7270, -5168, 19676, 23061, 7672, 10470, 13013, -12424, -22581, -13348,
    -10550, -18181, -1994, 21130, 11897, 14695, 22326, 10764, -12360, -9283, -12081, -24799,
    -22487, 4842, 8566, 5181, 20570, 28964, 6071, -3162, -364, -13082, -29269, -14554, -1177,
    -6389, 4666, 26204, 23127, 3541, 11172, 4235, -18889, -21966, -7976, -10519)


def s16(buf, i):
    v = buf[2 * i] | (buf[2 * i + 1] << 8)
    return v - 0x10000 if v & 0x8000 else v


def decode_all(data, block_bytes, out):
    got = []
    for start in range(0, len(data), block_bytes):
        n = decode_block(memoryview(data)[start:start + block_bytes], out)
        for i in range(n):
            got.append(s16(out, i))
    return got


def test_decodes_ffmpeg_blocks_sample_for_sample():
    out = bytearray(2 * samples_in_block(32))
    assert decode_all(VECTOR, 32, out) == list(EXPECTED)


def test_each_block_decodes_alone():
    # The second block on its own gives the same samples as in sequence: no carried state.
    out = bytearray(2 * samples_in_block(32))
    n = decode_block(VECTOR[32:], out)
    assert n == 57
    assert [s16(out, i) for i in range(n)] == list(EXPECTED[57:])


def test_block_of_protocol_size_gives_505_samples():
    block = bytearray(256)
    block[0] = 0x34
    block[1] = 0x12
    out = bytearray(2 * 505)
    assert decode_block(block, out) == 505
    # First sample is the header's predictor; code 0 then nudges by step/8 (7 >> 3 = 0).
    assert s16(out, 0) == 0x1234
    assert s16(out, 1) == 0x1234


def test_short_last_block_decodes_what_it_holds():
    out = bytearray(2 * 57)
    assert decode_block(VECTOR[:10], out) == 13
    assert [s16(out, i) for i in range(13)] == list(EXPECTED[:13])
    assert decode_block(VECTOR[:3], out) == 0


def test_predictor_and_step_index_are_clamped():
    # Start near full scale at the largest step, then all +7 codes: must saturate, not wrap.
    block = bytes((0xF0, 0x7F, 88, 0)) + bytes((0x77,)) * 4
    out = bytearray(2 * 9)
    assert decode_block(block, out) == 9
    assert [s16(out, i) for i in range(9)] == [32752] + [32767] * 8
    # Negative full scale with -7 codes from a bad (out of range) step index.
    block = bytes((0x10, 0x80, 200, 0)) + bytes((0xFF,)) * 2
    assert decode_block(block, out) == 5
    assert [s16(out, i) for i in range(5)] == [-32752] + [-32768] * 4
    # Step index walks down to 0 and stays there (codes 0: -1 each).
    block = bytes((0, 0, 2, 0)) + bytes(4)
    assert decode_block(block, out) == 9
    assert [s16(out, i) for i in range(9)] == [0, 1, 2, 2, 2, 2, 2, 2, 2]


def test_decoding_allocates_nothing():
    out = bytearray(2 * 505)
    block = bytearray(256)
    for i in range(4, 256):
        block[i] = (i * 37) & 0xFF
    decode_block(block, out)  # warm up
    if not hasattr(gc, "mem_alloc"):  # CPython: nothing to measure
        return
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(10):
        decode_block(block, out)
    assert gc.mem_alloc() - before == 0


def test_implementation_is_known():
    assert IMPLEMENTATION in ("viper", "python")
