"""Benchmark (issue 11, acceptance 4): live, mouth to ear, side by side with Snapcast and Icecast.

    .venv/bin/python bench/bench_live.py [--receivers 10,50] [--seconds 12] [--link sim|eth|wifi]
        [--no-snapcast] [--no-icecast] [--no-loaxa] [--install]

One source for every system: a quiet tone with sharp clicks at irregular times (16 kHz mono,
tests/integration/test_live_microphone.py's recording),
spoken at real time in 20 ms chunks; the capture time of each sample is the true (host) time
its chunk was handed over, less its place in the chunk, as a browser's AudioWorklet does.

- **Loaxa**: the head-end as its own process (headend/process.py), real Mosquitto, N simulated
  receivers in one village (the real firmware, half MP3 and half ADPCM, clocks off by up to
  ±1.5 s and drifting, reporting ``--link`` as their link type); the source goes in through the
  microphone WebSocket (`/api/v1/live/{id}/audio`), the path the /live page uses. Heard: each
  receiver's recording sink (simulator/sink.py: its bytes, decoded as the board decodes them,
  with its underruns put back as silence, on true time). Bytes on the wire: what each
  receiver's link (simulator/network.py LinkPath) read during the session.
- **Snapcast** (Debian ``snapserver``/``snapclient``, when installed): snapserver reads the
  same PCM from a pipe (its default codec, flac), N snapclients on loopback with the file
  player writing to stdout, read at once by the bench; run with snapserver's default buffer
  (1000 ms) and with 200 ms. Bytes: what the server's sockets to the clients sent (``ss``).
- **Icecast** (Debian ``icecast2``, when installed): ffmpeg encodes the same PCM to MP3 32 kbit/s
  (the Loaxa MP3 rendition's rate) and sends it to icecast2 (burst-on-connect off, the best
  case); N ffmpeg listeners decode it as it arrives: the earliest it could be heard, there is
  no synchronisation to measure, only how far apart the arrivals are.

For every system, click onsets are detected the same way (first sample above half the click's
peak after 100 ms of quiet) in the source and in each receiver's output on true time; a click
heard is matched to its source click through the recording's cross-correlation lag.
Figures: mouth-to-ear (capture of a click -> its onset heard) p50/p99 over every click of
every receiver; skew (per click, latest minus earliest receiver) p50/p99/max; kbps per
receiver (bytes / duration of the spoken window). The load average is printed with them: the
systems run one after the other in the same run, so their ratios are what to read.

Bounded: every phase has a time limit, every process the bench starts is stopped at the end.
``--install`` (as root) runs apt-get update and installs snapserver, snapclient and icecast2.
"""

import argparse
import asyncio
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from audio.decode import decode_to_pcm  # noqa: E402
from audio.ffmpeg import ffmpeg_exe  # noqa: E402
from tools.testbrokers import start_mosquitto  # noqa: E402

RATE = 16000
CHUNK = 320  # samples: 20 ms, the page's chunks
CLICK_PEAK = 20000
THRESHOLD = CLICK_PEAK // 2
QUIET_S = 0.1
LEAD_S = 1.0  # silence spoken before the first click
FRAME_HEADER = 32  # protocol/frames.py FRAME_OVERHEAD
PACKAGES = ("snapserver", "snapclient", "icecast2")


# --- the source and the onsets ---------------------------------------------------------------

def clicks_source(seconds):
    """The integration test's recording with clicks (a quiet tone, clicks at irregular
    times: one clear correlation peak), after LEAD_S of silence."""
    from test_live_microphone import speech_with_clicks

    return np.concatenate([np.zeros(int(LEAD_S * RATE), dtype="<i2"),
                           speech_with_clicks(seconds)])


def onsets(pcm):
    """Sample indices of click onsets: first sample above THRESHOLD after QUIET_S below it."""
    above = np.flatnonzero(np.abs(pcm.astype(np.int32)) > THRESHOLD)
    found, last = [], -10 ** 9
    for i in above:
        if i - last > QUIET_S * RATE:
            found.append(int(i))
        last = i
    return found


def coarse_lag(source, heard):
    """Samples by which ``heard`` is behind ``source`` (cross-correlation of the clicks)."""
    a = (np.abs(source.astype(np.float64)) > THRESHOLD).astype(np.float64)
    b = (np.abs(heard.astype(np.float64)) > THRESHOLD).astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    index = int(np.argmax(corr))
    return index if index < len(b) else index - n


