"""Finding and running ffmpeg (and ffprobe, when there is one).

ffmpeg comes from the system when present, otherwise from the imageio-ffmpeg wheel, so the
project works without Debian packages. The wheel ships no ffprobe: ``ffprobe_exe()`` is then
None and ``audio.probe`` reads ``ffmpeg -i`` output instead. LOAXA_FFMPEG / LOAXA_FFPROBE
override the choice (LOAXA_FFPROBE=none forces the ffprobe-less path, as tests do).
"""

import functools
import os
import shutil
import subprocess
import threading

FFMPEG_ENV = "LOAXA_FFMPEG"
FFPROBE_ENV = "LOAXA_FFPROBE"
# Every ffmpeg call is non-interactive, and prints no progress lines into the log we parse.
BASE_ARGS = ("-hide_banner", "-nostdin", "-nostats", "-y")


class FfmpegError(RuntimeError):
    """ffmpeg failed; ``stderr`` holds its messages (the tail goes into ``str(e)``)."""

    def __init__(self, args, returncode, stderr):
        self.args_list = list(args)
        self.returncode = returncode
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-6:])
        super().__init__("ffmpeg exited with %s: %s" % (returncode, tail))


class FfmpegMissing(RuntimeError):
    pass


@functools.cache
def _ffmpeg_exe(override):
    if override:
        return override
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError:
        raise FfmpegMissing("ffmpeg not found: install the Debian package ffmpeg, "
                            "or `pip install imageio-ffmpeg`") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_exe():
    return _ffmpeg_exe(os.environ.get(FFMPEG_ENV) or None)


def ffprobe_exe():
    """The ffprobe next to the ffmpeg in use, or on PATH; None if there is none."""
    override = os.environ.get(FFPROBE_ENV)
    if override:
        return None if override.lower() == "none" else override
    sibling = os.path.join(os.path.dirname(ffmpeg_exe()), "ffprobe")
    if os.path.isfile(sibling) and os.access(sibling, os.X_OK):
        return sibling
    return shutil.which("ffprobe")


def run(args, *, input_bytes=None, check=True, timeout=None):
    """Run ffmpeg with ``args``; return (stdout bytes, stderr text)."""
    cmd = [ffmpeg_exe(), *BASE_ARGS, *args]
    proc = subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=timeout)
    stderr = proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise FfmpegError(cmd, proc.returncode, stderr)
    return proc.stdout, stderr


def run_with_progress(args, *, duration_s, progress=None, timeout=None):
    """Run ffmpeg that writes to files; report ``progress(fraction)`` from its own clock.

    ffmpeg's ``-progress pipe:1`` prints ``out_time_us=`` lines on stdout; stderr is collected
    in a thread so neither pipe can fill up and stall ffmpeg. Returns the stderr text.
    """
    if progress is None or not duration_s:
        return run(args, timeout=timeout)[1]
    cmd = [ffmpeg_exe(), *BASE_ARGS, "-progress", "pipe:1", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    try:
        for line in proc.stdout:
            if line.startswith(b"out_time_us="):
                try:
                    done_s = int(line.split(b"=", 1)[1]) / 1e6
                except ValueError:  # "N/A" before the first frame
                    continue
                progress(min(1.0, max(0.0, done_s / duration_s)))
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
        proc.stdout.close()
        proc.stderr.close()
    stderr = b"".join(chunks).decode("utf-8", "replace")
    if proc.returncode != 0:
        raise FfmpegError(cmd, proc.returncode, stderr)
    return stderr


def run_ffprobe(args, timeout=60):
    exe = ffprobe_exe()
    if exe is None:
        raise FfmpegMissing("ffprobe is not available")
    proc = subprocess.run([exe, "-hide_banner", *args], capture_output=True, timeout=timeout)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), \
        proc.stderr.decode("utf-8", "replace")
