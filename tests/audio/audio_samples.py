"""Real audio files made during the test run (ffmpeg's generators, espeak-ng), good and broken.

``make_samples(directory)`` writes them all and returns {name: path}. Short on purpose: the
whole set takes about a second to make. The 3-hour file is a stream copy of a concatenation
(8 kHz mono MP3 at 8 kbit/s, ~11 MB), so it costs almost nothing to build and is only probed.
"""

import os
import shutil
import struct
import subprocess
import zlib

import imageio_ffmpeg

from audio.ffmpeg import ffmpeg_exe

BULLETIN_VI = ("Ủy ban nhân dân xã thông báo: ngày mười lăm tháng mười một, lúc mười bảy giờ "
               "ba mươi, bà con thôn Đông tập trung tại nhà văn hóa để họp về phòng chống bão "
               "lụt. Đề nghị các hộ gia đình kiểm tra mái nhà, chuẩn bị lương thực và nước uống.")


def ffmpeg(*args, exe=None):
    subprocess.run([exe or ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                    *args], check=True)


def speech_wav(path):
    """Vietnamese speech from espeak-ng when installed; otherwise a voiced, syllabic synthetic
    signal (harmonics with a moving pitch, gated at syllable rate) with speech's crest factor."""
    espeak = shutil.which("espeak-ng")
    if espeak:
        subprocess.run([espeak, "-v", "vi", "-s", "150", "-w", path, BULLETIN_VI], check=True,
                       capture_output=True)
        return path
    ffmpeg("-f", "lavfi", "-i",
           "aevalsrc=0.3*sin(2*PI*(140+30*sin(2*PI*0.7*t))*t)*(0.6+0.4*sin(2*PI*310*t))"
           "*gt(sin(2*PI*4*t),-0.2):s=22050:d=12", path)
    return path


def png_bytes():
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\x80\x40\x20" * 8 for _ in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def unknown_codec_wav(path):
    """A well-formed WAV whose format tag (0x7777) no decoder knows."""
    data = bytes(16000)
    fmt = struct.pack("<HHIIHH", 0x7777, 1, 8000, 8000, 1, 8)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def chirp_wav(path, rate=48000, seconds=1.0):
    """A chirp from 300 Hz up by 4 kHz/s at half scale from its very first sample, as a WAV:
    a sharp onset and no period, so a cross-correlation against it has one clear peak."""
    import numpy as np

    from audio.tones import write_wav

    t = np.arange(int(rate * seconds)) / rate
    return write_wav(path, 0.5 * np.sin(2 * np.pi * (300 * t + 2000 * t * t)), rate)


def make_samples(directory):
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    s = {}
    s["speech"] = speech_wav(p("speech.wav"))
    # A phone recording: the speech as 44.1 kHz stereo AAC in .m4a.
    s["speech_m4a"] = p("speech.m4a")
    ffmpeg("-i", s["speech"], "-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "96k",
           s["speech_m4a"])
    s["tone"] = p("tone.mp3")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100:duration=6",
           "-af", "volume=-20dB", "-c:a", "libmp3lame", "-b:a", "64k", s["tone"])
    s["noise"] = p("noise.ogg")
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=color=pink:sample_rate=48000:amplitude=0.2:duration=6:seed=7",
           "-c:a", "libopus", "-b:a", "48k", s["noise"])
    s["silence"] = p("silence.wav")
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "5", s["silence"])
    # Heavily clipped: speech pushed 15 dB past full scale, stored as 16-bit (hard clip).
    s["clipped"] = p("clipped.wav")
    ffmpeg("-i", s["speech"], "-af", "volume=15dB", "-c:a", "pcm_s16le", s["clipped"])
    # Stereo with different content left and right (speech left, a quiet tone right), FLAC.
    s["stereo"] = p("stereo.flac")
    ffmpeg("-i", s["speech"], "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=22050",
           "-filter_complex", "[0:a]aformat=sample_fmts=s16:channel_layouts=mono[s];"
           "[1:a]volume=-12dB,aformat=sample_fmts=s16:channel_layouts=mono[t];"
           "[s][t]amerge=inputs=2,atrim=0:8[out]",
           "-map", "[out]", s["stereo"])
    # The browser's MediaRecorder output: WebM/Opus (no duration in its header).
    s["webm"] = p("recording.webm")
    ffmpeg("-i", s["speech"], "-c:a", "libopus", "-b:a", "32k", "-f", "webm", "-live", "1",
           s["webm"])
    # A plain MP3 with a Xing header (what lame and phones write), and a copy cut short.
    s["speech_mp3"] = p("speech.mp3")
    ffmpeg("-i", s["speech"], "-c:a", "libmp3lame", "-b:a", "64k", s["speech_mp3"])
    with open(s["speech_mp3"], "rb") as f:
        data = f.read()
    s["truncated"] = p("truncated.mp3")
    with open(s["truncated"], "wb") as f:
        f.write(data[:len(data) * 2 // 5])
    # AMR-NB, what older phones record; the imageio-ffmpeg build has the encoder.
    s["amr"] = p("voice.amr")
    ffmpeg("-i", s["speech"], "-ar", "8000", "-ac", "1", "-c:a", "libopencore_amrnb",
           "-b:a", "12.2k", s["amr"], exe=imageio_ffmpeg.get_ffmpeg_exe())
    s["png_as_mp3"] = p("picture.mp3")
    with open(s["png_as_mp3"], "wb") as f:
        f.write(png_bytes())
    s["unknown_codec"] = unknown_codec_wav(p("odd-codec.wav"))
    s["empty"] = p("empty.mp3")
    open(s["empty"], "wb").close()
    return s


def make_three_hours(directory):
    """A 3-hour MP3 by concatenating a 10-minute one 18 times (stream copy, no re-encoding)."""
    piece = os.path.join(directory, "piece.mp3")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=600",
           "-c:a", "libmp3lame", "-b:a", "8k", "-write_xing", "0", piece)
    listing = os.path.join(directory, "list.txt")
    with open(listing, "w") as f:
        f.write("file 'piece.mp3'\n" * 18)
    out = os.path.join(directory, "three_hours.mp3")
    ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", "-write_xing", "0", out)
    return out
