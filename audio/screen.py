"""Screening an operator's upload before it is converted: what ``audio.probe`` does not refuse
but should not go on the air as it is.

    screened = screen("/incoming/x/ban-tin.m4a")   # AudioRejected, or:
    screened.duration_s, screened.peak_db, screened.out_of_phase, screened.warnings

One decode of the whole source (after ``probe``), with ffmpeg's astats on each channel and, for
a two-channel source, on its sum and its difference:
- digitally silent: no channel's peak reaches ``SILENT_PEAK_DB`` (-80 dBFS, under a 16-bit
  file's last two bits): refused, "silent";
- shorter than ``MIN_DURATION_S``: refused, "too-short" (a slip of the record button);
- out of phase: the channels' sum is ``PHASE_CANCEL_DB`` quieter than their difference (one
  wire of a stereo microphone reversed): the mono downmix every rendition is made of would
  cancel the speech to almost nothing, so ``out_of_phase`` tells the caller to take one
  channel (``make_renditions(..., downmix="left")``), with a warning.
Refusals name the file as it is at ``path``: save an upload under its own name first.
"""

import os
import re
from dataclasses import dataclass, field

from audio import ffmpeg
from audio.probe import AudioRejected, probe
from audio.settings import DEFAULT_SETTINGS

SILENT_PEAK_DB = -80.0
MIN_DURATION_S = 1.0
PHASE_CANCEL_DB = 10.0
OUT_OF_PHASE_WARNING = ("out-of-phase: the two channels cancel each other when mixed to mono; "
                        "only the left channel was used")


@dataclass(frozen=True)
class Screened:
    duration_s: float
    channels: int
    peak_db: float            # the loudest channel's sample peak, dBFS (-inf: all zeros)
    out_of_phase: bool
    warnings: list = field(default_factory=list)


def _levels(stderr, name, label):
    """Every ``label`` value astats instance ``name`` printed, as floats (-inf kept)."""
    pattern = re.compile(r"^\[astats@%s @ [^\]]+\] %s: (-?(?:\d+(?:\.\d+)?|inf))"
                         % (re.escape(name), re.escape(label)), re.M)
    return [float(v) for v in pattern.findall(stderr)]


def _graph(channels):
    stats = ("astats@ch=measure_perchannel=Peak_level+RMS_level"
             ":measure_overall=Number_of_samples")
    if channels != 2:
        return "[0:a:0]%s,anullsink" % stats
    mono = "astats@%s=measure_perchannel=RMS_level:measure_overall=none"
    return ("[0:a:0]asplit=3[a][s][d];[a]%s,anullsink;"
            "[s]pan=mono|c0=0.5*c0+0.5*c1,%s,anullsink;"
            "[d]pan=mono|c0=0.5*c0-0.5*c1,%s,anullsink" % (stats, mono % "sum", mono % "dif"))


def screen(path, settings=None, *, progress=None):
    """Probe and screen ``path``; return ``Screened`` or raise ``AudioRejected``.

    ``progress(fraction)`` follows the decode (None: silent).
    """
    settings = settings or DEFAULT_SETTINGS
    path = os.fspath(path)
    name = os.path.basename(path)
    info = probe(path, settings)
    stderr = ffmpeg.run_with_progress(
        ["-i", path, "-filter_complex", _graph(info.channels), "-f", "null", "-"],
        duration_s=info.duration_s, progress=progress)
    peaks = _levels(stderr, "ch", "Peak level dB")
    samples = _levels(stderr, "ch", "Number of samples")
    peak = max(peaks) if peaks else float("-inf")
    rate = info.sample_rate or 0
    duration = samples[-1] / rate if samples and rate else info.duration_s
    if duration < MIN_DURATION_S:
        raise AudioRejected(
            "too-short", "%s lasts %.2f s: a recording shorter than %g s is not aired."
            % (name, duration, MIN_DURATION_S),
            "Bản ghi %s chỉ dài %.2f giây: bản ghi ngắn hơn %g giây không được phát."
            % (name, duration, MIN_DURATION_S))
    if peak < SILENT_PEAK_DB:
        raise AudioRejected(
            "silent", "%s is silent: no sample reaches %.0f dBFS. Check the microphone and "
            "record again." % (name, SILENT_PEAK_DB),
            "Tệp %s hoàn toàn im lặng (không có mẫu nào đạt %.0f dBFS). Hãy kiểm tra micrô "
            "và ghi âm lại." % (name, SILENT_PEAK_DB))
    out_of_phase = False
    if info.channels == 2:
        sum_rms = _levels(stderr, "sum", "RMS level dB")
        dif_rms = _levels(stderr, "dif", "RMS level dB")
        if sum_rms and dif_rms and dif_rms[-1] > SILENT_PEAK_DB:
            out_of_phase = sum_rms[-1] < dif_rms[-1] - PHASE_CANCEL_DB
    return Screened(duration_s=duration, channels=info.channels, peak_db=peak,
                    out_of_phase=out_of_phase,
                    warnings=[OUT_OF_PHASE_WARNING] if out_of_phase else [])
