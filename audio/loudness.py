"""Loudness per EBU R128 / ITU-R BS.1770 (ffmpeg's ebur128 filter) and the normalising chain.

Measuring: ``measure(path)`` gives integrated loudness (LUFS), loudness range and true peak
(4x oversampled) of a file, all channels counted as BS.1770 says.

Normalising is done in ``audio.renditions`` as three ffmpeg passes built from the pieces here:
  A. decode, downmix to mono, resample, speech band-pass; measure the source (ebur128, plus a
     clipping count) and write the band-passed audio to a temporary raw file;
  B. gain to the target, speech compressor, true-peak limiter; measure the result;
  C. the same with the residual correction from B; encode the renditions, measure the output.
Why not ffmpeg's loudnorm (two-pass): speech peaks ~19 dB above its loudness, the target allows
14.5 dB, so loudnorm falls back to its dynamic mode, which works at 192 kHz (5x slower here) and
still missed the target by 2 LU on 60 minutes of speech in our measurements (-18.2 LUFS for a
-16 target). Measuring after the dynamics stage and correcting lands within a few tenths.
"""

import math
import re
from dataclasses import dataclass

from audio import ffmpeg

# ebur128 reports -70 LUFS (its absolute gate) when every block is gated: digital silence.
SILENCE_LUFS = -70.0
# The limiter works on sample peaks; inter-sample peaks at 16 kHz and the MP3 encoder's
# overshoot add up to ~1.5 dB (measured: -1.3 dBTP out of the MP3 with a 1 dB margin), so it
# is set this far under the true-peak ceiling.
LIMITER_MARGIN_DB = 1.5


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_db: float | None
    lra: float
    threshold_lufs: float

    @property
    def silent(self):
        return self.integrated_lufs <= SILENCE_LUFS + 0.05


def ebur128_filter(name, true_peak=True):
    """An ebur128 instance whose summary ``parse_ebur128`` finds by ``name``."""
    # framelog=verbose keeps the per-100 ms lines out of the info-level log we parse.
    return "ebur128@%s=framelog=verbose%s" % (name, ":peak=true" if true_peak else "")


# Not anchored to a line start: a progress line ending in "\r" may precede it.
_SUMMARY_RE = re.compile(r"\[ebur128@(\w+) @ [^\]]+\] Summary:")
_NUMBER = r"(-?(?:\d+(?:\.\d+)?|inf))"


def _field(text, label, unit):
    m = re.search(r"%s\s+%s %s" % (label, _NUMBER, unit), text)
    if m is None:
        return None
    return float(m.group(1))


def parse_ebur128(stderr):
    """{instance name: Loudness} from ffmpeg's log. ffmpeg may build a graph twice and print a
    summary for an instance that saw nothing; the last summary of each name wins."""
    found = {}
    marks = list(_SUMMARY_RE.finditer(stderr))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(stderr)
        block = stderr[mark.end():end]
        integrated = _field(block, "I:", "LUFS")
        if integrated is None:
            continue
        thresholds = re.findall(r"Threshold:\s+%s LUFS" % _NUMBER, block)
        peak = None
        tp = block.find("True peak:")
        if tp >= 0:
            peak = _field(block[tp:], "Peak:", "dBFS")
        found[mark.group(1)] = Loudness(
            integrated_lufs=integrated,
            true_peak_db=peak,
            lra=_field(block, "LRA:", "LU") or 0.0,
            threshold_lufs=float(thresholds[0]) if thresholds else integrated - 10.0)
    return found


def clip_counter_filter(name):
    """Counts samples stuck at full scale. Going to s16 first clamps a decoder's overshoot
    (a clipped MP3 decodes to values just past 1.0) onto exactly +/-32767, so they count."""
    return ("aformat=sample_fmts=s16:channel_layouts=mono,astats@%s=measure_perchannel=none"
            ":measure_overall=Peak_level+Peak_count+Number_of_samples" % name)


