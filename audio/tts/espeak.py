"""espeak-ng, the default speech engine: offline, small, with three Vietnamese voices."""

import os
import shutil
import subprocess

from audio.tts.base import TtsEngine, TtsError, TtsUnavailable

ESPEAK_ENV = "LOAXA_ESPEAK"
# espeak-ng speaks 175 words a minute by default; horn speakers on neighbouring poles blur fast
# speech, so our normal pace (speed 1.0) is a little slower.
NORMAL_WORDS_PER_MINUTE = 160


def find_espeak():
    """Path of espeak-ng (LOAXA_ESPEAK overrides the search), or raise TtsUnavailable."""
    path = os.environ.get(ESPEAK_ENV) or shutil.which("espeak-ng")
    if not path or not os.path.exists(path):
        raise TtsUnavailable(
            "espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng), "
            "or set %s to its path" % ESPEAK_ENV)
    return path


class EspeakEngine(TtsEngine):
    name = "espeak"
    voices = {"north": "vi", "central": "vi-vn-x-central", "south": "vi-vn-x-south"}
    # espeak copes with long input, but a few hundred characters per call keeps each call short
    # enough to time out sensibly and lets chunks run in parallel.
    max_chunk_chars = 400

    def __init__(self, binary=None):
        self._binary = binary

    def command(self, out_wav_path, voice, speed):
        """The espeak-ng command line; the text itself goes through stdin (never as an argument,
        so text starting with "-" cannot be taken for an option)."""
        binary = self._binary or find_espeak()
        return [binary, "-v", self.voices[voice], "-s", str(round(NORMAL_WORDS_PER_MINUTE * speed)),
                "-b", "1", "-w", str(out_wav_path), "--stdin"]

    def synthesize(self, text, out_wav_path, voice, speed):
        data = text.encode("utf-8")
        # Typically 50x faster than real time; the timeout only catches a hung process.
        timeout = 30 + len(data) / 50
        try:
            result = subprocess.run(self.command(out_wav_path, voice, speed), input=data,
                                    capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise TtsError("espeak-ng did not finish within %d s" % timeout) from exc
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip() or "no message"
            raise TtsError("espeak-ng failed (exit %d): %s" % (result.returncode, detail))
        if not os.path.exists(out_wav_path) or os.path.getsize(out_wav_path) <= 44:
            raise TtsError("espeak-ng produced no audio for the text")
