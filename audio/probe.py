"""Probe and ingest validation: what is this file, and can it go on the air?

``probe(path)`` reads the container (ffprobe when installed, otherwise ``ffmpeg -i`` output),
then proves the audio decodes at its start and at its declared end, so a file cut short in
transfer is refused now rather than ending early on every pole. Refusals raise
``AudioRejected`` with a ``reason`` code, an English ``str(e)`` and ``message_vi`` for the
operator's page.
"""

import json
import os
import re
from dataclasses import dataclass

from audio import ffmpeg
from audio.settings import DEFAULT_SETTINGS

# Decoded check audio: mono s16 at a low rate, enough to count how much decoded.
_CHECK_RATE = 8000
_CHECK_BYTES_PER_S = _CHECK_RATE * 2
# How much of the start and of the declared end must decode.
_HEAD_CHECK_S = 1.0
_TAIL_CHECK_S = 2.0
_MIN_TAIL_DECODED_S = 0.25

REASONS = ("not-audio", "empty", "truncated", "too-large", "too-long", "unsupported")


class AudioRejected(Exception):
    """A file refused at ingest. ``reason`` is one of ``REASONS``."""

    def __init__(self, reason, message, message_vi):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.message_vi = message_vi


@dataclass(frozen=True)
class ProbeResult:
    duration_s: float
    channels: int
    sample_rate: int
    codec: str
    format: str
    size_bytes: int
    bit_rate: int | None = None