class Speaker:
    """Hands the source over in 20 ms chunks at real time; knows each sample's capture time."""

    def __init__(self, pcm):
        self.pcm = pcm
        self.sent = []  # true time each chunk was handed over

    def chunks(self):
        data = self.pcm.tobytes()
        return [data[i:i + 2 * CHUNK] for i in range(0, len(data), 2 * CHUNK)]

    def captured_at(self, sample):
        """True time sample ``sample`` was captured: its chunk's hand-over less what followed."""
        k = sample // CHUNK
        return self.sent[k] - ((k + 1) * CHUNK - sample) / RATE

    def speak_blocking(self, write, stop=None):
        start = time.monotonic()
        for k, chunk in enumerate(self.chunks()):
            delay = start + (k + 1) * CHUNK / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if stop is not None and stop.is_set():
                return
            self.sent.append(time.time())
            write(chunk)

    async def speak(self, send):
        start = time.monotonic()
        for k, chunk in enumerate(self.chunks()):
            await asyncio.sleep(max(0.0, start + (k + 1) * CHUNK / RATE - time.monotonic()))
            self.sent.append(time.time())
            await send(chunk)


def measure(speaker, heard):
    """``heard``: {receiver: (true time of sample 0, int16 PCM at RATE)}. Returns mouth-to-ear
    (ms, every click of every receiver), per-click skews (ms), clicks heard / expected."""
    source_onsets = onsets(speaker.pcm)
    at = {}  # click index -> {receiver: true time heard}
    for receiver, (t0, pcm) in heard.items():
        if pcm is None or len(pcm) == 0:
            continue
        lag = coarse_lag(speaker.pcm, pcm)
        for i in onsets(pcm):
            # the source click this one is, through the recording's overall lag
            j = min(range(len(source_onsets)), key=lambda j: abs(source_onsets[j] + lag - i))
            if abs(source_onsets[j] + lag - i) < 0.06 * RATE:
                at.setdefault(j, {})[receiver] = t0 + i / RATE
    m2e = [1000.0 * (t - speaker.captured_at(source_onsets[j]))
           for j, heard_at in at.items() for t in heard_at.values()]
    skews = [1000.0 * (max(h.values()) - min(h.values())) for h in at.values() if len(h) > 1]
    expected = len(source_onsets) * len(heard)
    return m2e, skews, sum(len(h) for h in at.values()), expected


def spread(values):
    return max(values) - min(values) if values else float("nan")


def pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


# --- processes --------------------------------------------------------------------------------

class Procs:
    """Every process a phase starts; all stopped (TERM, then KILL) at the end."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.time() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        self.procs = []


class Recorder(threading.Thread):
    """Reads a process's PCM output as it comes: (true time, bytes so far) per read."""

    def __init__(self, stream, paced):
        super().__init__(daemon=True)
        self.stream = stream
        self.paced = paced  # the process writes each chunk when it plays it (a sound card)
        self.reads = []
        self.data = bytearray()

    def run(self):
        while True:
            chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else \
                self.stream.read(4096)
            if not chunk:
                return
            self.data += chunk
            self.reads.append((time.time(), len(self.data)))

    def on_true_time(self):
        """(true time of sample 0, PCM) as heard. Paced (snapclient's file player, which writes
        a chunk when it plays it): a read is heard from when it came in. Not paced (ffmpeg,
        which decodes as the stream arrives): as a player would sound it, from when it came
        in or once what came before it has played (no sample dropped, a gap when late)."""
        if not self.reads:
            return None, None
        n = len(self.data) // 2
        pcm = np.frombuffer(bytes(self.data[:2 * n]), dtype="<i2")
        starts, sizes, before, free_at = [], [], 0, 0.0
        for t, upto in self.reads:
            upto = min(upto // 2, n)
            start = t if self.paced else max(t, free_at)
            starts.append(start)
            sizes.append(upto - before)
            free_at = start + (upto - before) / RATE
            before = upto
        t0 = starts[0]
        end = max(s + size / RATE for s, size in zip(starts, sizes, strict=True))
        out = np.zeros(int(round((end - t0) * RATE)) + 1, dtype="<i2")
        taken = 0
        for start, size in zip(starts, sizes, strict=True):
            at = int(round((start - t0) * RATE))
            piece = pcm[taken:taken + size][:len(out) - at]
            out[at:at + len(piece)] = piece
            taken += size
        return t0, out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sent_bytes(port):
    """Bytes the sockets listening on ``port`` sent and had acknowledged (ss), by peer port."""
    out = subprocess.run(["ss", "-tinH", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True, timeout=10).stdout
    total = 0
    for word in out.split():
        if word.startswith("bytes_acked:"):
            total += int(word.split(":")[1])
    return total


def install_packages():
    if os.geteuid() != 0:
        print("not root: install with `sudo apt-get update && sudo apt-get install -y %s`"
              % " ".join(PACKAGES))
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], check=False, env=env,
                   timeout=600)


