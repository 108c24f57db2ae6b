"""Media for simulated receivers: test items made and served as the head-end makes and serves them.

``make_test_item`` makes a tone (its pitch derived from the item id, so two items never share
a hash), or a chirp rising from that pitch (``signal="chirp"``: a sharp onset and no period,
so two recordings of it cross-correlate with one clear peak), and turns it into renditions
with ``audio.renditions.make_renditions``, the head-end's own path and encoder flags.
``MediaServer`` serves them through the head-end's own media route (headend/media_http.py:
GET /media/{sha256}.{ext}, Range requests answered 206) in a small ASGI app under uvicorn, in
a thread on 127.0.0.1; only where a file is comes from here (the items it was given) instead
of the head-end's database.
"""

import os
import socket
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from audio import ffmpeg
from audio.renditions import make_renditions
from headend.settings import Settings

DEFAULT_RATE = 16000
_LISTEN_BACKLOG = 1024  # a whole fleet fetches at once: no SYN may wait for a retransmission
_START_TIMEOUT_S = 10.0


class Rendition:
    """One rendition of a test item, with the fields of the head-end's ``Rendition`` row
    (headend/models.py), which ``headend.planning.media_fields`` reads."""

    def __init__(self, made):
        self.codec = made.codec
        self.ext = made.codec  # named as the head-end names an upload's renditions
        self.path = str(made.path)
        self.sha256 = made.sha256
        self.size = made.size
        self.duration_ms = int(made.duration_ms)
        self.rate = made.rate

    # The names tests used before the head-end's: kept for them.
    @property
    def sha(self):
        return self.sha256

    @property
    def dur_ms(self):
        return self.duration_ms

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
        return max(r.duration_ms for r in self.renditions.values())


# aevalsrc expressions of the test signals, from the item's pitch ``freq`` (Hz).
SIGNALS = {"tone": "sin(2*PI*%(freq)d*t)*0.5",
           "chirp": "sin(2*PI*(%(freq)d+2000*t)*t)*0.5"}  # up 4 kHz/s, inside the speech band


def _tone(path, seconds, freq, rate, signal="tone"):
    expr = SIGNALS[signal] % {"freq": freq}
    ffmpeg.run(["-f", "lavfi", "-i", "aevalsrc='%s':s=%d:d=%.3f" % (expr, rate, seconds),
                "-ac", "1", path])


def make_test_item(directory, item_id="tone", seconds=2.0, rate=DEFAULT_RATE, signal="tone"):
    """A ``seconds`` long test ``signal`` (a key of SIGNALS) as a MediaItem with a rendition
    per codec the head-end makes (``Settings.media_codecs``: "mp3" and "adpcm")."""
    if signal not in SIGNALS:
        raise ValueError("unknown test signal %r (one of %s)" % (signal, ", ".join(SIGNALS)))
    os.makedirs(directory, exist_ok=True)
    source = os.path.join(directory, "%s.source.wav" % item_id)
    _tone(source, seconds, 300 + zlib.crc32(item_id.encode()) % 600, rate, signal)
    made = make_renditions(source, os.path.join(directory, "renditions"),
                           codecs=tuple(Settings().media_codecs))
    return MediaItem(item_id, {codec: Rendition(r) for codec, r in made.renditions.items()})


# -- serving through the head-end's route ------------------------------------------------------

class MediaServer:
    """The head-end's media route on 127.0.0.1 (a free port), in a thread, for the items
    ``add``-ed. ``settings`` is the head-end configuration that points receivers here
    (``public_base_url``); ``requests`` lists every (path, Range header or None) received."""

    def __init__(self, host="127.0.0.1", port=0):
        self._sock = socket.create_server((host, port), backlog=_LISTEN_BACKLOG)
        self.host, self.port = self._sock.getsockname()[:2]
        self.base_url = "http://%s:%d" % (self.host, self.port)
        self.settings = Settings(public_base_url=self.base_url)
        self._files = {}      # (sha256, ext) -> path
        self.requests = []    # (path, range header or None), in arrival order
        self._server = None
        self._thread = None

    def _find(self, sha, ext):
        path = self._files.get((sha, ext))
        return Path(path) if path else None

    def _app(self):
        from fastapi import FastAPI

        from headend.media_http import router, stored_renditions

        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.include_router(router)
        app.dependency_overrides[stored_renditions] = lambda: self._find
        return _CountRequests(app, self.requests)

    def start(self):
        import uvicorn

        config = uvicorn.Config(self._app(), log_level="warning", access_log=False,
                                lifespan="off", loop="asyncio", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        daemon=True, name="media-server")
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the media server did not start on %s" % self.base_url)
            time.sleep(0.01)
        return self

    def stop(self):
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT_S)
        self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def add(self, item):
        """Serve every rendition of a MediaItem; returns the item."""
        for r in item.renditions.values():
            self._files[(r.sha256, r.ext)] = r.path
        return item

    def url_of(self, rendition):
        """Where receivers fetch ``rendition``: the head-end's ``Settings.media_url``."""
        return self.settings.media_url(rendition.sha256, rendition.ext)

    def requests_for(self, item):
        """The requests received for any rendition of ``item``."""
        names = {urlsplit(self.url_of(r)).path for r in item.renditions.values()}
        return [req for req in list(self.requests) if req[0] in names]


class _CountRequests:
    """ASGI middleware: notes each HTTP request's path and Range header (test observation)."""

    def __init__(self, app, requests):
        self.app = app
        self.requests = requests

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or ())
            rng = headers.get(b"range")
            self.requests.append((scope["path"], rng.decode("latin-1") if rng else None))
        await self.app(scope, receive, send)
