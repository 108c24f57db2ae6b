"""Audio pipeline benchmark: ingest + normalise + both renditions of a long recording, against
one bare ffmpeg command doing the same conversions, in the same run.

    .venv/bin/python bench/bench_audio_pipeline.py [--minutes 60]

The recording is made first (not timed): Vietnamese speech from espeak-ng (a synthetic voiced
signal if it is missing) looped to the length, with pink noise under it, as 44.1 kHz stereo
MP3 at 128 kbit/s, like a phone or a district office would send.

- ours: ``audio.renditions.make_renditions`` with a cold cache: probe + decode checks, pass A
  (decode, measure, band-pass), pass B (dynamics measured), pass C (both encoders + measure).
- baseline: one ffmpeg command: same band-pass, single-pass ``loudnorm`` to the same target,
  both encoders (what a script would do).
Both outputs are then measured (not timed), to show what each gets for its time. Also: the
pure-Python ADPCM encoder and the firmware decoder under CPython, in times real time.
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "audio"))

from audio_samples import read_wav, speech_wav  # noqa: E402

from audio import adpcm  # noqa: E402
from audio.ffmpeg import ffmpeg_exe  # noqa: E402
from audio.loudness import measure  # noqa: E402
from audio.renditions import _encoder_args, make_renditions  # noqa: E402
from audio.settings import DEFAULT_SETTINGS as S  # noqa: E402


def make_recording(directory, minutes):
    speech = speech_wav(os.path.join(directory, "speech.wav"))
    out = os.path.join(directory, "recording.mp3")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    "-stream_loop", "-1", "-i", speech,
                    "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.01:sample_rate=44100:seed=7",
                    "-filter_complex", "[0:a]aresample=44100[s];[s][1:a]amix=inputs=2:duration=first"
                    ":normalize=0,atrim=0:%d" % (minutes * 60),
                    "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k", out], check=True)
    return out


def baseline_command(src, out_dir, normalise=True):
    """One ffmpeg command; ``normalise=False`` leaves out loudnorm: the floor, what decoding,
    filtering and encoding alone cost."""
    loudnorm = ("loudnorm=I=%.1f:TP=%.1f:LRA=11,aresample=16000," % (S.target_lufs, S.true_peak_db)
                if normalise else "")
    chain = ("aresample=16000,aformat=channel_layouts=mono,highpass=f=%d:poles=2,"
             "lowpass=f=%d:poles=2,%sasplit=2[m][a]" % (S.highpass_hz, S.lowpass_hz, loudnorm))
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", src,
            "-filter_complex", "[0:a:0]" + chain,
            "-map", "[m]", "-ar", "16000", *_encoder_args("mp3", S), os.path.join(out_dir, "b.mp3"),
            "-map", "[a]", "-ar", "16000", *_encoder_args("adpcm", S),
            os.path.join(out_dir, "b.adpcm")]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args(argv)
    print("command: %s" % " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv))
    print("ffmpeg: %s, cores: %d" % (ffmpeg_exe(), os.cpu_count()))
    with tempfile.TemporaryDirectory(prefix="loaxa-bench-") as work:
        src, made_s = timed(lambda: make_recording(work, args.minutes))
        print("input: %d min, 44.1 kHz stereo MP3 128 kbit/s, %.1f MB (made in %.0f s, not timed)"
              % (args.minutes, os.path.getsize(src) / 1e6, made_s))

        stages = {}

        def progress(fraction, stage):
            stages.setdefault(stage, time.perf_counter())

        cache = os.path.join(work, "cache")
        ours, ours_s = timed(lambda: make_renditions(src, cache, progress=progress))
        again, cached_s = timed(lambda: make_renditions(src, cache))
        assert again.cached

        base_dir = os.path.join(work, "baseline")
        os.makedirs(base_dir)
        cmd = baseline_command(src, base_dir)
        _, base_s = timed(lambda: subprocess.run(cmd, check=True))
        floor_dir = os.path.join(work, "floor")
        os.makedirs(floor_dir)
        floor_cmd = baseline_command(src, floor_dir, normalise=False)
        _, floor_s = timed(lambda: subprocess.run(floor_cmd, check=True))

        print()
        print("ours:     %6.1f s  (%.0fx real time)" % (ours_s, args.minutes * 60 / ours_s))
        marks = sorted(stages.items(), key=lambda kv: kv[1])
        for (name, at), (_, nxt) in zip(marks, marks[1:], strict=False):
            print("          %-8s %6.1f s" % (name, nxt - at))
        print("baseline: %6.1f s  (%.0fx real time)" % (base_s, args.minutes * 60 / base_s))
        print("ratio ours/baseline: %.2f" % (ours_s / base_s))
        print("floor (same command without loudnorm, not normalised): %.1f s; ours/floor: %.2f"
              % (floor_s, ours_s / floor_s))
        print("cached second call: %.2f s (source hash only)" % cached_s)
        print("baseline command:\n  %s" % " ".join(shlex.quote(a) for a in cmd))
        print("floor command:\n  %s" % " ".join(shlex.quote(a) for a in floor_cmd))

        print("\nloudness of the MP3 renditions (target %.1f LUFS, ceiling %.1f dBTP):"
              % (S.target_lufs, S.true_peak_db))
        mine = measure(ours.renditions["mp3"].path)
        theirs = measure(os.path.join(base_dir, "b.mp3"))
        print("  source    %.1f LUFS" % ours.loudness_before)
        print("  ours      %.1f LUFS, true peak %.1f dBTP" % (mine.integrated_lufs,
                                                            mine.true_peak_db))
        print("  baseline  %.1f LUFS, true peak %.1f dBTP" % (theirs.integrated_lufs,
                                                            theirs.true_peak_db))
        for codec, r in ours.renditions.items():
            print("  %-6s %8.1f kB per minute" % (codec, r.size / 1000 / (r.duration_ms / 60000)))

        pcm, rate = read_wav(speech_wav(os.path.join(work, "short.wav")))
        pcm = pcm[:rate * 5]
        blocks, enc_s = timed(lambda: adpcm.encode_pcm(pcm))
        _, dec_s = timed(lambda: adpcm.decode(blocks))
        seconds = len(pcm) / rate
        print("\nADPCM in pure Python (CPython, one core): encoder %.0fx real time, "
              "firmware decoder %.0fx real time" % (seconds / enc_s, seconds / dec_s))


if __name__ == "__main__":
    main()
