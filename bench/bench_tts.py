"""Benchmark (issue 4, acceptance 5): real-time factor of Vietnamese text-to-speech.

Real-time factor = synthesis wall time / duration of the speech produced (lower is faster;
0.05 means a minute of speech takes 3 s). Text: the ~500-character sample bulletin
(audio/tts/sample.py) with dates, times, numbers, units and abbreviations.

Measured in the same run:
- loaxa: ``audio.tts.synthesize_to_file`` (normalise, split at sentences, espeak-ng chunks in
  parallel, join);
- baseline: one bare ``espeak-ng`` call on the same raw text (what a script would do; it reads
  "17h30" and "UBND" badly, but it is the floor for the engine's own cost);
- baseline on the normalised text: one bare ``espeak-ng`` call on the text loaxa speaks, to
  separate the cost of the longer read-out text from our own overhead.

    .venv/bin/python bench/bench_tts.py [--runs 5] [--voice north] [--speed 1.0]
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import wave

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from audio.tts import EspeakEngine, prepare_text, synthesize_to_file  # noqa: E402
from audio.tts.sample import SAMPLE_BULLETIN  # noqa: E402


def wav_seconds(path):
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def timed(run, out_path, runs):
    """Median wall time of ``runs`` calls of ``run()`` and the duration of what it wrote."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), wav_seconds(out_path)


def bare_espeak(text, out_path, voice, speed):
    command = EspeakEngine().command(out_path, voice, speed)
    return command, lambda: subprocess.run(command, input=text.encode(), check=True,
                                           capture_output=True, timeout=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--voice", default="north", choices=sorted(EspeakEngine.voices))
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args(argv)
    args.runs = max(1, min(args.runs, 50))  # bounded

    with tempfile.TemporaryDirectory(prefix="loaxa-bench-tts-") as tmp:
        ours_wav = os.path.join(tmp, "loaxa.wav")
        ours = timed(lambda: synthesize_to_file(SAMPLE_BULLETIN, ours_wav, voice=args.voice,
                                                speed=args.speed), ours_wav, args.runs)
        raw_wav = os.path.join(tmp, "raw.wav")
        command, run = bare_espeak(SAMPLE_BULLETIN, raw_wav, args.voice, args.speed)
        raw = timed(run, raw_wav, args.runs)
        spoken = prepare_text(SAMPLE_BULLETIN)
        norm_wav = os.path.join(tmp, "normalised.wav")
        _, run = bare_espeak(spoken, norm_wav, args.voice, args.speed)
        norm = timed(run, norm_wav, args.runs)

    print("command: .venv/bin/python bench/bench_tts.py " + shlex.join(argv or sys.argv[1:]))
    print("baseline command: echo TEXT | " + shlex.join(command).replace(raw_wav, "out.wav"))
    print("text: %d characters as typed, %d as spoken after normalisation; %d CPUs; "
          "median of %d runs" % (len(SAMPLE_BULLETIN), len(spoken), os.cpu_count(), args.runs))
    print("%-36s %9s %9s %9s" % ("", "time s", "audio s", "RTF"))
    for name, (seconds, audio) in (("loaxa synthesize_to_file", ours),
                                   ("bare espeak-ng, raw text", raw),
                                   ("bare espeak-ng, normalised text", norm)):
        print("%-36s %9.3f %9.1f %9.4f" % (name, seconds, audio, seconds / audio))
    print("loaxa / bare on the same spoken text: %.2fx the time" % (ours[0] / norm[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
