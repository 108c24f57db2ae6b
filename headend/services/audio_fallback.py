"""TEMPORARY stand-in for ``audio.renditions.make_renditions`` until the audio package lands.

Same signature and result shape (``.duration_ms``, ``.renditions[codec]`` with ``.codec``,
``.path``, ``.sha256``, ``.size``, ``.duration_ms``, ``.rate``) and the same refusal type
(``.reason``, ``.message_vi``), done with one direct ffmpeg call per rendition. Delete this
file once audio.renditions exists.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

from protocol.media import ADPCM_BLOCK_BYTES


class AudioRejected(Exception):
    def __init__(self, reason, message, message_vi):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.message_vi = message_vi


@dataclass
class Rendition:
    codec: str
    path: str
    sha256: str
    size: int
    duration_ms: int
    rate: int


@dataclass
class Renditions:
    duration_ms: int
    renditions: dict = field(default_factory=dict)


def _ffmpeg():
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_renditions(src_path, cache_dir, codecs=("mp3", "adpcm"), settings=None):
    os.makedirs(cache_dir, exist_ok=True)
    rate = 22050 if settings is None else getattr(settings, "rate", 22050)
    result = Renditions(duration_ms=0)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        wav = os.path.join(tmp, "pcm.wav")
        run = subprocess.run([_ffmpeg(), "-v", "error", "-y", "-i", str(src_path), "-vn", "-ac",
                              "1", "-ar", str(rate), "-c:a", "pcm_s16le", wav],
                             capture_output=True)
        if run.returncode != 0 or not os.path.exists(wav) or os.path.getsize(wav) <= 44:
            raise AudioRejected("not-audio", "the file is not audio ffmpeg can read",
                                "Tệp không phải là âm thanh hợp lệ")
        samples = (os.path.getsize(wav) - 44) // 2
        duration_ms = samples * 1000 // rate
        if duration_ms < 100:
            raise AudioRejected("too-short", "the recording is empty or shorter than 0.1 s",
                                "Bản ghi trống hoặc quá ngắn")
        result.duration_ms = duration_ms
        for codec in codecs:
            out = os.path.join(tmp, "out." + codec)
            if codec == "mp3":
                args = ["-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3"]
            else:
                args = ["-c:a", "adpcm_ima_wav", "-block_size", str(ADPCM_BLOCK_BYTES), "-f", "wav"]
            subprocess.run([_ffmpeg(), "-v", "error", "-y", "-i", wav] + args + [out], check=True,
                           capture_output=True)
            if codec == "adpcm":
                out = _strip_wav_header(out)
            sha = _sha256(out)
            final = os.path.join(cache_dir, "%s.%s" % (sha, codec))
            os.replace(out, final)
            result.renditions[codec] = Rendition(codec, final, sha, os.path.getsize(final),
                                                 duration_ms, rate)
    return result


def _strip_wav_header(path):
    """The receivers want bare ADPCM blocks: copy the WAV's data chunk out."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos:pos + 4] == b"data":
            raw = path + ".raw"
            with open(raw, "wb") as out:
                out.write(data[pos + 8:pos + 8 + size])
            return raw
        pos += 8 + size + (size & 1)
    raise AudioRejected("encode-failed", "ADPCM encoding failed", "Không mã hoá được ADPCM")
