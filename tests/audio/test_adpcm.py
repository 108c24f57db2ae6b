"""ADPCM: the head-end's encoder and the receiver's decoder agree, and lost blocks cost only
themselves."""

import os

import numpy as np
import pytest
from audio_samples import ffmpeg as run_ffmpeg
from audio_samples import make_samples

from audio import adpcm
from audio.decode import decode_to_pcm
from audio.renditions import make_renditions
from audio.tones import read_wav_mono
from firmware.adpcm import decode_block, samples_in_block

BLOCK = 256
PER_BLOCK = samples_in_block(BLOCK)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("adpcm"))
    samples = make_samples(directory)
    result = make_renditions(samples["speech"], os.path.join(directory, "cache"),
                             ("adpcm",), keep_normalised=True)
    with open(result.renditions["adpcm"].path, "rb") as f:
        data = f.read()
    normalised, rate = read_wav_mono(result.normalised_path)
    # What the rendition holds: the set's lead-in of silence (audio.renditions.lead_in), then
    # the normalised audio.
    lead = np.zeros(result.renditions["adpcm"].lead_samples, dtype=np.int16)
    return {"data": data, "normalised": np.concatenate([lead, normalised]), "rate": rate,
            "dir": directory}


def snr_db(reference, decoded):
    n = min(len(reference), len(decoded))
    ref = reference[:n].astype(np.float64)
    noise = ref - decoded[:n].astype(np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum(noise ** 2))


def test_round_trip_of_speech_scores_at_least_20_db(speech):
    decoded = decode_to_pcm("adpcm", speech["data"], speech["rate"])
    assert speech["rate"] == 16000
    # Whole blocks: the decode is the source plus < one block of padding, sample-aligned.
    assert 0 <= len(decoded) - len(speech["normalised"]) < PER_BLOCK
    assert snr_db(speech["normalised"], decoded) >= 20.0


def test_every_block_header_follows_the_protocol(speech):
    adpcm.check_blocks(speech["data"], BLOCK)
    assert len(speech["data"]) % BLOCK == 0
    # The header carries the block's first sample exactly.
    for number in range(len(speech["data"]) // BLOCK - 1):
        first = np.frombuffer(speech["data"][number * BLOCK:number * BLOCK + 2], dtype="<i2")[0]
        assert first == speech["normalised"][number * PER_BLOCK], number


def test_python_encoder_matches_ffmpeg_byte_for_byte(speech):
    # A few seconds are enough to show it; the pure-Python encoder is slow.
    pcm = speech["normalised"][:PER_BLOCK * 40]
    assert adpcm.encode_pcm(pcm, BLOCK) == speech["data"][:BLOCK * 40]


def test_firmware_decoder_matches_ffmpeg_decoder_sample_for_sample(speech, tmp_path):
    # Wrap the blocks in an IMA WAV header and let ffmpeg decode them with its own decoder.
    raw = tmp_path / "blocks.adpcm"
    raw.write_bytes(speech["data"])
    run_ffmpeg("-f", "wav", "-i", str(wav_with_blocks(raw, speech["rate"])), "-f", "s16le",
               str(tmp_path / "ffmpeg.raw"))
    theirs = np.frombuffer((tmp_path / "ffmpeg.raw").read_bytes(), dtype="<i2")
    ours = decode_to_pcm("adpcm", speech["data"], speech["rate"])
    assert np.array_equal(ours[:len(theirs)], theirs)
    assert len(theirs) >= len(ours) - PER_BLOCK


def wav_with_blocks(raw_path, rate):
    """An IMA ADPCM WAV file around headerless blocks (format 0x11, 4 bits, fact chunk)."""
    import struct

    data = raw_path.read_bytes()
    fmt = struct.pack("<HHIIHHHH", 0x11, 1, rate, rate * BLOCK // PER_BLOCK, BLOCK, 4, 2,
                      PER_BLOCK)
    fact = struct.pack("<I", len(data) // BLOCK * PER_BLOCK)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4)
            + fact + b"data" + struct.pack("<I", len(data)) + data)
    out = raw_path.with_suffix(".wav")
    out.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return out


def test_dropping_every_fifth_block_loses_only_those_blocks(speech):
    data = speech["data"]
    full = decode_to_pcm("adpcm", data, speech["rate"])
    blocks = list(adpcm.iter_blocks(data, BLOCK))
    kept = [i for i in range(len(blocks)) if i % 5 != 4]
    received = b"".join(bytes(blocks[i]) for i in kept)
    after_loss = decode_to_pcm("adpcm", received, speech["rate"])
    assert len(after_loss) == len(kept) * PER_BLOCK
    # Each surviving block decodes to exactly what it would have been with nothing lost.
    for position, index in enumerate(kept):
        assert np.array_equal(after_loss[position * PER_BLOCK:(position + 1) * PER_BLOCK],
                              full[index * PER_BLOCK:(index + 1) * PER_BLOCK])
    # And it is speech, not silence: the survivors carry most of the energy.
    assert np.sum(after_loss.astype(np.float64) ** 2) > 0.6 * np.sum(full.astype(np.float64) ** 2)


def test_one_block_decodes_alone_into_a_preallocated_buffer(speech):
    out = bytearray(2 * PER_BLOCK)
    middle = len(speech["data"]) // BLOCK // 2
    block = memoryview(speech["data"])[middle * BLOCK:(middle + 1) * BLOCK]
    assert decode_block(block, out) == PER_BLOCK
    full = decode_to_pcm("adpcm", speech["data"], speech["rate"])
    assert np.array_equal(np.frombuffer(bytes(out), dtype="<i2"),
                          full[middle * PER_BLOCK:(middle + 1) * PER_BLOCK])


def test_sizes_and_counts():
    assert adpcm.sample_count(3 * BLOCK, BLOCK) == 3 * 505
    assert adpcm.sample_count(3 * BLOCK + 10, BLOCK) == 3 * 505 + 13
    assert adpcm.block_count(3 * BLOCK + 10, BLOCK) == 4
    with pytest.raises(ValueError):
        adpcm.check_blocks(bytes((0, 0, 89, 0)) + bytes(252), BLOCK)