# --- Loaxa ------------------------------------------------------------------------------------

async def loaxa_run(workdir, broker, n, args):
    import websockets
    from test_headend_acceptance import SITE, Station

    from simulator.fleet import Fleet

    tmp = Path(workdir) / ("loaxa-%d" % n)
    tmp.mkdir()
    st = Station(tmp, broker, {"thon-1": n})
    st.fleet = Fleet(st.fleet.specs, site=SITE, broker=(broker.host, broker.port),
                     workdir=str(tmp / "boards"), keep_bytes=True)
    for r in st.fleet.receivers.values():
        r.platform.link_type = args.link
    speaker = Speaker(clicks_source(args.seconds))
    watch = FrameWatch(broker, SITE)
    async with st:
        watch.start()
        live = await st.post("/api/v1/live", {"source": {"microphone": True},
                                              "targets": {"zones": ["thon-1"]}, "until": None})
        token = st.headers["Authorization"].split()[1]
        url = st.server.url.replace("http://", "ws://") + live["websocket"] + "?token=" + token
        ids = st.zones["thon-1"]
        bytes_before = {d: st.fleet[d].link.bytes_in for d in ids}
        sync = {d: [] for d in ids}  # each receiver's network time minus true time (ms)

        async def sample_sync():
            while True:
                for d in ids:
                    error = st.fleet[d].status()["sync_error_ms"]
                    if error is not None:
                        sync[d].append(error)
                await asyncio.sleep(1.0)

        sampler = asyncio.ensure_future(sample_sync())
        async with websockets.connect(url, open_timeout=5, close_timeout=2) as ws:
            began = time.time()
            await speaker.speak(ws.send)
            sampler.cancel()
            # Keep the socket talking (silence) while the last frames are heard.
            tail = Speaker(np.zeros(int(1.5 * RATE), dtype="<i2"))
            await tail.speak(ws.send)
            duration = time.time() - began
            bytes_in = {d: st.fleet[d].link.bytes_in - bytes_before[d] for d in ids}
            r = await st.http.delete("/api/v1/live/" + live["id"], headers=st.headers)
            assert r.status_code == 200, r.text
        detail = await st.get("/api/v1/live/" + live["id"])
        await st.until(lambda: all(st.played(d, live["id"]) and
                                   st.played(d, live["id"])[-1].finished for d in ids),
                       10, "every receiver to stop")
        from test_live_microphone import on_true_time

        heard, gaps, codec_of = {}, 0, {}
        for d in ids:
            played = st.played(d, live["id"])
            if not played:
                heard[d] = (None, None)
                continue
            p = played[0]
            codec_of[d] = p.codec
            gaps += len(p.gaps)
            heard[d] = (p.started_true,
                        on_true_time(p, decode_to_pcm(p.codec, bytes(p.data), RATE)))
        crashed = st.fleet.crashed()
        headend_log = st.server.log_text()
    watch.stop()
    m2e, skews, got, expected = measure(speaker, heard)
    if args.verbose:
        for line in headend_log.splitlines():
            if " live " in line and live["id"] in line:
                print("  head-end:", line.strip()[-160:])
        for codec in ("mp3", "adpcm"):
            print("  %s slack of the first frames: %s" % (codec, [
                round(play_at - 1000 * t) for t, c, play_at, *_ in watch.frames
                if c == codec][:12]))
        for d in ids:
            p = st.played(d, live["id"])
            # The clock error at the first sample is the offset the receiver keeps (its
            # sink plays on from there); the median is the clock's over the session.
            print("  %s %s m2e p50 %.1f ms, clock error %.1f ms (first %.1f), underruns %s" % (
                d, codec_of.get(d), pct(measure(speaker, {d: heard[d]})[0], 50),
                pct(sync[d], 50), sync[d][0] if sync[d] else float("nan"),
                [(round(t - p[0].started_true, 3), round(g, 3)) for t, g in p[0].gaps]
                if p else None))
    by_codec = {c: pct(measure(speaker, {d: h for d, h in heard.items()
                                         if codec_of.get(d) == c})[0], 50)
                for c in ("mp3", "adpcm")}
    kbps = {c: [8 * bytes_in[d] / duration / 1000 for d in ids if codec_of.get(d) == c]
            for c in ("mp3", "adpcm")}
    return {"m2e": m2e, "skews": skews, "got": got, "expected": expected, "kbps": kbps,
            "underruns": gaps, "crashed": crashed, "state": detail.get("state"),
            "frames": detail.get("frames"), "slack": watch.slack_ms(),
            "frame_bytes": watch.frame_bytes(), "m2e_by_codec": by_codec,
            "sync_spread": spread([pct(v, 50) for v in sync.values() if v])}


