"""Source recording in, loudness-matched renditions out, cached by content hash.

    rs = make_renditions("bulletin.m4a", "/var/lib/loaxa/media")
    rs.renditions["mp3"].path, rs.renditions["adpcm"].sha256, rs.loudness_after, rs.warnings

The cache key is the SHA-256 of the source bytes plus the settings' fingerprint and the codec
list, so the same recording uploaded twice (or converted again after a restart) costs one hash.
A set is built in a temporary directory in the cache (".building-*", its raw work file in
".work-*") and renamed into place when complete:
a crash or a concurrent conversion never leaves a half-written set, and temporary files are
removed in ``finally`` whatever happens.

The three ffmpeg passes are described in ``audio.loudness``.

Every rendition of a set starts with the same lead-in: the first source sample comes out of
every receiver's decoder the same time after the rendition's first sample, so receivers of
different codecs told to play at T are heard in step to the sample. MP3 cannot start sooner
than LAME's delay (``audio.mp3.LAME_DECODED_DELAY``, 1,105 samples: 69 ms at 16 kHz), and a
VS1053 cannot skip it, so the other renditions are given silence in front until they reach it
(``lead_in``). Without that the MP3 poles of a village were 69 ms behind the ADPCM ones.
The lead-in is that of all the codecs, whichever a set holds: a rendition made with the same
settings starts at the same time in any set, so enabling a codec later changes nothing.
"""

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace

from audio import adpcm, ffmpeg, loudness, mp3
from audio.decode import decoded_delay
from audio.probe import check_size, probe
from audio.settings import DEFAULT_SETTINGS

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# Part of the cache key: bump it when the processing changes in a way the settings do not
# show (filter parameters, the LAME trim), so old renditions are not served as new ones.
PIPELINE_VERSION = 4  # 4: every rendition with the same lead-in
CODECS = ("mp3", "adpcm")
FILE_NAMES = {"mp3": "audio.mp3", "adpcm": "audio.adpcm"}
NORMALISED_NAME = "normalised.wav"
# LAME's decoded output is 0.45 dB quieter than its input, at every rate and bitrate we tried
# (16-44.1 kHz, 24-128 kbit/s; a steady tone as much as speech), which would leave every MP3
# rendition 0.4-0.5 LU under the target. The MP3 branch gets that back before the encoder; the
# peaks come out of the decoder where they went into the trim, under the ceiling.
LAME_LEVEL_LOSS_DB = 0.45
# Share of the work each pass takes, for one progress bar (measured on a 60-minute file).
_PASS_WEIGHTS = (("analyse", 0.45), ("measure", 0.2), ("encode", 0.35))


@dataclass(frozen=True)
class Rendition:
    codec: str
    path: str
    sha256: str
    size: int
    duration_ms: int
    rate: int
    bitrate: int | None = None       # kbit/s, mp3
    block_bytes: int | None = None   # adpcm
    # Samples its decoder gives before the first source sample: the same time in every
    # rendition of a set (``lead_in``); ``duration_ms`` includes them, as they are played.
    lead_samples: int = 0


@dataclass(frozen=True)
class RenditionSet:
    source_sha256: str
    duration_ms: int
    loudness_before: float           # LUFS, integrated, of the source as uploaded
    loudness_after: float            # LUFS, integrated, of the normalised audio
    true_peak_after: float | None
    gain_db: float
    warnings: list = field(default_factory=list)
    renditions: dict = field(default_factory=dict)
    normalised_path: str | None = None   # 16-bit WAV at the ADPCM rate, if asked for
    cached: bool = False


def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def _cache_key(source_sha, settings, codecs, keep_normalised, downmix=None):
    return "%s-%s-p%d-%s%s%s" % (source_sha[:32], settings.fingerprint(), PIPELINE_VERSION,
                                 "+".join(codecs), "-n" if keep_normalised else "",
                                 "-" + downmix if downmix else "")


