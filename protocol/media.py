"""Media renditions as receivers cache and play them.

``mp3``: MPEG audio, mono, constant bitrate, as a plain .mp3 file (a VS1053 plays it as is).
Each MPEG frame stands alone, so a live frame carries whole MPEG frames.

``adpcm``: IMA-ADPCM, mono, as a plain concatenation of fixed-size blocks, no file header
(always ``ADPCM_BLOCK_BYTES`` per block, so no command carries a size; the rate comes with the
command). Each block has the IMA WAV (Microsoft) mono layout and carries its own predictor
state, so any block decodes alone:

    offset size type   field
    0      2    s16 LE first sample (also the predictor)
    2      1    u8     step index, 0..88
    3      1    u8     0
    4      ...         4-bit codes, low nibble first: (block_bytes - 4) * 2 samples

One block therefore holds ``(block_bytes - 4) * 2 + 1`` samples (505 for 256-byte blocks).
A live ADPCM frame carries one or more whole blocks.
"""

ADPCM_BLOCK_BYTES = 256
ADPCM_HEADER_BYTES = 4


def adpcm_samples_per_block(block_bytes=ADPCM_BLOCK_BYTES):
    return (block_bytes - ADPCM_HEADER_BYTES) * 2 + 1


def adpcm_block_bytes_for(samples):
    """Block size for a block holding ``samples`` samples (``samples`` must be odd)."""
    return (samples - 1) // 2 + ADPCM_HEADER_BYTES