class FrameWatch:
    """One more MQTT client on the stream topics: when each frame reached the broker's
    subscribers against its play-at time (head-end clock = true time here), per codec: the
    time to spare that the delay's allowances leave on this machine."""

    def __init__(self, broker, site):
        import paho.mqtt.client as mqtt

        self.frames = []  # (true time arrived, codec, play_at ms, samples, payload bytes, topic)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self.client.on_connect = lambda c, *a: c.subscribe("loaxa/v1/%s/stream/#" % site, 0)
        self.client.on_message = self._on_message
        self.address = (broker.host, broker.port)

    def _on_message(self, client, userdata, msg):
        from protocol.frames import CODEC_NAMES, FRAME_OVERHEAD, unpack_frame

        now = time.time()
        try:
            f = unpack_frame(None, msg.payload)
        except Exception:
            return
        self.frames.append((now, CODEC_NAMES[f.codec], f.play_at, f.samples,
                            len(msg.payload) - FRAME_OVERHEAD, msg.topic))

    def start(self):
        self.client.connect(*self.address)
        self.client.loop_start()

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def slack_ms(self):
        by = {}
        for now, codec, play_at, *_ in self.frames:
            by.setdefault(codec, []).append(play_at - 1000.0 * now)
        return {c: (min(v), pct(v, 1), pct(v, 50)) for c, v in by.items()}

    def frame_bytes(self):
        """Per codec: (mean payload bytes, mean frame ms, header + MQTT bytes per frame)."""
        by = {}
        for _, codec, _, samples, payload, topic in self.frames:
            # MQTT PUBLISH QoS 0: 1 type byte, remaining length (2 bytes here), topic length 2
            by.setdefault(codec, []).append((payload, samples, 1 + 2 + 2 + len(topic)))
        return {c: (float(np.mean([p for p, _, _ in v])),
                    float(np.mean([1000.0 * s / RATE for _, s, _ in v])),
                    FRAME_HEADER + float(np.mean([m for _, _, m in v]))) for c, v in by.items()}


# --- Snapcast ---------------------------------------------------------------------------------

def snapcast_run(workdir, n, buffer_ms, args):
    tmp = Path(workdir) / ("snap-%d-%s" % (n, buffer_ms or "default"))
    tmp.mkdir()
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    conf = tmp / "snapserver.conf"
    conf.write_text("")
    port, tcp, http = free_port(), free_port(), free_port()
    procs = Procs()
    stop = threading.Event()
    try:
        argv = ["snapserver", "-c", str(conf), "--server.datadir", str(tmp),
                "--stream.source", "pipe://%s?name=bench&sampleformat=%d:16:1&mode=read"
                % (fifo, RATE),
                "--stream.port", str(port), "--tcp.port", str(tcp), "--http.port", str(http),
                "--logging.sink", "file:%s" % (tmp / "server.log")]
        if buffer_ms:
            argv += ["--stream.buffer", str(buffer_ms)]
        procs.start(argv)
        pipe = open(fifo, "wb", buffering=0)  # blocks until snapserver reads it
        # Silence keeps the stream going while the clients connect.
        silence = Speaker(np.zeros(int(args.connect_s * RATE), dtype="<i2"))
        writer = threading.Thread(target=silence.speak_blocking, args=(pipe.write, stop),
                                  daemon=True)
        writer.start()
        recorders = []
        for i in range(n):
            p = procs.start(["snapclient", "-h", "127.0.0.1", "-p", str(port),
                             "--hostID", "bench-%d" % i, "--instance", str(i + 1),
                             "--player", "file:filename=stdout", "--logsink", "null"],
                            stdout=subprocess.PIPE)
            rec = Recorder(p.stdout, paced=True)
            rec.start()
            recorders.append(rec)
        writer.join(args.connect_s + 10)
        spoken = speak_counted(pipe.write, stop, port, recorders, args.seconds,
                               1.5 + (buffer_ms or 1000) / 1000)
        pipe.close()
    finally:
        stop.set()
        procs.stop()
    return results_of(spoken, recorders, "flac")