def _clock(seconds):
    seconds = int(round(seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def _mb(nbytes):
    return "%.1f MB" % (nbytes / (1024 * 1024))


def rejected(reason, name, **facts):
    """Build the AudioRejected for ``reason`` with both languages' messages."""
    texts = {
        "empty": ("%(name)s is empty (0 bytes).",
                  "Tệp %(name)s rỗng (0 byte)."),
        "not-audio": ("%(name)s is not an audio recording: no sound track was found in it.",
                      "Tệp %(name)s không phải là bản ghi âm thanh: không tìm thấy dữ liệu âm thanh."),
        "truncated": ("%(name)s is cut short: %(detail)s. Upload the complete file again.",
                      "Tệp %(name)s bị thiếu phần cuối (tải lên chưa hết): %(detail_vi)s. "
                      "Hãy tải lại tệp đầy đủ."),
        "too-large": ("%(name)s is %(size)s; the limit is %(limit)s.",
                      "Tệp %(name)s có dung lượng %(size)s, vượt quá giới hạn %(limit)s."),
        "too-long": ("%(name)s lasts %(duration)s; the limit is %(limit)s.",
                     "Bản ghi %(name)s dài %(duration)s, vượt quá giới hạn %(limit)s."),
        "unsupported": ("%(name)s uses an audio format that cannot be decoded here (%(codec)s).",
                        "Tệp %(name)s dùng định dạng âm thanh không được hỗ trợ (%(codec)s)."),
    }
    en, vi = texts[reason]
    facts = dict(facts, name=name)
    facts.setdefault("detail", "")
    facts.setdefault("detail_vi", "")
    return AudioRejected(reason, en % facts, vi % facts)


# ---- reading the container ------------------------------------------------------------------

def _probe_ffprobe(path):
    code, out, err = ffmpeg.run_ffprobe(
        ["-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)])
    if code != 0:
        return None, err
    try:
        data = json.loads(out)
    except ValueError:
        return None, err
    fmt = data.get("format") or {}
    audio = [s for s in data.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        return None, err
    stream = audio[0]

    def number(value, kind):
        try:
            return kind(value)
        except (TypeError, ValueError):
            return None

    duration = number(stream.get("duration"), float) or number(fmt.get("duration"), float)
    return {
        "duration_s": duration,
        "channels": number(stream.get("channels"), int) or 0,
        "sample_rate": number(stream.get("sample_rate"), int) or 0,
        "codec": stream.get("codec_name") or "unknown",
        "format": fmt.get("format_name") or "unknown",
        "bit_rate": number(stream.get("bit_rate"), int) or number(fmt.get("bit_rate"), int),
    }, err


_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4, "4.0": 4,
                    "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}
_INPUT_RE = re.compile(r"^Input #0, (.+), from '", re.M)
_DURATION_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_BITRATE_RE = re.compile(r"bitrate: (\d+) kb/s")
_AUDIO_RE = re.compile(r"Stream #0:\d+[^:]*: Audio: ([a-z0-9_]+)[^,]*, (\d+) Hz, ([^,]+)")


def _probe_ffmpeg_banner(path):
    """The ffprobe-less path: parse what ``ffmpeg -i FILE`` prints about its input."""
    _, err = ffmpeg.run(["-i", str(path)], check=False)
    audio = _AUDIO_RE.search(err)
    if audio is None:
        return None, err
    fmt = _INPUT_RE.search(err)
    duration = _DURATION_RE.search(err)
    bitrate = _BITRATE_RE.search(err)
    layout = audio.group(3).strip()
    channels = _LAYOUT_CHANNELS.get(layout.split("(")[0])
    if channels is None:
        m = re.match(r"(\d+) channels", layout)
        channels = int(m.group(1)) if m else 0
    return {
        "duration_s": (int(duration.group(1)) * 3600 + int(duration.group(2)) * 60
                       + float(duration.group(3))) if duration else None,
        "channels": channels,
        "sample_rate": int(audio.group(2)),
        "codec": audio.group(1),
        "format": fmt.group(1) if fmt else "unknown",
        "bit_rate": int(bitrate.group(1)) * 1000 if bitrate else None,
    }, err


def read_container(path):
    """Container facts without decoding: a dict, or None with ffmpeg's messages."""
    if ffmpeg.ffprobe_exe() is not None:
        return _probe_ffprobe(path)
    return _probe_ffmpeg_banner(path)


# ---- decoding checks ------------------------------------------------------------------------

_NO_DECODER_RE = re.compile(r"[Dd]ecoder .*not found|no decoder found|Unknown decoder")


def decoded_seconds(path, start_s=None, length_s=None):
    """Decode (part of) the first audio stream; return (seconds decoded, ffmpeg messages)."""
    args = []
    if start_s:
        args += ["-ss", "%.3f" % start_s]
    args += ["-i", str(path)]
    if length_s:
        args += ["-t", "%.3f" % length_s]
    args += ["-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(_CHECK_RATE),
             "-f", "s16le", "pipe:1"]
    out, err = ffmpeg.run(args, check=False)
    return len(out) / _CHECK_BYTES_PER_S, err


# ---- the public entry point -----------------------------------------------------------------

def check_size(path, settings=None):
    """The file's size, or AudioRejected ("empty", "too-large") before anything reads it."""
    settings = settings or DEFAULT_SETTINGS
    size = os.path.getsize(path)  # a missing file is the caller's bug: FileNotFoundError
    name = os.path.basename(path)
    if size == 0:
        raise rejected("empty", name)
    if size > settings.max_upload_bytes:
        raise rejected("too-large", name, size=_mb(size), limit=_mb(settings.max_upload_bytes))
    return size


def probe(path, settings=None):
    """Probe and validate ``path``; return a ProbeResult or raise AudioRejected."""
    settings = settings or DEFAULT_SETTINGS
    path = os.fspath(path)
    name = os.path.basename(path)
    size = check_size(path, settings)

    info, err = read_container(path)
    if info is None:
        raise rejected("not-audio", name)

    duration = info["duration_s"]
    if duration is None:
        # Containers written live (browser WebM/Opus) carry no duration: decode to count it.
        duration, err = decoded_seconds(path)
        decodes = duration > 0
    elif duration > _TAIL_CHECK_S + _HEAD_CHECK_S:
        # One decode of the declared end proves both that the codec decodes and that nothing
        # is missing; only when it fails is the start decoded, to tell which of the two it is.
        tail_s, err = decoded_seconds(path, start_s=duration - _TAIL_CHECK_S)
        decodes = tail_s >= _MIN_TAIL_DECODED_S
        if not decodes and decoded_seconds(path, length_s=_HEAD_CHECK_S)[0] > 0:
            raise rejected(
                "truncated", name,
                detail="its header says %s but the end of the audio is missing" % _clock(duration),
                detail_vi="phần đầu tệp ghi dài %s nhưng thiếu dữ liệu phần cuối" % _clock(duration))
    else:
        decoded, err = decoded_seconds(path)
        decodes = decoded > 0
    if not decodes:
        if _NO_DECODER_RE.search(err) or info["codec"] in ("none", "unknown"):
            raise rejected("unsupported", name, codec=info["codec"])
        raise rejected("truncated", name, detail="no audio could be decoded from it",
                       detail_vi="không giải mã được đoạn âm thanh nào")

    if duration > settings.max_duration_s:
        raise rejected("too-long", name, duration=_clock(duration),
                       limit=_clock(settings.max_duration_s))
    return ProbeResult(duration_s=duration, channels=info["channels"],
                       sample_rate=info["sample_rate"], codec=info["codec"],
                       format=info["format"], size_bytes=size, bit_rate=info["bit_rate"])
