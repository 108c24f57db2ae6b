"""A radio station on 127.0.0.1 for relay tests: an Icecast-like endless MP3 stream sent at
real time, and any files of a directory (an HLS playlist and its segments), over plain HTTP in
a thread (so it serves an async test, a TestClient test and a head-end process alike).

    with StreamServer(tmp_path, sound_pcm) as radio:
        radio.url("/live.mp3")            # the stream, looping ``sound_pcm`` as MP3 (or AAC:
                                          # StreamServer(..., codec="aac"), ADTS frames)
        radio.mode = "silent"             # the same stream, now digital silence
        radio.mode = "stalled"            # connections stay open, nothing is sent
        radio.kill(); radio.start()       # gone (connection refused), then back on its port

Everything is made by real ffmpeg: ``encoded`` encodes PCM, ``make_hls`` writes a playlist.
Imported as a top-level module, like ``polling`` (``tests/`` is on ``sys.path``).
"""

import http.server
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from audio.ffmpeg import ffmpeg_exe

RATE = 16000
MP3_KBPS = 32
_CHUNK_S = 0.1


_ENCODERS = {"mp3": ["-c:a", "libmp3lame", "-write_xing", "0", "-id3v2_version", "0"],
             "aac": ["-c:a", "aac", "-f", "adts"]}  # AAC as Icecast sends it: ADTS frames


def encoded(pcm: np.ndarray, path: Path, codec: str = "mp3", rate: int = RATE) -> bytes:
    """``pcm`` (int16 mono) as a CBR MP3 (or ADTS AAC) file at ``path``; returns its bytes."""
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "s16le",
                    "-ar", str(rate), "-ac", "1", "-i", "pipe:0", "-b:a", "%dk" % MP3_KBPS]
                   + _ENCODERS[codec] + [str(path)], input=pcm.astype("<i2").tobytes(),
                   check=True)
    return path.read_bytes()


def make_hls(pcm: np.ndarray, directory: Path, segment_s: float = 2.0,
             rate: int = RATE) -> Path:
    """An HLS playlist (AAC in MPEG-TS segments) of ``pcm`` in ``directory``; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    playlist = directory / "radio.m3u8"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "s16le",
                    "-ar", str(rate), "-ac", "1", "-i", "pipe:0", "-c:a", "aac", "-b:a", "48k",
                    "-f", "hls", "-hls_time", str(segment_s), "-hls_list_size", "0",
                    "-hls_segment_filename", str(directory / "seg-%03d.ts"), str(playlist)],
                   input=pcm.astype("<i2").tobytes(), check=True)
    return playlist


class StreamServer:
    def __init__(self, workdir: Path, sound: np.ndarray, port: int = 0, codec: str = "mp3"):
        workdir.mkdir(parents=True, exist_ok=True)
        self.root = workdir
        self.codec = codec
        self._streams = {"sound": encoded(sound, workdir / ("sound." + codec), codec),
                         "silent": encoded(np.zeros(len(sound), dtype=np.int16),
                                           workdir / ("silent." + codec), codec)}
        self.mode = "sound"  # sound | silent | stalled
        self.port = port
        self.requests: list[str] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._alive = threading.Event()

    def url(self, path: str) -> str:
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.kill()

    def start(self) -> None:
        radio = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                radio.requests.append(self.path)
                if self.path.startswith("/live."):
                    radio._send_stream(self)
                    return
                path = (radio.root / self.path.lstrip("/").split("?")[0]).resolve()
                if radio.root.resolve() not in path.parents or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                kind = ("application/vnd.apple.mpegurl" if path.suffix == ".m3u8"
                        else "video/mp2t" if path.suffix == ".ts" else "audio/mpeg")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._alive.set()
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def kill(self) -> None:
        """The station goes away: open streams are cut, new connections refused."""
        self._alive.clear()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _send_stream(self, handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "audio/mpeg" if self.codec == "mp3" else "audio/aac")
        handler.send_header("icy-name", "Loaxa test radio")
        handler.end_headers()
        per_chunk = int(MP3_KBPS * 1000 / 8 * _CHUNK_S)
        positions = dict.fromkeys(self._streams, 0)
        start = time.monotonic()
        sent = 0
        try:
            while self._alive.is_set():
                due = start + sent * _CHUNK_S
                time.sleep(max(0.0, due - time.monotonic()))
                sent += 1
                mode = self.mode
                if mode == "stalled":
                    continue
                data = self._streams[mode]
                pos = positions[mode]
                chunk = (data + data)[pos:pos + per_chunk]
                positions[mode] = (pos + per_chunk) % len(data)
                handler.wfile.write(chunk)
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        try:  # cut like a crashed server: no clean end of the response
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