def speak_counted(write, stop, port, recorders, seconds, tail_s):
    """Speak the clicks (then ``tail_s`` of silence) through ``write``, counting the bytes the
    server on ``port`` sent meanwhile: (speaker, bytes, seconds, receivers that got any)."""
    before = sent_bytes(port)
    began = time.time()
    speaker = Speaker(clicks_source(seconds))
    speaker.speak_blocking(write, stop)
    Speaker(np.zeros(int(tail_s * RATE), dtype="<i2")).speak_blocking(write, stop)
    duration = time.time() - began
    return speaker, sent_bytes(port) - before, duration, sum(1 for r in recorders if r.reads)


def results_of(spoken, recorders, codec):
    speaker, sent, duration, connected = spoken
    heard = {i: r.on_true_time() for i, r in enumerate(recorders)}
    m2e, skews, got, expected = measure(speaker, heard)
    return {"m2e": m2e, "skews": skews, "got": got, "expected": expected,
            "kbps": {codec: [8 * sent / max(connected, 1) / duration / 1000]},
            "connected": connected}


# --- Icecast ----------------------------------------------------------------------------------

ICECAST_CONF = """<icecast>
  <limits><clients>%(clients)d</clients><sources>2</sources><burst-on-connect>0</burst-on-connect>
    <burst-size>0</burst-size><queue-size>524288</queue-size></limits>
  <authentication><source-password>bench</source-password><admin-user>admin</admin-user>
    <admin-password>bench-admin</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>%(port)d</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>%(dir)s</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
    <pidfile>%(dir)s/icecast.pid</pidfile></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog>
    <loglevel>2</loglevel></logging>
  %(security)s
</icecast>
"""
# icecast2 refuses to run as root: it drops to nobody.
SECURITY = ("<security><chroot>0</chroot><changeowner><user>nobody</user><group>nogroup</group>"
            "</changeowner></security>")


def wait_for_mount(url, timeout):
    """Until icecast2 serves the mount (the source is in): a listener before gets a 404."""
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("icecast2 never served " + url)


