"""The programme editor's form in the services' terms, and a programme's time in plain words.

"When" is chosen from simple choices: once (a local date and time), every week (days of the
week, a time, from a day, until a day) turned into an RFC 5545 RRULE, or a rule typed as it
is (a programme made through the API with a rule the choices cannot say is edited that way,
so saving its title never rewrites its rule). Only translation lives here; the services
validate and decide.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from headend.errors import Invalid
from headend.i18n import Translator
from headend.models import Programme
from headend.web.forms import start_from_form

# RFC 5545 day codes, Monday first (datetime.weekday() order).
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
WHEN_KINDS = ("once", "weekly", "rule")
SEGMENT_KINDS = ("media", "text", "chime", "relay")
EMPTY_ROWS = 2  # blank segment rows offered after the programme's own


# -- segments -----------------------------------------------------------------------------

def segments_from_form(kinds: list[str], media: list[str], texts: list[str], voices: list[str],
                       chimes: list[str], relay_urls: list[str] | None = None,
                       relay_minutes: list[str] | None = None) -> list[dict[str, Any]]:
    """One segment per row whose kind is chosen, in the rows' order (a row left on "none" is
    not a segment). A chosen kind with nothing in it goes to the service, which names it."""
    out: list[dict[str, Any]] = []
    for i, kind in enumerate(kinds):
        if kind == "media":
            out.append({"media_id": at(media, i)})
        elif kind == "text":
            out.append({"text": at(texts, i), "voice": at(voices, i) or "north"})
        elif kind == "chime":
            out.append({"chime": at(chimes, i) or "start"})
        elif kind == "relay":
            out.append({"relay": dict(url=at(relay_urls or [], i),
                                      **relay_length(at(relay_minutes or [], i)))})
    return out


def relay_length(minutes: str) -> dict[str, Any]:
    """The relay's length as typed in minutes: whole minutes, or a part of a minute in
    seconds ("1.5" is 90 s); anything else as typed, for the service to refuse by name."""
    text = minutes.strip().replace(",", ".")
    if text.isdigit():
        return {"minutes": int(text)}
    try:
        seconds = float(text) * 60
    except ValueError:
        return {"minutes": text}
    return {"seconds": int(seconds)} if seconds == int(seconds) else {"minutes": text}


def minutes_text(seconds: int) -> str:
    """A relay's length in the form's minutes ("30", "0.75")."""
    return str(seconds // 60) if seconds % 60 == 0 else ("%.2f" % (seconds / 60)).rstrip("0")


def at(values: list[str], i: int) -> str:
    """The ``i``-th value of a form list ('' past its end)."""
    return values[i] if i < len(values) else ""


def row(kind: str = "", media_id: str = "", text: str = "", voice: str = "north",
        chime: str = "start", relay_url: str = "", relay_minutes: str = "") -> dict[str, str]:
    """One segment row of the editor, as its fields show it."""
    return {"kind": kind, "media_id": media_id, "text": text, "voice": voice or "north",
            "chime": chime or "start", "relay_url": relay_url, "relay_minutes": relay_minutes}


def segment_rows(segments: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The form's rows for these segments, and blank ones to add more."""
    rows = []
    for segment in segments:
        kind = ("media" if "media_id" in segment else "text" if "text" in segment
                else "chime" if "chime" in segment else "relay" if "relay" in segment else "")
        relay = segment.get("relay") or {}
        rows.append(row(kind, segment.get("media_id") or "", segment.get("text") or "",
                        segment.get("voice") or "north", segment.get("chime") or "start",
                        relay.get("url") or "",
                        minutes_text(relay["seconds"]) if "seconds" in relay else ""))
    return rows + [row() for _ in range(EMPTY_ROWS)]


# -- when ---------------------------------------------------------------------------------

def rule_parts(rule: str | None) -> dict[str, str]:
    """``FREQ=WEEKLY;BYDAY=MO`` -> {"FREQ": "WEEKLY", "BYDAY": "MO"}."""
    parts = {}
    for part in (rule or "").split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            parts[key.strip().upper()] = value.strip().upper()
    return parts


