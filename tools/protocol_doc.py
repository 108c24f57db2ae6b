"""docs/protocol.md's field tables, rendered from the code's (protocol/messages.py,
protocol/presence.py), so the page and the wire cannot drift apart.

    python tools/protocol_doc.py --check   # exit 1 and say which tables differ
    python tools/protocol_doc.py --write   # re-render every table in place

Each table in the page sits between ``<!-- table:NAME -->`` and ``<!-- /table -->``; the text
around them is written by hand. tests/test_protocol_doc.py runs the check.
"""

import argparse
import difflib
import re
import sys
from pathlib import Path

from protocol import fields as F
from protocol import messages as M
from protocol import presence

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
_BLOCK = re.compile(r"<!-- table:([a-z0-9_-]+) -->\n(.*?)<!-- /table -->", re.S)


def blocks():
    """(block name, rendered Markdown) for every table the page shows, read from the code now
    (so a test that changes a table sees the page differ)."""
    out = [("command", render(M.COMMAND_TABLE))]
    out += [(kind, render(M.COMMAND_ARGS[kind])) for kind in M.COMMANDS]
    out += [("schedule-early", render(M.EARLY_TABLE)), ("play-lead", render(M.LEAD_TABLE))]
    out += [("time-request", render(M.TIME_REQUEST_TABLE)),
            ("time-reply", render(M.TIME_REPLY_TABLE)),
            ("birth", render(M.BIRTH_TABLE)), ("caps", render(M.CAPS_TABLE)),
            ("death", render(M.DEATH_TABLE)), ("heartbeat", render(M.HEARTBEAT_TABLE)),
            ("presence-rules", render_presence()), ("event", render(M.EVENT_TABLE))]
    out += [("event-" + kind, render(M.EVENT_FIELDS[kind])) for kind in M.EVENTS]
    return out


def _number(n):
    for name in ("MAX_COUNT", "MAX_TIME_MS"):
        if n == getattr(M, name):
            return "`%s`" % name
    if n == 0xFFFFFFFF:
        return "2^32 − 1"
    return str(n)


def _limits(row):
    kind, lo, hi = row[F.TYPE], row[F.LO], row[F.HI]
    if kind in (F.INT, F.NUMBER):
        if lo is not None and hi is not None:
            if lo == hi:
                return _number(lo)
            if lo == -hi:
                return "±" + _number(hi)
            return "%s – %s" % (_number(lo), _number(hi))
        if lo is not None:
            return "≥ " + _number(lo)
        if hi is not None:
            return "≤ " + _number(hi)
        return ""
    if kind == F.STR:
        return "%d – %d chars" % (1 if lo is None else lo, 512 if hi is None else hi)
    if kind == F.ID:
        return ""  # the Topics section says what an id is
    if kind == F.HEX64:
        return "64 lowercase hex digits"
    if kind == F.ONE_OF:
        return " \\| ".join('`"%s"`' % value for value in lo)
    if kind == F.LIST:
        each = "" if lo is None else ", each %s %s" % (_type(lo), _limits(lo))
        return ("≤ %d items" % hi if hi is not None else "any length") + each.rstrip()
    return ""


def _type(row):
    return "str" if row[F.TYPE] == F.ONE_OF else row[F.TYPE]


def _required(row):
    use = row[F.USE]
    if use == F.REQUIRED:
        return "yes"
    if use == F.OPTIONAL:
        return "no"
    return "no; left out when empty" if row[F.TYPE] in (F.STR, F.ID) else "no; left out at 0"


def render(table):
    if not table:
        return "No arguments.\n"
    lines = ["| field | type | unit | limits | required | meaning |",
             "|---|---|---|---|---|---|"]
    for row in table:
        lines.append("| `%s` | %s | %s | %s | %s | %s |" % (
            row[F.NAME], _type(row), row[F.UNIT] or "", _limits(row), _required(row),
            row[F.MEANING]))
    return "\n".join(lines) + "\n"


def render_presence():
    lines = ["Offline after %s × the heartbeat period of silence; the head-end sweeps every %d s;"
             " an outage must show within %d s on Wi-Fi." % (
                 _tenths(presence.OFFLINE_FACTOR_TENTHS), presence.SWEEP_S,
                 presence.NOTICE_WITHIN_S), "",
             "| link | heartbeat and keepalive | offline after | noticed within |",
             "|---|---|---|---|"]
    rows = sorted(presence.LINK_PERIODS_S.items(), key=lambda item: (item[1], item[0]))
    rows.append(("any other (`sim`)", presence.DEFAULT_PERIOD_S))
    for link, period in rows:
        lines.append("| %s | %d s | %d s | %d s |" % (
            link if link.startswith("any") else "`%s`" % link, period,
            presence.offline_allowance_s(period), presence.noticed_within_s(period)))
    return "\n".join(lines) + "\n"


def _tenths(n):
    return "%d.%d" % (n // 10, n % 10) if n % 10 else str(n // 10)


def check(text):
    """What differs between the page ``text`` and the code: a list of readable problems."""
    found = {name: body for name, body in _BLOCK.findall(text)}
    problems = []
    expected = blocks()
    for name, body in expected:
        if name not in found:
            problems.append("table %s: missing from the page (add <!-- table:%s -->)" % (name, name))
        elif found[name] != body:
            diff = difflib.unified_diff(found[name].splitlines(), body.splitlines(),
                                        "docs", "code", lineterm="", n=0)
            problems.append("table %s differs from the code:\n%s" % (name, "\n".join(diff)))
    known = {name for name, _ in expected}
    for name in found:
        if name not in known:
            problems.append("table %s: on the page, not in the code" % name)
    return problems


def write(text):
    """``text`` with every table re-rendered from the code."""
    rendered = dict(blocks())

    def replace(match):
        name = match.group(1)
        if name not in rendered:
            raise ValueError("table %s: on the page, not in the code" % name)
        return "<!-- table:%s -->\n%s<!-- /table -->" % (name, rendered[name])

    return _BLOCK.sub(replace, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if the page differs")
    mode.add_argument("--write", action="store_true", help="re-render the tables in place")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    if args.write:
        DOC.write_text(write(text), encoding="utf-8")
    problems = check(DOC.read_text(encoding="utf-8"))
    for problem in problems:
        print(problem)
    if problems:
        print("%d table(s) differ: python tools/protocol_doc.py --write" % len(problems))
        return 1
    print("docs/protocol.md agrees with protocol/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