def icecast_run(workdir, n, args):
    tmp = Path(workdir) / ("icecast-%d" % n)
    tmp.mkdir()
    os.chmod(tmp, 0o777)
    port = free_port()
    conf = tmp / "icecast.xml"
    conf.write_text(ICECAST_CONF % {"clients": n + 10, "port": port, "dir": tmp,
                                     "security": SECURITY if os.geteuid() == 0 else ""})
    procs = Procs()
    stop = threading.Event()
    ffmpeg = ffmpeg_exe()
    try:
        procs.start(["icecast2", "-c", str(conf)], stdout=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        source = procs.start([ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "s16le",
                              "-ar", str(RATE), "-ac", "1", "-i", "pipe:0", "-c:a",
                              "libmp3lame", "-b:a", "32k", "-flush_packets", "1",
                              "-content_type", "audio/mpeg", "-f", "mp3",
                              "icecast://source:bench@127.0.0.1:%d/live" % port],
                             stdin=subprocess.PIPE, bufsize=0)
        silence = Speaker(np.zeros(int(args.connect_s * RATE), dtype="<i2"))
        writer = threading.Thread(target=silence.speak_blocking,
                                  args=(source.stdin.write, stop), daemon=True)
        writer.start()
        wait_for_mount("http://127.0.0.1:%d/live" % port, 10)
        recorders = []
        for _ in range(n):
            p = procs.start([ffmpeg, "-hide_banner", "-loglevel", "error", "-fflags",
                             "nobuffer", "-probesize", "2048", "-analyzeduration", "0",
                             "-f", "mp3", "-i", "http://127.0.0.1:%d/live" % port,
                             "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-flush_packets",
                             "1", "pipe:1"], stdout=subprocess.PIPE)
            rec = Recorder(p.stdout, paced=False)
            rec.start()
            recorders.append(rec)
        writer.join(args.connect_s + 10)
        spoken = speak_counted(source.stdin.write, stop, port, recorders, args.seconds, 2.0)
        source.stdin.close()
    finally:
        stop.set()
        procs.stop()
    return results_of(spoken, recorders, "mp3")


# --- the run ----------------------------------------------------------------------------------

def line(name, n, r):
    kbps = " ".join("%s %.1f" % (c, float(np.mean(v))) for c, v in r["kbps"].items() if v)
    return ("%-22s N=%-3d mouth-to-ear p50 %6.0f p99 %6.0f ms | skew p50 %6.1f p99 %6.1f "
            "max %6.1f ms | kbps/receiver %s | clicks %d/%d | load %.1f"
            % (name, n, pct(r["m2e"], 50), pct(r["m2e"], 99), pct(r["skews"], 50),
               pct(r["skews"], 99), max(r["skews"], default=float("nan")), kbps, r["got"],
               r["expected"], r["load"]))


def run_phase(results, name, n, fn, limit):
    started = time.time()
    try:
        r = fn()
    except Exception as e:  # a phase that fails is reported, the others still run
        print("%-22s N=%-3d FAILED: %r" % (name, n, e), flush=True)
        return
    r["load"] = os.getloadavg()[0]
    r["seconds"] = time.time() - started
    results.append((name, n, r))
    print(line(name, n, r), flush=True)
    if "sync_spread" in r:
        print("  receivers' clock error (network time - true time, median of each), spread "
              "across them: %.1f ms" % r["sync_spread"])
    for codec, (low, p1, p50) in sorted(r.get("slack", {}).items()):
        payload, ms, over = r["frame_bytes"][codec]
        print("  %-5s frames %.0f ms, %.0f B payload + %.0f B header and MQTT (%.1f %%); "
              "play-at minus arrival at a subscriber: min %.0f p1 %.0f p50 %.0f ms"
              % (codec, ms, payload, over, 100 * over / payload, low, p1, p50)
              + "; mouth-to-ear p50 %.0f ms" % r["m2e_by_codec"].get(codec, float("nan")))
    if r["seconds"] > limit:
        print("  (took %.0f s, over its %d s limit)" % (r["seconds"], limit))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", default="10,50", help="comma-separated N")
    parser.add_argument("--seconds", type=float, default=12.0, help="of clicks per phase")
    parser.add_argument("--connect-s", type=float, default=3.0,
                        help="silence before the clicks while Snapcast/Icecast clients connect")
    parser.add_argument("--link", default="sim",
                        help="link type the simulated receivers report (loopback is wired)")
    parser.add_argument("--no-snapcast", action="store_true")
    parser.add_argument("--no-icecast", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="each Loaxa receiver's figures")
    parser.add_argument("--no-loaxa", action="store_true", help="only the baselines")
    parser.add_argument("--install", action="store_true",
                        help="apt-get install %s first (root)" % " ".join(PACKAGES))
    parser.add_argument("--time-limit", type=float, default=240.0, help="per phase, s")
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/bench_live.py"]
                       + list(sys.argv[1:] if argv is None else argv))
    if args.install:
        install_packages()
    counts = [int(x) for x in args.receivers.split(",")]
    have_snap = shutil.which("snapserver") and shutil.which("snapclient")
    have_ice = shutil.which("icecast2")
    print("command: %s" % command)
    print("%d CPU(s), load avg %.1f at start" % (os.cpu_count(), os.getloadavg()[0]))
    results = []
    workdir = tempfile.mkdtemp(prefix="loaxa-bench-live-")
    os.chmod(workdir, 0o711)  # icecast2 drops root for nobody, who writes its logs in there
    broker = start_mosquitto(workdir, log_types=("error", "warning"))
    try:
        for n in counts:
            if not args.no_loaxa:
                run_phase(results, "loaxa (%s)" % args.link, n, lambda n=n: asyncio.run(
                    asyncio.wait_for(loaxa_run(workdir, broker, n, args), args.time_limit)),
                    args.time_limit)
            if not args.no_snapcast:
                if have_snap:
                    for buffer_ms in (None, 200):
                        run_phase(results, "snapcast buffer %s" % (buffer_ms or "1000"), n,
                                  lambda n=n, b=buffer_ms: snapcast_run(workdir, n, b, args),
                                  args.time_limit)
                else:
                    print("snapcast: not installed (--install as root, or apt-get install "
                          "snapserver snapclient)")
            if not args.no_icecast:
                if have_ice:
                    run_phase(results, "icecast2 + ffmpeg", n,
                              lambda n=n: icecast_run(workdir, n, args), args.time_limit)
                else:
                    print("icecast: not installed (--install as root, or apt-get install "
                          "icecast2)")
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("load avg %.1f at the end" % os.getloadavg()[0])
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