def _load_manifest(directory):
    """The cached RenditionSet in ``directory``, or None if absent or incomplete."""
    try:
        with open(os.path.join(directory, MANIFEST)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if data.get("version") != MANIFEST_VERSION:
        return None
    renditions = {}
    for codec, item in data["renditions"].items():
        item = dict(item, path=os.path.join(directory, item["path"]))
        if not os.path.isfile(item["path"]) or os.path.getsize(item["path"]) != item["size"]:
            return None
        renditions[codec] = Rendition(**item)
    fields = dict(data["set"], renditions=renditions, cached=True)
    if fields.get("normalised_path"):
        fields["normalised_path"] = os.path.join(directory, fields["normalised_path"])
    return RenditionSet(**fields)


def _write_manifest(directory, rendition_set):
    fields = asdict(rendition_set)
    renditions = fields.pop("renditions")
    fields.pop("cached")
    if fields["normalised_path"]:
        fields["normalised_path"] = os.path.basename(fields["normalised_path"])
    for item in renditions.values():
        item["path"] = os.path.basename(item["path"])
    with open(os.path.join(directory, MANIFEST), "w") as f:
        json.dump({"version": MANIFEST_VERSION, "set": fields, "renditions": renditions}, f,
                  indent=1)


class _Progress:
    """Maps each pass's own 0..1 onto one overall 0..1 for the caller's callback."""

    def __init__(self, callback):
        self.callback = callback
        self.done = 0.0

    def stage(self, name):
        weight = dict(_PASS_WEIGHTS)[name]
        start = self.done
        self.done += weight
        if self.callback is None:
            return None
        return lambda fraction: self.callback(min(1.0, start + weight * fraction), name)

    def finish(self):
        if self.callback is not None:
            self.callback(1.0, "done")


def lead_in(settings, codecs=CODECS):
    """``{codec: samples}``: the lead-in each rendition starts with, in its own rate's samples.

    The shortest time that is at least every codec's decoded delay and a whole number of
    samples at every rendition's rate (a multiple of 1/gcd(rates) s), so the first source
    sample falls on a sample in every rendition, at exactly the same time, whatever the rates:
    1,105 samples at 16 kHz for both; 1,323 MP3 samples at 22,050 Hz and 960 ADPCM samples at
    16 kHz (60 ms) when the rates differ.
    """
    rates = {codec: settings.rate_for(codec) for codec in codecs}
    if not rates:
        return {}
    step = functools.reduce(math.gcd, rates.values())  # 1/step s: a whole sample at every rate
    units = max(-(-decoded_delay(codec) * step // rate) for codec, rate in rates.items())
    return {codec: units * rate // step for codec, rate in rates.items()}


def _encoder_args(codec, settings):
    if codec == "mp3":
        # CBR, no bit reservoir (every frame decodes alone), no Xing/ID3 tags: the file is
        # nothing but audio frames, ready to be cut into live frames.
        return ["-c:a", "libmp3lame", "-b:a", "%dk" % settings.mp3_bitrate_kbps,
                "-reservoir", "0", "-write_xing", "0", "-id3v2_version", "0",
                "-map_metadata", "-1", "-f", "mp3"]
    return adpcm.ffmpeg_encoder_args(settings.adpcm_block_bytes)


def _raw_input(settings, rate, path):
    return ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", path]


def _analyse(src, work_path, rate, settings, duration_s, progress, downmix=None):
    """Pass A: measure the source, write it band-passed, mono, at ``rate`` as raw float.
    ``downmix="left"``: the left channel alone (out-of-phase stereo, ``audio.screen``)."""
    chain = ["pan=mono|c0=c0"] if downmix == "left" else []
    chain += ["aresample=%d" % rate, "aformat=sample_fmts=flt:channel_layouts=mono"]
    chain += loudness.speech_filters(settings)
    chain.append(loudness.ebur128_filter("work", true_peak=False))
    # The source's own loudness (all channels, as BS.1770 counts them) is measured at the work
    # rate: ebur128 at 44.1 kHz stereo costs as much as the rest of this pass, and what lies
    # above 8 kHz moves speech's loudness by a tenth of a LU. Clipping is counted at the
    # source rate, where a clipped sample is still a flat top.
    graph = ("[0:a:0]asplit=3[m][c][w];"
             "[m]aresample=%d,%s,anullsink;[c]%s,anullsink;[w]%s[out]"
             % (rate, loudness.ebur128_filter("source", true_peak=False),
                loudness.clip_counter_filter("clip"), ",".join(chain)))
    stderr = ffmpeg.run_with_progress(
        ["-i", src, "-filter_complex", graph, "-map", "[out]", "-f", "f32le", work_path],
        duration_s=duration_s, progress=progress)
    found = loudness.parse_ebur128(stderr)
    return found["source"], found["work"], loudness.parse_clipped_fraction(stderr, "clip")


def _measure_dynamics(work_path, rate, settings, gain_db, duration_s, progress):
    """Pass B: loudness after gain, compressor and limiter."""
    chain = loudness.dynamics_filters(settings, gain_db)
    chain.append(loudness.ebur128_filter("dyn", true_peak=False))
    stderr = ffmpeg.run_with_progress(
        _raw_input(settings, rate, work_path) + ["-af", ",".join(chain), "-f", "null", "-"],
        duration_s=duration_s, progress=progress)
    return loudness.parse_ebur128(stderr)["dyn"]


def _encode(work_path, rate, settings, codecs, gain_db, correction_db, out_dir,
            keep_normalised, duration_s, progress):
    """Pass C: the final chain, one encoder per rendition, and the output measurement."""
    chain = loudness.dynamics_filters(settings, gain_db, correction_db)
    leads = lead_in(settings)
    branches = list(codecs) + (["normalised"] if keep_normalised else [])
    labels = "".join("[b%d]" % i for i in range(len(branches)))
    graph = ["[0:a]%s,asplit=%d%s[m]" % (",".join(chain), len(branches) + 1, labels),
             "[m]%s,anullsink" % loudness.ebur128_filter("after")]
    outputs, paths = [], {}
    for i, name in enumerate(branches):
        out_rate = settings.adpcm_rate if name == "normalised" else settings.rate_for(name)
        resample = "aresample=%d," % out_rate if out_rate != rate else ""
        trim = "volume=%.2fdB," % LAME_LEVEL_LOSS_DB if name == "mp3" else ""
        # Silence in front, up to the set's lead-in (the normalised audio has none: it is the
        # reference the renditions are measured against).
        pad = leads[name] - decoded_delay(name) if name in leads else 0
        delay = "adelay=%dS," % pad if pad else ""
        graph.append("[b%d]%s%s%saformat=sample_fmts=s16[o%d]" % (i, resample, delay, trim, i))
        path = os.path.join(out_dir, NORMALISED_NAME if name == "normalised"
                            else FILE_NAMES[name])
        encoder = (["-c:a", "pcm_s16le", "-f", "wav"] if name == "normalised"
                   else _encoder_args(name, settings))
        outputs += ["-map", "[o%d]" % i, "-ar", str(out_rate), "-ac", "1", *encoder, path]
        paths[name] = path
    stderr = ffmpeg.run_with_progress(
        _raw_input(settings, rate, work_path) + ["-filter_complex", ";".join(graph), *outputs],
        duration_s=duration_s, progress=progress)
    return loudness.parse_ebur128(stderr)["after"], paths


def _describe(codec, path, settings, lead_samples):
    with open(path, "rb") as f:
        data = f.read()
    if codec == "mp3":
        return Rendition(codec=codec, path=path, sha256=hashlib.sha256(data).hexdigest(),
                         size=len(data), duration_ms=int(round(mp3.duration_ms(data))),
                         rate=settings.mp3_rate, bitrate=settings.mp3_bitrate_kbps,
                         lead_samples=lead_samples)
    samples = adpcm.sample_count(len(data), settings.adpcm_block_bytes)
    return Rendition(codec=codec, path=path, sha256=hashlib.sha256(data).hexdigest(),
                     size=len(data), duration_ms=samples * 1000 // settings.adpcm_rate,
                     rate=settings.adpcm_rate, block_bytes=settings.adpcm_block_bytes,
                     lead_samples=lead_samples)


def make_renditions(src_path, cache_dir, codecs=CODECS, settings=None, *, progress=None,
                    keep_normalised=False, downmix=None):
    """Validate ``src_path``, normalise it and encode ``codecs``; return a RenditionSet.

    Raises ``audio.probe.AudioRejected`` for a file that cannot go on the air.
    ``progress(fraction, stage)`` is called as the work advances (None: silent).
    ``keep_normalised`` also keeps the normalised audio as a 16-bit WAV (for tests).
    ``downmix``: None mixes every channel to mono; "left" takes the left channel alone.
    """
    if downmix not in (None, "left"):
        raise ValueError("unknown downmix %r (expected None or 'left')" % downmix)
    settings = settings or DEFAULT_SETTINGS
    codecs = tuple(sorted(set(codecs), key=CODECS.index))
    for codec in codecs:
        settings.rate_for(codec)  # ValueError for an unknown codec, before any work
    src_path = os.fspath(src_path)
    check_size(src_path, settings)  # an oversized upload is refused before it is even hashed
    os.makedirs(cache_dir, exist_ok=True)
    source_sha = sha256_file(src_path)
    final_dir = os.path.join(cache_dir, _cache_key(source_sha, settings, codecs, keep_normalised,
                                                      downmix))
    cached = _load_manifest(final_dir)
    if cached is not None:
        return cached

    info = probe(src_path, settings)
    rate = settings.work_rate(codecs)
    steps = _Progress(progress)
    build_dir = tempfile.mkdtemp(prefix=".building-", dir=cache_dir)
    # The raw work file (4 bytes a sample: 230 MB for an hour) beside the cache, not in /tmp:
    # a process killed mid-way leaves it where its owner can find it (".work-*", as the
    # half-built set is ".building-*").
    work_dir = tempfile.mkdtemp(prefix=".work-", dir=cache_dir)
    try:
        work_path = os.path.join(work_dir, "work.f32")
        before, work, clipped = _analyse(src_path, work_path, rate, settings, info.duration_s,
                                         steps.stage("analyse"), downmix)
        gain_db = loudness.gain_for(work, settings)
        dynamics = _measure_dynamics(work_path, rate, settings, gain_db, info.duration_s,
                                     steps.stage("measure"))
        correction_db = 0.0 if work.silent or dynamics.silent else \
            settings.target_lufs - dynamics.integrated_lufs
        # Never push past the gain cap through the back door of the correction.
        correction_db = min(correction_db, settings.max_gain_db - gain_db)
        after, paths = _encode(work_path, rate, settings, codecs, gain_db, correction_db,
                               build_dir, keep_normalised, info.duration_s,
                               steps.stage("encode"))
        warnings = loudness.source_warnings(before, clipped, settings)
        if not after.silent and abs(after.integrated_lufs - settings.target_lufs) > 1.0:
            warnings.append("loudness: reached %.1f LUFS instead of %.1f LUFS"
                            % (after.integrated_lufs, settings.target_lufs))
        leads = lead_in(settings)
        renditions = {codec: _describe(codec, paths[codec], settings, leads[codec])
                      for codec in codecs}
        # The decoded length, not the container's claim (AMR and VBR MP3 only estimate it).
        decoded_ms = os.path.getsize(work_path) // 4 * 1000 // rate
        result = RenditionSet(
            source_sha256=source_sha, duration_ms=decoded_ms or int(round(info.duration_s * 1000)),
            loudness_before=before.integrated_lufs, loudness_after=after.integrated_lufs,
            true_peak_after=after.true_peak_db,
            gain_db=round(gain_db + correction_db, 2), warnings=warnings,
            renditions=renditions, normalised_path=paths.get("normalised"))
        _write_manifest(build_dir, result)
        try:
            os.rename(build_dir, final_dir)
        except OSError:
            # Someone else finished the same set first; theirs is as good as ours.
            if _load_manifest(final_dir) is None:
                raise
        steps.finish()
        return replace(_load_manifest(final_dir), cached=False)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        shutil.rmtree(build_dir, ignore_errors=True)
