"""docs/protocol.md agrees with protocol/: every field table on the page is the one the code
renders (tools/protocol_doc.py), and a change on either side is caught."""

from pathlib import Path

from protocol import fields as F
from protocol import messages as M
from protocol import presence
from tools import protocol_doc

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def page():
    return DOC.read_text(encoding="utf-8")


def test_every_table_on_the_page_is_the_codes():
    assert protocol_doc.check(page()) == []


def test_the_page_shows_a_table_for_every_command_event_and_report():
    text = page()
    for kind in M.COMMANDS:
        assert "<!-- table:%s -->" % kind in text, kind
    for kind in M.EVENTS:
        assert "<!-- table:event-%s -->" % kind in text, kind
    for name in ("command", "time-request", "time-reply", "birth", "caps", "death", "heartbeat",
                 "presence-rules", "event"):
        assert "<!-- table:%s -->" % name in text, name


def test_a_limit_changed_in_the_code_is_reported_with_the_table_and_the_new_limit(monkeypatch):
    vol = F.row_of(M.VOLUME_ARGS, "vol")
    changed = (vol[:F.HI] + (120,) + vol[F.HI + 1:],)
    monkeypatch.setitem(M.COMMAND_ARGS, M.VOLUME, changed)
    problems = protocol_doc.check(page())
    assert len(problems) == 1
    assert problems[0].startswith("table volume differs")
    assert "+| `vol` | int |  | 0 – 120 | yes | default volume |" in problems[0]


def test_a_heartbeat_field_added_in_the_code_is_reported(monkeypatch):
    extra = ("fan", F.INT, "rpm", 0, 10000, F.IF_SET, "fan speed")
    monkeypatch.setattr(M, "HEARTBEAT_TABLE", M.HEARTBEAT_TABLE + (extra,))
    (problem,) = protocol_doc.check(page())
    assert problem.startswith("table heartbeat differs") and "`fan`" in problem


def test_a_presence_rule_changed_in_the_code_is_reported(monkeypatch):
    monkeypatch.setattr(presence, "OFFLINE_FACTOR_TENTHS", 15)
    (problem,) = protocol_doc.check(page())
    assert problem.startswith("table presence-rules differs")
    assert "| `wifi` | 30 s | 45 s | 47 s |" in problem


def test_a_table_edited_by_hand_or_missing_or_unknown_is_reported():
    text = page()
    edited = text.replace("| `up` | int | s | 0 – `MAX_COUNT` | yes | uptime |",
                          "| `up` | int | min | 0 – `MAX_COUNT` | yes | uptime |")
    assert edited != text
    (problem,) = protocol_doc.check(edited)
    assert problem.startswith("table heartbeat differs")
    start = text.index("<!-- table:death -->")
    end = text.index("<!-- /table -->", start) + len("<!-- /table -->")
    (problem,) = protocol_doc.check(text[:start] + text[end:])
    assert "table death: missing" in problem
    (problem,) = protocol_doc.check(text + "\n<!-- table:mood -->\n| x |\n<!-- /table -->\n")
    assert "table mood: on the page, not in the code" in problem


def test_write_brings_an_edited_page_back_in_step_and_leaves_the_prose(monkeypatch):
    text = page()
    edited = text.replace("| `vol` | int |  | 0 – 100 | yes | default volume |",
                          "| `vol` | int |  | 0 – 99 | yes | default volume |")
    assert protocol_doc.write(edited) == text
    monkeypatch.setattr(presence, "SWEEP_S", 5)
    rewritten = protocol_doc.write(text)
    assert protocol_doc.check(rewritten) == []
    assert "| `wifi` | 30 s | 42 s | 47 s |" in rewritten
    assert rewritten.count("## ") == text.count("## ")


def test_the_command_line_check_passes_on_the_page(capsys):
    assert protocol_doc.main(["--check"]) == 0
    assert "agrees" in capsys.readouterr().out
