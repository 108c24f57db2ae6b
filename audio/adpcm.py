"""IMA-ADPCM, encoder side, in the block layout of ``protocol.media``.

Renditions are encoded by ffmpeg's ``adpcm_ima_wav`` encoder with ``-block_size`` set to the
protocol's block size and the raw packets written with ``-f data`` (no WAV header to strip):
its IMA WAV mono blocks are exactly our layout (s16 first sample, u8 step index, u8 0, codes
low nibble first), it carries the step index from block to block, and it encodes an hour of
16 kHz audio in under a second (~4,000x real time), where the pure-Python encoder below
manages ~50x (bench/bench_audio_pipeline.py).

``encode_pcm`` is that pure-Python encoder, for small live chunks and as a reference in tests;
it predicts with exactly the decoder's arithmetic (``firmware.adpcm``), so encoder and decoder
never drift apart inside a block.
"""

from firmware.adpcm import HEADER_BYTES, INDEX_TABLE, MAX_STEP_INDEX, STEP_TABLE, samples_in_block
from protocol.media import ADPCM_BLOCK_BYTES

# Decoded samples before the first input sample: none, the first block's header holds it.
DECODED_DELAY = 0


def ffmpeg_encoder_args(block_bytes=ADPCM_BLOCK_BYTES):
    """ffmpeg output options that write headerless blocks in the protocol's layout."""
    return ["-c:a", "adpcm_ima_wav", "-block_size", str(block_bytes), "-f", "data"]


def block_count(nbytes, block_bytes=ADPCM_BLOCK_BYTES):
    """Whole and partial blocks in ``nbytes`` of ADPCM data."""
    return -(-nbytes // block_bytes)


def sample_count(nbytes, block_bytes=ADPCM_BLOCK_BYTES):
    """Samples ``nbytes`` of ADPCM data decode to (a short last block counts what it holds)."""
    whole, rest = divmod(nbytes, block_bytes)
    return whole * samples_in_block(block_bytes) + samples_in_block(rest)


def iter_blocks(data, block_bytes=ADPCM_BLOCK_BYTES):
    """Memoryviews of each block (the last may be short)."""
    view = memoryview(data)
    for offset in range(0, len(view), block_bytes):
        yield view[offset:offset + block_bytes]


def check_blocks(data, block_bytes=ADPCM_BLOCK_BYTES):
    """Raise ValueError unless every block header is valid for the protocol."""
    for number, block in enumerate(iter_blocks(data, block_bytes)):
        if len(block) < HEADER_BYTES:
            raise ValueError("block %d is shorter than its header" % number)
        if block[2] > MAX_STEP_INDEX or block[3] != 0:
            raise ValueError("block %d has a bad header (step index %d, reserved %d)"
                             % (number, block[2], block[3]))


def _encode_sample(sample, pred, idx):
    """One 4-bit code for ``sample``; returns (code, new predictor, new step index).

    ffmpeg's quantiser (adpcm_ima_compress_sample), so this encoder's output is byte-identical
    to ffmpeg's, and its prediction uses the decoder's arithmetic exactly.
    """
    step = STEP_TABLE[idx]
    delta = sample - pred
    code = min(7, abs(delta) * 4 // step) + (8 if delta < 0 else 0)
    diff = ((2 * (code & 7) + 1) * step) >> 3
    pred = pred - diff if code & 8 else pred + diff
    pred = max(-32768, min(32767, pred))
    idx = max(0, min(MAX_STEP_INDEX, idx + INDEX_TABLE[code & 7]))
    return code, pred, idx


def encode_pcm(samples, block_bytes=ADPCM_BLOCK_BYTES, step_index=0):
    """Encode 16-bit mono samples (a sequence of ints, e.g. a numpy int16 array) into blocks.

    The last block is padded with silence to a whole block, as ffmpeg does. Returns bytes.
    """
    per_block = samples_in_block(block_bytes)
    values = [int(s) for s in samples]
    out = bytearray()
    idx = step_index
    for start in range(0, len(values), per_block):
        chunk = values[start:start + per_block]
        chunk += [0] * (per_block - len(chunk))
        pred = chunk[0]
        out += (pred & 0xFFFF).to_bytes(2, "little") + bytes((idx, 0))
        low = None
        for sample in chunk[1:]:
            code, pred, idx = _encode_sample(sample, pred, idx)
            if low is None:
                low = code
            else:
                out.append(low | (code << 4))
                low = None
    return bytes(out)


def decode(data, block_bytes=ADPCM_BLOCK_BYTES):
    """Decode blocks with the firmware's decoder; return 16-bit LE PCM bytes."""
    from firmware.adpcm import decode_block

    out = bytearray(2 * sample_count(len(data), block_bytes))
    scratch = bytearray(2 * samples_in_block(block_bytes))
    position = 0
    for block in iter_blocks(data, block_bytes):
        n = decode_block(block, scratch)
        out[position:position + 2 * n] = scratch[:2 * n]
        position += 2 * n
    return bytes(out[:position])
