"""Renditions in step: how far apart the MP3 and the ADPCM rendition of one item play, at
every rate a receiver takes.

    .venv/bin/python bench/bench_renditions_in_step.py [--no-lead-in]

For each pair of rates: a chirp (48 kHz WAV, a sharp onset and no period) goes through
``audio.renditions.make_renditions`` as an upload does; both renditions are decoded the way
the receivers decode them (``audio.decode``: ffmpeg's MP3 decoder, which like the VS1053
plays every sample of every frame; the firmware's ADPCM decoder) and cross-correlated at the
ADPCM rate. ``--no-lead-in`` makes the renditions without the lead-in, as before issue 8, to
show what it compensates. The fleet measurement (two receivers running the firmware, what
their sinks played) is tests/integration/test_fleet_renditions_in_step.py.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "audio"))

from audio_samples import chirp_wav  # noqa: E402

from audio import renditions  # noqa: E402
from audio.decode import decode_to_pcm, decoded_delay, lag_samples  # noqa: E402
from audio.settings import AudioSettings  # noqa: E402

RATE_PAIRS = [(8000, 8000), (11025, 11025), (12000, 12000), (16000, 16000), (22050, 22050),
              (24000, 24000), (32000, 32000), (44100, 44100), (48000, 48000), (22050, 16000),
              (16000, 22050), (44100, 48000)]


def decoded(rendition, rate):
    with open(rendition.path, "rb") as f:
        return decode_to_pcm(rendition.codec, f.read(), rate)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-lead-in", action="store_true",
                        help="make the renditions without the lead-in (as before issue 8)")
    args = parser.parse_args()
    if args.no_lead_in:
        renditions.lead_in = lambda settings, codecs=renditions.CODECS: {
            codec: decoded_delay(codec) for codec in codecs}
    with tempfile.TemporaryDirectory() as scratch:
        source = chirp_wav(os.path.join(scratch, "chirp.wav"))
        print("%-9s %-10s %-21s %s" % ("mp3 rate", "adpcm rate", "lead-in mp3 / adpcm",
                                        "MP3 heard later by"))
        for mp3_rate, adpcm_rate in RATE_PAIRS:
            settings = AudioSettings(mp3_rate=mp3_rate, adpcm_rate=adpcm_rate)
            made = renditions.make_renditions(source, os.path.join(scratch, "cache"),
                                              settings=settings)
            mp3, adpcm = made.renditions["mp3"], made.renditions["adpcm"]
            lag = lag_samples(decoded(mp3, adpcm_rate), decoded(adpcm, adpcm_rate))
            print("%-9d %-10d %6.1f / %6.1f ms     %4d samples = %6.2f ms"
                  % (mp3_rate, adpcm_rate, 1000.0 * mp3.lead_samples / mp3_rate,
                     1000.0 * adpcm.lead_samples / adpcm_rate, lag, 1000.0 * lag / adpcm_rate))


if __name__ == "__main__":
    main()