def parse_clipped_fraction(stderr, name):
    """Share of samples at full scale, from the astats instance ``name`` (0.0 if absent)."""
    lines = [line for line in stderr.splitlines() if line.startswith("[astats@%s " % name)]
    text = "\n".join(lines)
    peak_level = re.findall(r"Peak level dB: %s" % _NUMBER, text)
    peak_count = re.findall(r"Peak count: %s" % _NUMBER, text)
    samples = re.findall(r"Number of samples: %s" % _NUMBER, text)
    if not (peak_level and peak_count and samples):
        return 0.0
    level, count, total = float(peak_level[-1]), float(peak_count[-1]), float(samples[-1])
    if total <= 0 or level < -0.1:  # never reached full scale: nothing was clipped
        return 0.0
    return count / total


def measure(path, *, progress=None, duration_s=None):
    """EBU R128 measurement of a file's first audio stream."""
    stderr = ffmpeg.run_with_progress(
        ["-i", str(path), "-map", "0:a:0", "-af", ebur128_filter("m"), "-f", "null", "-"],
        duration_s=duration_s, progress=progress)
    result = parse_ebur128(stderr).get("m")
    if result is None:
        raise ffmpeg.FfmpegError(["ebur128"], 0, stderr)
    return result


# ---- the normalising chain ------------------------------------------------------------------

def speech_filters(settings):
    """Band-pass for horn speakers (first pass, before measuring)."""
    if not settings.speech_profile:
        return []
    return ["highpass=f=%d:poles=2" % settings.highpass_hz,
            "lowpass=f=%d:poles=2" % settings.lowpass_hz]


def _db_to_linear(db):
    return 10.0 ** (db / 20.0)


def dynamics_filters(settings, gain_db, correction_db=0.0):
    """Gain to the target, speech compressor, residual correction, true-peak limiter.

    The compressor always sees the source at the target loudness (``gain_db`` comes from pass
    A), so it acts the same on a whisper and a shout; ``correction_db`` (from pass B) makes up
    what compression took, before the limiter, which then only catches what is left over.
    """
    filters = ["volume=%.3fdB" % gain_db]
    if settings.speech_profile:
        # Threshold at the target level, 4:1, 1 ms attack on peaks: speech comes out with its
        # peaks ~14 dB over its loudness (raw speech: 18-20 dB), which a -16 LUFS / -1.5 dBTP
        # item needs, so the limiter after it only trims what is left.
        threshold = _db_to_linear(settings.target_lufs)
        filters.append("acompressor=threshold=%.5f:ratio=4:attack=1:release=100:knee=4"
                       ":detection=peak" % threshold)
    if abs(correction_db) > 0.005:
        filters.append("volume=%.3fdB" % correction_db)
    limit = _db_to_linear(settings.true_peak_db - LIMITER_MARGIN_DB)
    # level=0: no auto gain (it would undo the loudness target); latency=1: no shift in time.
    filters.append("alimiter=limit=%.5f:attack=2:release=60:level=0:latency=1" % limit)
    return filters


def gain_for(measured, settings):
    """The gain that brings ``measured`` (a Loudness) to the target, capped; silence gets 0."""
    if measured.silent:
        return 0.0
    gain = settings.target_lufs - measured.integrated_lufs
    return min(gain, settings.max_gain_db)


def source_warnings(measured, clipped_fraction, settings):
    """What the operator should know about the source (English; the UI may translate)."""
    warnings = []
    if measured.silent:
        warnings.append("near-silent: the recording is silent (below %.0f LUFS); "
                        "it was not amplified" % SILENCE_LUFS)
    elif measured.integrated_lufs < settings.near_silent_lufs:
        warnings.append("near-silent: the recording is very quiet (%.1f LUFS); raising it "
                        "also raises its background noise" % measured.integrated_lufs)
    if clipped_fraction >= settings.clipped_fraction:
        warnings.append("clipped: %.1f%% of the samples are at full scale; the recording was "
                        "distorted before it reached us" % (100.0 * clipped_fraction))
    return warnings


def lu_difference(a, b):
    if a is None or b is None or math.isinf(a) or math.isinf(b):
        return float("inf")
    return abs(a - b)