def _local_date(value: str, what_en: str, what_vi: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise Invalid("bad-date", "%s is not a valid date" % what_en,
                      "%s không hợp lệ" % what_vi) from None


def when_from_form(form: dict[str, Any], tz: ZoneInfo,
                   today: date | None = None) -> tuple[datetime, str | None]:
    """(start in UTC, RRULE or None) from the form's "when" fields."""
    kind = form.get("when")
    if kind == "weekly":
        return weekly_rule(form.get("days") or [], form.get("at_time") or "",
                           form.get("first_day") or "", form.get("until") or "", tz, today)
    start = start_from_form("at", form.get("start_at") or "", tz)
    if kind == "rule":
        return start, (form.get("rrule") or "").strip() or None
    return start, None


def weekly_rule(days: list[str], at_time: str, first_day: str, until: str, tz: ZoneInfo,
                today: date | None = None) -> tuple[datetime, str]:
    """The first occurrence on or after ``first_day`` (default today) and the weekly RRULE:
    ``FREQ=WEEKLY;BYDAY=MO,TU;BYHOUR=5;BYMINUTE=30[;UNTIL=<end of that day, UTC>]``."""
    chosen = [d for d in DAYS if d in days]
    if not chosen:
        raise Invalid("no-days", "choose at least one day of the week",
                      "Hãy chọn ít nhất một ngày trong tuần")
    try:
        at = time.fromisoformat(at_time.strip())
    except ValueError:
        raise Invalid("bad-time", "choose the time of day it airs (HH:MM)",
                      "Hãy chọn giờ phát (giờ:phút)") from None
    begin = (_local_date(first_day, "the first day", "Ngày bắt đầu") if first_day.strip()
             else today or datetime.now(tz).date())
    while DAYS[begin.weekday()] not in chosen:
        begin += timedelta(days=1)
    start = datetime.combine(begin, at.replace(second=0, microsecond=0), tz)
    rule = "FREQ=WEEKLY;BYDAY=%s;BYHOUR=%d;BYMINUTE=%d" % (",".join(chosen), at.hour, at.minute)
    if until.strip():
        last = _local_date(until, "the last day", "Ngày kết thúc")
        if last < begin:
            raise Invalid("until-before-start", "the last day is before the first one",
                          "Ngày kết thúc trước ngày bắt đầu")
        end = datetime.combine(last, time(23, 59, 59), tz).astimezone(UTC)
        rule += ";UNTIL=" + end.strftime("%Y%m%dT%H%M%SZ")
    return start.astimezone(UTC), rule


def when_choices(programme: Programme, tz: ZoneInfo) -> dict[str, Any]:
    """The form's "when" fields for a stored programme (the reverse of ``when_from_form``)."""
    local = programme.start_at.astimezone(tz)
    out: dict[str, Any] = {"when": "once", "start_at": local.strftime("%Y-%m-%dT%H:%M"),
                           "days": [], "at_time": local.strftime("%H:%M"),
                           "first_day": local.date().isoformat(), "until": "",
                           "rrule": programme.rrule or ""}
    if programme.rrule is None:
        return out
    out["when"] = "rule"
    weekly = _weekly_parts(programme.rrule)
    if weekly is None or (local.hour, local.minute, local.second) != weekly["time"] \
            or DAYS[local.weekday()] not in weekly["days"]:
        return out
    out.update(when="weekly", days=weekly["days"], at_time="%02d:%02d" % weekly["time"][:2])
    if weekly["until"] is not None:
        out["until"] = weekly["until"].astimezone(tz).date().isoformat()
    return out


def _weekly_parts(rule: str) -> dict[str, Any] | None:
    """A rule the weekly choices say exactly, read back; None for any other rule."""
    parts = rule_parts(rule)
    if parts.get("FREQ") != "WEEKLY" or not set(parts) <= {"FREQ", "BYDAY", "BYHOUR",
                                                             "BYMINUTE", "UNTIL"}:
        return None
    days = parts.get("BYDAY", "").split(",")
    if not days or any(d not in DAYS for d in days):
        return None
    if not (parts.get("BYHOUR", "").isdigit() and parts.get("BYMINUTE", "").isdigit()):
        return None
    until = None
    if "UNTIL" in parts:
        try:
            until = datetime.strptime(parts["UNTIL"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
    return {"days": [d for d in DAYS if d in days],
            "time": (int(parts["BYHOUR"]), int(parts["BYMINUTE"]), 0), "until": until}


def same_when(form: dict[str, Any], programme: Programme, tz: ZoneInfo) -> bool:
    """True if the form's "when" is what the programme has (then the page leaves its start
    and rule alone: a title change must not reschedule, nor need a new approval)."""
    stored = when_choices(programme, tz)
    keys = {"once": ("start_at",), "rule": ("start_at", "rrule"),
            "weekly": ("days", "at_time", "first_day", "until")}.get(form.get("when"), ())
    return form.get("when") == stored["when"] and all(
        _norm(form.get(k)) == _norm(stored.get(k)) for k in keys)


def _norm(value: Any) -> Any:
    if isinstance(value, list):
        return [d for d in DAYS if d in value]
    return (value or "").strip().upper() if isinstance(value, str) else value


# -- in plain words -------------------------------------------------------------------------

def describe_when(t: Translator, programme: Programme, tz: ZoneInfo) -> str:
    """"Thứ Hai đến Thứ Bảy, 05:30", "Một lần, 05:30 08/12/2026", or the rule itself."""
    local = programme.start_at.astimezone(tz)
    if programme.rrule is None:
        return t("when.once_at", at=local.strftime("%H:%M %d/%m/%Y"))
    weekly = _weekly_parts(programme.rrule)
    if weekly is None:
        return t("when.rule", rule=programme.rrule)
    text = "%s, %02d:%02d" % (describe_days(t, weekly["days"]), *weekly["time"][:2])
    if weekly["until"] is not None:
        text += ", " + t("when.until", day=weekly["until"].astimezone(tz).strftime("%d/%m/%Y"))
    return text


def describe_days(t: Translator, days: list[str]) -> str:
    """Consecutive days as a range ("Thứ Hai đến Thứ Bảy"), every day as "Hằng ngày"."""
    if len(days) == 7:
        return t("when.daily")
    indexes = sorted(DAYS.index(d) for d in days)
    runs: list[list[int]] = []
    for i in indexes:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    words = []
    for run in runs:
        if len(run) >= 3:
            words.append(t("when.range", first=t("day." + DAYS[run[0]]),
                           last=t("day." + DAYS[run[-1]])))
        else:
            words.extend(t("day." + DAYS[i]) for i in run)
    return ", ".join(words)
