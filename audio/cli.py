"""`loaxa audio`: convert a file to renditions, measure loudness, synthesize Vietnamese speech.

    loaxa audio convert FILE [--out DIR] [--codec mp3,adpcm] [--target LUFS]
    loaxa audio loudness FILE
    loaxa audio probe FILE
    loaxa audio tts TEXT | --file F [--voice north|central|south] [--speed N] --out FILE

Errors are one clear line on stderr and a non-zero exit: 1 for a file that was refused or a
conversion that failed, 2 for wrong usage.
"""

import argparse
import os
import sys
import time
from dataclasses import replace

EXIT_REFUSED = 1
EXIT_USAGE = 2
# Show a progress line only when a job is long enough for someone to wonder.
PROGRESS_MIN_DURATION_S = 120.0


def _parser():
    parser = argparse.ArgumentParser(prog="loaxa audio", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser("convert", help="normalise a recording and write its renditions")
    convert.add_argument("file")
    convert.add_argument("--out", default=".", help="directory for the renditions (default .)")
    convert.add_argument("--codec", default="mp3,adpcm", help="comma-separated: mp3, adpcm")
    convert.add_argument("--target", type=float, help="integrated loudness target, LUFS")
    convert.add_argument("--no-speech-profile", action="store_true",
                         help="no band-pass and no compressor (music, chimes)")
    convert.add_argument("--quiet", action="store_true", help="no progress line")

    loud = sub.add_parser("loudness", help="measure a file's loudness (EBU R128)")
    loud.add_argument("file")

    probe = sub.add_parser("probe", help="check a file as the head-end does at upload")
    probe.add_argument("file")

    tts = sub.add_parser("tts", help="synthesize Vietnamese speech into a WAV file")
    tts.add_argument("text", nargs="?")
    tts.add_argument("--file", help="read the text from this UTF-8 file")
    tts.add_argument("--voice", default="north", choices=("north", "central", "south"))
    tts.add_argument("--speed", type=float)
    tts.add_argument("--out", required=True)
    return parser


class _ProgressLine:
    """One self-rewriting line on stderr: stage, percent, elapsed."""

    def __init__(self, stream):
        self.stream = stream
        self.started = time.monotonic()
        self.last = -1

    def __call__(self, fraction, stage):
        percent = int(fraction * 100)
        if percent == self.last:
            return
        self.last = percent
        self.stream.write("\r%-8s %3d%%  %5.1f s" % (stage, percent,
                                                     time.monotonic() - self.started))
        if fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()


def _fmt_lufs(value):
    return "%.1f LUFS" % value if value is not None else "n/a"


def _convert(args):
    from audio.probe import probe
    from audio.renditions import make_renditions
    from audio.settings import DEFAULT_SETTINGS

    codecs = tuple(c.strip() for c in args.codec.split(",") if c.strip())
    unknown = [c for c in codecs if c not in ("mp3", "adpcm")]
    if not codecs or unknown:
        print("loaxa audio convert: unknown codec %s (use mp3, adpcm)" % ",".join(unknown),
              file=sys.stderr)
        return EXIT_USAGE
    settings = DEFAULT_SETTINGS
    if args.target is not None:
        settings = replace(settings, target_lufs=args.target)
    if args.no_speech_profile:
        settings = replace(settings, speech_profile=False)
    info = probe(args.file, settings)
    progress = None
    if not args.quiet and info.duration_s >= PROGRESS_MIN_DURATION_S:
        progress = _ProgressLine(sys.stderr)
    result = make_renditions(args.file, args.out, codecs, settings, progress=progress)
    print("source    %s  %s, %d ch, %d Hz, %.1f s" % (args.file, info.codec, info.channels,
                                                      info.sample_rate, info.duration_s))
    print("loudness  %s -> %s (target %.1f LUFS), true peak %s dBTP, gain %+.1f dB"
          % (_fmt_lufs(result.loudness_before), _fmt_lufs(result.loudness_after),
             settings.target_lufs, "%.1f" % result.true_peak_after
             if result.true_peak_after is not None else "n/a", result.gain_db))
    for codec, rendition in result.renditions.items():
        detail = ("%d kbit/s" % rendition.bitrate if rendition.bitrate
                  else "%d-byte blocks" % rendition.block_bytes)
        print("%-9s %s  %d bytes, %d Hz, %s, %.1f s, sha256 %s"
              % (codec, rendition.path, rendition.size, rendition.rate, detail,
                 rendition.duration_ms / 1000.0, rendition.sha256[:16]))
    for warning in result.warnings:
        print("warning   %s" % warning, file=sys.stderr)
    if result.cached:
        print("(already converted: taken from %s)" % os.path.abspath(args.out))
    return 0


def _loudness(args):
    from audio.loudness import measure
    from audio.probe import probe

    info = probe(args.file)
    progress = _ProgressLine(sys.stderr) if info.duration_s >= PROGRESS_MIN_DURATION_S else None
    result = measure(args.file, duration_s=info.duration_s,
                     progress=(lambda f: progress(f, "measure")) if progress else None)
    if progress:
        progress(1.0, "measure")
    print("integrated  %s" % _fmt_lufs(result.integrated_lufs))
    print("true peak   %s dBTP" % ("%.1f" % result.true_peak_db
                                   if result.true_peak_db is not None else "n/a"))
    print("range       %.1f LU" % result.lra)
    return 0


def _probe(args):
    from audio.probe import probe

    info = probe(args.file)
    print("%s: %s in %s, %d ch, %d Hz, %.2f s, %d bytes"
          % (args.file, info.codec, info.format, info.channels, info.sample_rate,
             info.duration_s, info.size_bytes))
    return 0


def _tts(args):
    if (args.text is None) == (args.file is None):
        print("loaxa audio tts: give the text or --file, not both or neither", file=sys.stderr)
        return EXIT_USAGE
    text = args.text
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    from audio.tts import synthesize_to_file

    out = synthesize_to_file(text, args.out, voice=args.voice, speed=args.speed)
    print("wrote %s" % out)
    return 0


COMMANDS = {"convert": _convert, "loudness": _loudness, "probe": _probe, "tts": _tts}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from audio.ffmpeg import FfmpegError, FfmpegMissing
    from audio.probe import AudioRejected

    try:
        return COMMANDS[args.command](args)
    except AudioRejected as exc:
        print("loaxa audio %s: refused (%s): %s" % (args.command, exc.reason, exc),
              file=sys.stderr)
        return EXIT_REFUSED
    except FileNotFoundError as exc:
        print("loaxa audio %s: no such file: %s" % (args.command, exc.filename), file=sys.stderr)
        return EXIT_REFUSED
    except (FfmpegError, FfmpegMissing) as exc:
        print("loaxa audio %s: %s" % (args.command, exc), file=sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:  # TTS errors and the like: one line, not a traceback
        if type(exc).__module__.startswith("audio."):
            print("loaxa audio %s: %s" % (args.command, exc), file=sys.stderr)
            return EXIT_REFUSED
        raise


if __name__ == "__main__":
    sys.exit(main())
