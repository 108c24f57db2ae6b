"""`loaxa audio ...` as an operator or technician types it."""

import re
import sys
import types

import pytest
from audio_samples import make_samples

from audio import cli
from tools.cli import main as loaxa


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return make_samples(str(tmp_path_factory.mktemp("cli")))


def test_convert_writes_both_renditions_and_reports_loudness(samples, tmp_path, capsys):
    assert loaxa(["audio", "convert", samples["speech_m4a"], "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    after = re.search(r"-> (-?\d+\.\d) LUFS \(target -16.0 LUFS\)", out)
    assert after and abs(float(after.group(1)) + 16.0) <= 0.5
    assert "audio.mp3" in out and "audio.adpcm" in out
    assert len(list(tmp_path.glob("*/audio.mp3"))) == 1
    assert len(list(tmp_path.glob("*/audio.adpcm"))) == 1


def test_convert_one_codec_and_a_second_run_is_cached(samples, tmp_path, capsys):
    args = ["convert", samples["tone"], "--out", str(tmp_path), "--codec", "mp3"]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "already converted" in out
    assert list(tmp_path.glob("*/audio.adpcm")) == []


def test_convert_warns_about_a_clipped_source(samples, tmp_path, capsys):
    assert cli.main(["convert", samples["clipped"], "--out", str(tmp_path), "--codec", "adpcm"]) == 0
    assert "warning   clipped:" in capsys.readouterr().err


@pytest.mark.parametrize("name,reason", [("png_as_mp3", "not-audio"), ("empty", "empty"),
                                         ("truncated", "truncated")])
def test_refused_files_exit_non_zero_with_the_reason(samples, tmp_path, capsys, name, reason):
    assert cli.main(["convert", samples[name], "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "refused (%s)" % reason in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_exit_2(samples, capsys):
    assert cli.main(["convert", samples["tone"], "--codec", "ogg"]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["tts", "--out", "x.wav"]) == 2
    assert cli.main(["loudness", "/nonexistent/file.mp3"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_loudness_prints_the_measurement(samples, capsys):
    assert cli.main(["loudness", samples["tone"]]) == 0
    out = capsys.readouterr().out
    assert "integrated  -41." in out and "true peak" in out and "LU" in out


def test_probe_prints_what_the_file_is(samples, capsys):
    assert cli.main(["probe", samples["stereo"]]) == 0
    assert "flac" in capsys.readouterr().out


def test_progress_is_shown_for_long_files(samples, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_MIN_DURATION_S", 1.0)
    assert cli.main(["convert", samples["noise"], "--out", str(tmp_path), "--codec", "adpcm"]) == 0
    err = capsys.readouterr().err
    assert "analyse" in err and "encode" in err and "100%" in err


def test_tts_hands_text_voice_and_speed_to_the_engine(tmp_path, monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("audio.tts")

    def synthesize_to_file(text, out_path, voice="north", speed=None):
        calls.append((text, out_path, voice, speed))
        return out_path

    fake.synthesize_to_file = synthesize_to_file
    monkeypatch.setitem(sys.modules, "audio.tts", fake)
    out = str(tmp_path / "ban-tin.wav")
    assert cli.main(["tts", "Xin chào bà con", "--voice", "south", "--speed", "0.9",
                     "--out", out]) == 0
    text_file = tmp_path / "ban-tin.txt"
    text_file.write_text("Thông báo lúc 17h30", encoding="utf-8")
    assert cli.main(["tts", "--file", str(text_file), "--out", out]) == 0
    assert calls == [("Xin chào bà con", out, "south", 0.9),
                     ("Thông báo lúc 17h30", out, "north", None)]
    assert "wrote" in capsys.readouterr().out
