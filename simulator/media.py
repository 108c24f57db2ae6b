"""Media for simulated receivers: a short test item in both renditions, served over HTTP.

Receivers fetch with range requests (resuming a partial download), so the server honours
``Range: bytes=a-b``. ``make_test_item`` makes a tone (its pitch derived from the item id, so
two items never share a hash), or a chirp rising from that pitch (``signal="chirp"``: a sharp
onset and no period, so a cross-correlation of two recordings has one unambiguous peak), and turns it into renditions with the audio package, as the
head-end does; where that package is not installed it falls back to ffmpeg directly (MP3 mono
CBR; IMA-ADPCM in 256-byte blocks taken out of ffmpeg's IMA WAV output, which is exactly
protocol/media.py's block layout).
"""

import hashlib
import os
import re
import shutil
import struct
import subprocess
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from protocol.media import ADPCM_BLOCK_BYTES, adpcm_samples_per_block

DEFAULT_RATE = 16000


class Rendition:
    """One encoded form of an item as a file: what a ``play``/``fetch`` command describes."""

    def __init__(self, path, codec, rate, dur_ms):
        self.path = str(path)
        self.codec = codec
        self.rate = rate
        self.dur_ms = int(dur_ms)
        with open(self.path, "rb") as f:
            data = f.read()
        self.size = len(data)
        self.sha = hashlib.sha256(data).hexdigest()
        self.url = None  # set when served

    def data(self):
        with open(self.path, "rb") as f:
            return f.read()


class MediaItem:
    """An item id and its renditions by codec."""

    def __init__(self, item_id, renditions):
        self.id = item_id
        self.renditions = dict(renditions)

    @property
    def dur_ms(self):
        return max(r.dur_ms for r in self.renditions.values())

    def args_for(self, codec):
        """The media fields of a ``play``/``fetch`` command for a receiver decoding ``codec``."""
        r = self.renditions[codec]
        if r.url is None:
            raise ValueError("media item %s is not served yet" % self.id)
        return {"item": self.id, "url": r.url, "sha": r.sha, "size": r.size, "dur": r.dur_ms,
                "codec": r.codec, "rate": r.rate}


def _ffmpeg():
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run_ffmpeg(args):
    subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"] + args, check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)


