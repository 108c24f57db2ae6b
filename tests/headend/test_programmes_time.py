"""The programmes' clock rules alone: the quiet hours on the commune's clocks, the first
overlap of two lists of air times, and the CLI making users of the new roles."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from headend.cli import main
from headend.errors import Invalid
from headend.services.programmes_rules import first_overlap
from headend.services.programmes_time import in_quiet_hours, parse_rule, quiet_hours

SITE = ZoneInfo("Asia/Ho_Chi_Minh")
NIGHT = quiet_hours("22:00", "05:00")


def at(hour, minute=0, day=8):
    return datetime(2026, 12, day, hour, minute, tzinfo=SITE)


@pytest.mark.parametrize("start, minutes, quiet", [
    (at(21, 58), 2, False),   # ends as the quiet hours begin
    (at(21, 59), 2, True),    # runs into them
    (at(23, 30), 10, True),
    (at(4, 59), 1, True),
    (at(5, 0), 30, False),    # starts as they end
    (at(12, 0), 60, False),
    (at(21, 0), 9 * 60, True),  # spans the whole night
])
def test_quiet_hours_are_read_on_the_communes_clocks(start, minutes, quiet):
    end = start + timedelta(minutes=minutes)
    assert in_quiet_hours(start.astimezone(UTC), end.astimezone(UTC), NIGHT, SITE) is quiet


def test_quiet_hours_within_a_day_and_none_at_all():
    siesta = quiet_hours("12:00", "13:30")
    assert in_quiet_hours(at(13, 0), at(13, 5), siesta, SITE)
    assert not in_quiet_hours(at(23, 0), at(23, 5), siesta, SITE)
    none = quiet_hours("22:00", "22:00")
    assert not in_quiet_hours(at(23, 0), at(23, 5), none, SITE)


def test_first_overlap_finds_where_two_schedules_meet():
    mine = [(at(5), at(5, 10)), (at(17), at(17, 10))]
    assert first_overlap(mine, [(at(5, 10), at(5, 20))]) is None  # back to back
    assert first_overlap(mine, [(at(5, 10), at(5, 20)), (at(16, 55), at(17, 1))]) == at(17)
    assert first_overlap(mine, []) is None


def test_a_rule_is_stored_plain_or_refused():
    assert parse_rule("RRULE:freq=daily;count=3") == "FREQ=DAILY;COUNT=3"
    assert parse_rule("  ") is None
    with pytest.raises(Invalid) as refused:
        parse_rule("FREQ=DAILY;BYHOUR=25")
    assert refused.value.code == "bad-rrule"


def test_the_cli_makes_editors_and_leaders(tmp_path, capsys):
    data = str(tmp_path / "var")
    for role in ("editor", "leader"):
        assert main(["--data-dir", data, "create-user", "u-" + role, "--role", role,
                     "--password", "mat-khau-dai"]) == 0
    assert "u-leader (leader)" in capsys.readouterr().out