def adpcm_blocks_from_wav(wav_bytes):
    """The data chunk of an IMA-ADPCM WAV file: concatenated self-contained blocks."""
    if wav_bytes[:4] != b"RIFF" or wav_bytes[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    pos = 12
    while pos + 8 <= len(wav_bytes):
        chunk, size = struct.unpack("<4sI", wav_bytes[pos:pos + 8])
        if chunk == b"data":
            return wav_bytes[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    raise ValueError("WAV file has no data chunk")


# aevalsrc expressions of the test signals, from the item's pitch ``freq`` (Hz).
SIGNALS = {"tone": "sin(2*PI*%(freq)d*t)*0.5",
           "chirp": "sin(2*PI*(%(freq)d+2000*t)*t)*0.5"}  # freq + 4 kHz/s, inside the band


def _source_args(seconds, freq, rate, signal="tone"):
    expr = SIGNALS[signal] % {"freq": freq}
    return ["-f", "lavfi", "-i", "aevalsrc='%s':s=%d:d=%.3f" % (expr, rate, seconds)]


def _fallback_renditions(directory, item_id, seconds, freq, rate, signal):
    mp3 = os.path.join(directory, "%s.mp3" % item_id)
    _run_ffmpeg(_source_args(seconds, freq, rate, signal)
                + ["-ac", "1", "-c:a", "libmp3lame", "-b:a", "32k", "-write_xing", "0",
                   "-id3v2_version", "0", mp3])
    wav = os.path.join(directory, "%s.ima.wav" % item_id)
    _run_ffmpeg(_source_args(seconds, freq, rate, signal)
                + ["-ac", "1", "-c:a", "adpcm_ima_wav", "-block_size", str(ADPCM_BLOCK_BYTES), wav])
    with open(wav, "rb") as f:
        blocks = adpcm_blocks_from_wav(f.read())
    os.remove(wav)
    adpcm = os.path.join(directory, "%s.adpcm" % item_id)
    with open(adpcm, "wb") as f:
        f.write(blocks)
    samples = (len(blocks) // ADPCM_BLOCK_BYTES) * adpcm_samples_per_block()
    return {"mp3": Rendition(mp3, "mp3", rate, seconds * 1000),
            "adpcm": Rendition(adpcm, "adpcm", rate, samples * 1000 // rate)}


def _audio_package_renditions(directory, item_id, seconds, freq, rate, signal):
    from audio.renditions import make_renditions

    source = os.path.join(directory, "%s.source.wav" % item_id)
    _run_ffmpeg(_source_args(seconds, freq, rate, signal) + ["-ac", "1", source])
    made = make_renditions(source, os.path.join(directory, "renditions"))
    return {codec: Rendition(r.path, codec, r.rate, r.duration_ms)
            for codec, r in made.renditions.items()}


def _have_audio_package():
    try:
        import audio.renditions  # noqa: F401
    except ImportError:
        return False
    return True


def make_test_item(directory, item_id="tone", seconds=2.0, rate=DEFAULT_RATE, signal="tone"):
    """A ``seconds`` long test ``signal`` (a key of SIGNALS) as a MediaItem with an "mp3" and
    an "adpcm" rendition."""
    if signal not in SIGNALS:
        raise ValueError("unknown test signal %r (expected one of %s)"
                         % (signal, ", ".join(sorted(SIGNALS))))
    os.makedirs(directory, exist_ok=True)
    freq = 300 + zlib.crc32(item_id.encode()) % 600
    if _have_audio_package():
        renditions = _audio_package_renditions(directory, item_id, seconds, freq, rate, signal)
    else:
        renditions = _fallback_renditions(directory, item_id, seconds, freq, rate, signal)
    return MediaItem(item_id, renditions)


# -- HTTP with ranges --------------------------------------------------------------------------

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class MediaServer:
    """Serves registered files on 127.0.0.1 (free port) with range support, in a thread."""

    def __init__(self, host="127.0.0.1", port=0):
        self._files = {}      # url path -> file path
        self.requests = []    # (path, range header or None)
        self.fail_paths = set()  # url paths answered 503, for fault tests
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                server._serve(self)

            def do_HEAD(self):
                server._serve(self, head=True)

        class Server(ThreadingHTTPServer):
            # A whole fleet fetches at once: the default listen backlog of 5 would drop SYNs
            # and stall the rest for a second or more of TCP retransmission.
            request_queue_size = 1024
            daemon_threads = True

        self._httpd = Server((host, port), Handler)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="media-server")
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def add(self, item):
        """Serve every rendition of a MediaItem; sets each rendition's url."""
        for r in item.renditions.values():
            path = self._url_path(item, r)
            self._files[path] = r.path
            r.url = "http://%s:%d%s" % (self.host, self.port, path)
        return item

    @staticmethod
    def _url_path(item, rendition):
        return "/media/%s.%s" % (item.id, rendition.codec)

    def requests_for(self, item):
        names = {self._url_path(item, r) for r in item.renditions.values()}
        return [req for req in self.requests if req[0] in names]

    def _serve(self, handler, head=False):
        path = handler.path.split("?", 1)[0]
        rng = handler.headers.get("Range")
        self.requests.append((path, rng))
        if path in self.fail_paths:
            return self._reply(handler, 503, b"", head)
        filename = self._files.get(path)
        if filename is None:
            return self._reply(handler, 404, b"not found\n", head)
        with open(filename, "rb") as f:
            data = f.read()
        if not rng:
            return self._reply(handler, 200, data, head)
        match = _RANGE.match(rng.strip())
        if not match or not (match.group(1) or match.group(2)):
            return self._reply(handler, 416, b"", head, {"Content-Range": "bytes */%d" % len(data)})
        if match.group(1):
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
        else:  # suffix range: the last N bytes
            start = max(0, len(data) - int(match.group(2)))
            end = len(data) - 1
        end = min(end, len(data) - 1)
        if start >= len(data) or start > end:
            return self._reply(handler, 416, b"", head, {"Content-Range": "bytes */%d" % len(data)})
        return self._reply(handler, 206, data[start:end + 1], head,
                           {"Content-Range": "bytes %d-%d/%d" % (start, end, len(data))})

    @staticmethod
    def _reply(handler, status, body, head, headers=None):
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Type", "application/octet-stream")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
