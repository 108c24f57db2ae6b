"""What the head-end does with a parsed CAP alert: air it, queue it for an operator, only log
it, or refuse it. A pure function of the alert, the site's policy, what is running and the time.

The rules, in the order they are applied (the first that applies gives the reason):

1. status System, Test or Draft: logged ("status-system", "status-test", "status-draft"),
   never aired; msgType Ack or Error: logged ("msgtype-ack", "msgtype-error").
2. scope Restricted: logged ("restricted-scope"): a public loudspeaker cannot keep a message
   to the users the <restriction> names. scope Private: logged ("not-addressed") unless one of
   its <addresses> is one of the site's own (SitePolicy.site_addresses); then it is treated as
   Public except that it never airs by itself: it waits for an operator ("private-addressed").
3. Cancel: stops ("stop") every running alert it references, at once and without
   confirmation, since stopping is the safe direction ("cancel"); referencing nothing that
   runs: logged ("no-reference" without <references>, else "unknown-reference").
4. Alert and Update need an info to read: none is logged ("no-info"). The Vietnamese info
   (language "vi" or "vi-*") is the one read aloud and whose areas select zones; without one,
   the first info is (CAP's order; its text is read as written, unnormalised).
5. That info's <expires> at or before now: refused ("expired"); an info without <expires>
   counts as expiring SitePolicy.default_duration after it takes effect.
6. The alert's own identifier already running from the same sender: logged ("duplicate"), so
   a message fetched twice never plays twice.
7. Update: replaces ("replace") the running alerts it references, so the new text takes the
   old one's place instead of playing beside it (an update that waits for confirmation leaves
   the old one playing until then; one whose area no longer touches any zone stops it);
   referencing nothing running: logged ("no-reference" / "unknown-reference"). Alert: a new
   alert ("new").
8. Which of aired / queued: the info's (severity, urgency, certainty) against the site's
   automatic rules: matching airs at once ("automatic"), anything else waits for an
   operator's one-click confirmation ("needs-confirmation").
9. status Exercise: as above, with ``receiver_flag="exercise"``: it airs only on receivers
   marked for exercises; the caller logs it ("no-exercise-receivers") when there are none.

A reference matches a running alert only when its identifier and its sender do, and the
referencing message comes from that same sender: an agency updates and cancels its own alerts
only, never another's (an operator can still stop any alert from the emergency page).
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from audio.textnorm import normalize_vi
from headend.cap.errors import CapError
from headend.cap.parse import Alert, Info
from headend.errors import Invalid

OUTCOMES = ("aired", "queued", "logged", "refused")
ACTIONS = ("new", "replace", "stop")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
EXERCISE_FLAG = "exercise"

# Names for the operator's pages: outcome or reason code -> (English, Vietnamese).
OUTCOME_NAMES = {
    "aired": ("On air", "Phát ngay"),
    "queued": ("Waiting for confirmation", "Chờ xác nhận"),
    "logged": ("Logged only", "Chỉ ghi nhận"),
    "refused": ("Refused", "Từ chối"),
}
ACTION_NAMES = {
    "new": ("New alert", "Bản tin mới"),
    "replace": ("Replaces the running alert", "Thay bản tin đang phát"),
    "stop": ("Stops the running alert", "Dừng bản tin đang phát"),
}
REASON_NAMES = {
    "automatic": ("Airs automatically under the site's policy",
                  "Tự động phát theo quy định của đài"),
    "needs-confirmation": ("Waits for an operator's confirmation",
                           "Chờ cán bộ đài xác nhận"),
    "private-addressed": ("Addressed to this station privately: waits for confirmation",
                          "Gửi riêng cho đài: chờ xác nhận"),
    "cancel": ("Cancelled by the sender", "Bên gửi đã hủy bản tin"),
    "status-system": ("A system message: never aired", "Bản tin hệ thống: không phát"),
    "status-test": ("A test message: never aired", "Bản tin thử: không phát"),
    "status-draft": ("A draft: never aired", "Bản nháp: không phát"),
    "msgtype-ack": ("An acknowledgement: nothing to air", "Bản tin xác nhận: không có gì để phát"),
    "msgtype-error": ("An error report: nothing to air", "Bản tin báo lỗi: không có gì để phát"),
    "restricted-scope": ("Restricted to named users: not for public loudspeakers",
                         "Bản tin hạn chế đối tượng: không phát trên loa công cộng"),
    "not-addressed": ("A private message for other recipients",
                      "Bản tin riêng gửi nơi khác"),
    "no-info": ("The message has no text to read", "Bản tin không có nội dung để đọc"),
    "no-reference": ("An update or cancel that names no earlier message",
                     "Bản cập nhật hoặc hủy không nêu bản tin trước"),
    "unknown-reference": ("An update or cancel of a message that is not running",
                          "Cập nhật hoặc hủy một bản tin không đang phát"),
    "duplicate": ("Already received: not played twice", "Đã nhận rồi: không phát lại"),
    "expired": ("Already expired", "Đã hết hạn"),
    "no-zones": ("Its area covers none of this commune's villages",
                 "Vùng cảnh báo không thuộc thôn/xóm nào của xã"),
    "no-exercise-receivers": ("An exercise, and no receiver is marked for exercises",
                              "Bản tin diễn tập, không có cụm loa nào được đánh dấu diễn tập"),
}

_LOGGED_STATUSES = {"System": "status-system", "Test": "status-test", "Draft": "status-draft"}
_LOGGED_MSG_TYPES = {"Ack": "msgtype-ack", "Error": "msgtype-error"}


def _policy_error(detail: str) -> Invalid:
    return Invalid("invalid-cap-policy", "bad CAP policy: %s" % detail,
                   "quy định tự động phát CAP không hợp lệ: %s" % detail)


def _choices(values, allowed: tuple[str, ...], name: str) -> frozenset[str]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise _policy_error("%s must be a list of %s" % (name, ", ".join(allowed)))
    values = frozenset(values)
    unknown = sorted(str(value) for value in values - set(allowed))
    if unknown or not values:
        raise _policy_error("%s must be a non-empty list of %s (not %s)"
                            % (name, ", ".join(allowed), ", ".join(unknown) or "empty"))
    return values


@dataclass(frozen=True, slots=True)
class AutoRule:
    """Infos whose severity, urgency and certainty are all among these air by themselves."""

    severity: frozenset[str]
    urgency: frozenset[str]
    certainty: frozenset[str]

    def matches(self, info: Info) -> bool:
        return (info.severity in self.severity and info.urgency in self.urgency
                and info.certainty in self.certainty)


# Life-threatening and happening now, and observed or more likely than not.
DEFAULT_AUTOMATIC = (AutoRule(severity=frozenset({"Extreme", "Severe"}),
                              urgency=frozenset({"Immediate"}),
                              certainty=frozenset({"Observed", "Likely"})),)


@dataclass(frozen=True, slots=True)
class SitePolicy:
    """A site's CAP policy. ``site_addresses`` are the addresses a sender uses for this
    station in a Private alert; ``default_duration`` bounds an alert that has no <expires>."""

    automatic: tuple[AutoRule, ...] = DEFAULT_AUTOMATIC
    site_addresses: frozenset[str] = frozenset()
    default_duration: timedelta = timedelta(hours=6)
    # What airs is aired again this often until it expires or is cancelled; None: once.
    repeat_interval: timedelta | None = timedelta(minutes=15)

    @classmethod
    def from_dict(cls, data: Mapping) -> "SitePolicy":
        """From settings JSON: ``{"automatic": [{"severity": [...], "urgency": [...],
        "certainty": [...]}], "site_addresses": [...], "default_duration_minutes": 360,
        "repeat_minutes": 15}`` (0: aired once);
        a missing key keeps the default. Raises Invalid("invalid-cap-policy")."""
        if not isinstance(data, Mapping):
            raise _policy_error("the policy must be an object")
        unknown = set(data) - {"automatic", "site_addresses", "default_duration_minutes",
                               "repeat_minutes"}
        if unknown:
            raise _policy_error("unknown keys %s" % ", ".join(sorted(map(str, unknown))))
        rules = data.get("automatic")
        if rules is None:
            automatic = DEFAULT_AUTOMATIC
        elif isinstance(rules, list) and all(isinstance(rule, Mapping) for rule in rules):
            automatic = tuple(AutoRule(
                severity=_choices(rule.get("severity", ()), SEVERITIES, "severity"),
                urgency=_choices(rule.get("urgency", ()), URGENCIES, "urgency"),
                certainty=_choices(rule.get("certainty", ()), CERTAINTIES, "certainty"),
            ) for rule in rules)
        else:
            raise _policy_error("automatic must be a list of rules (an empty list: none airs "
                                "without confirmation)")
        addresses = data.get("site_addresses", [])
        if isinstance(addresses, str) or not isinstance(addresses, list) or not all(
                isinstance(address, str) and address.strip() for address in addresses):
            raise _policy_error("site_addresses must be a list of addresses")
        minutes = data.get("default_duration_minutes", 360)
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 10080:
            raise _policy_error("default_duration_minutes must be a whole number from 1 to 10080")
        repeat = data.get("repeat_minutes", 15)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 0 <= repeat <= 1440:
            raise _policy_error("repeat_minutes must be a whole number from 0 (air once) to "
                                "1440")
        return cls(automatic=automatic,
                   site_addresses=frozenset(address.strip() for address in addresses),
                   default_duration=timedelta(minutes=minutes),
                   repeat_interval=timedelta(minutes=repeat) if repeat else None)

    def airs_automatically(self, info: Info) -> bool:
        return any(rule.matches(info) for rule in self.automatic)


@dataclass(frozen=True, slots=True)
class RunningAlert:
    """What the caller knows of an alert that is on the air (or queued): enough to match a
    reference. ``broadcast_id`` is the caller's own handle on it."""

    identifier: str
    sender: str
    broadcast_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str  # one of OUTCOMES
    reason: str  # one of REASON_NAMES
    action: str | None = None  # one of ACTIONS when aired or queued
    targets: tuple[RunningAlert, ...] = ()  # what a "replace" or "stop" acts on
    receiver_flag: str | None = None  # "exercise": only receivers marked for exercises
    info: Info | None = None  # the info read aloud, whose areas select the zones
    text: str = ""  # headline, description, instruction as written, one per line
    spoken_text: str = ""  # the same, normalised for the speech engine when Vietnamese
    starts_at: datetime | None = None  # effective (else sent)
    ends_at: datetime | None = None  # expires (else starts_at + the policy's default)

    @property
    def will_air(self) -> bool:
        return self.outcome in ("aired", "queued")

    def nothing_to_air(self, reason: str) -> "Decision":
        """This decision when the caller finds nothing to air it on (no zone matched:
        "no-zones"; an exercise and no exercise receiver: "no-exercise-receivers"): a new
        alert becomes a log entry; a replacement still stops what it replaces (the sender
        superseded it, with an area that no longer covers this commune); a stop stays."""
        if reason not in REASON_NAMES:
            raise ValueError("unknown reason %r" % reason)
        if self.action == "stop" or not self.will_air:
            return self
        if self.action == "replace":
            return replace(self, outcome="aired", reason=reason, action="stop")
        return replace(self, outcome="logged", reason=reason, action=None, targets=())

    def refusal(self) -> CapError | None:
        """The 4xx error a refused decision answers with, else None."""
        return CapError(self.reason) if self.outcome == "refused" else None


def is_vietnamese(language: str) -> bool:
    language = language.strip().lower()
    return language == "vi" or language.startswith("vi-")


def info_to_read(alert: Alert) -> Info | None:
    """The first Vietnamese info, else the first info, else None."""
    for info in alert.infos:
        if is_vietnamese(info.language):
            return info
    return alert.infos[0] if alert.infos else None


def text_to_read(info: Info) -> tuple[str, str]:
    """(text as written, text for the speech engine): headline, description and instruction,
    one to a line; the speech text is normalised (audio.textnorm) when the info is Vietnamese."""
    text = "\n".join(part for part in (info.headline, info.description, info.instruction) if part)
    return text, normalize_vi(text) if is_vietnamese(info.language) else text


def _lookup(running) -> Callable[[str], RunningAlert | None]:
    return running.get if hasattr(running, "get") else running


def _referenced(alert: Alert, find) -> tuple[RunningAlert, ...]:
    """The running alerts ``alert`` references that its own sender sent."""
    found = []
    for reference in alert.references:
        candidate = find(reference.identifier)
        if (candidate is not None and candidate.sender == reference.sender == alert.sender
                and candidate not in found):
            found.append(candidate)
    return tuple(found)


def decide(alert: Alert, policy: SitePolicy,
           running: Mapping[str, RunningAlert] | Callable[[str], RunningAlert | None],
           now: datetime) -> Decision:
    """The Decision for ``alert`` at ``now`` (an aware datetime); ``running`` looks up a
    running alert by its CAP identifier (a dict or a function; None when not running)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    find = _lookup(running)

    if alert.status in _LOGGED_STATUSES:
        return Decision("logged", _LOGGED_STATUSES[alert.status])
    if alert.msg_type in _LOGGED_MSG_TYPES:
        return Decision("logged", _LOGGED_MSG_TYPES[alert.msg_type])
    if alert.scope == "Restricted":
        return Decision("logged", "restricted-scope")
    if alert.scope == "Private" and not policy.site_addresses.intersection(alert.addresses):
        return Decision("logged", "not-addressed")
    flag = EXERCISE_FLAG if alert.status == "Exercise" else None

    if alert.msg_type == "Cancel":
        targets = _referenced(alert, find)
        if not targets:
            return Decision("logged", "unknown-reference" if alert.references else "no-reference")
        return Decision("aired", "cancel", action="stop", targets=targets)

    info = info_to_read(alert)
    if info is None:
        return Decision("logged", "no-info")
    starts_at = info.effective or alert.sent
    ends_at = info.expires or starts_at + policy.default_duration
    if ends_at <= now:
        return Decision("refused", "expired", info=info, starts_at=starts_at, ends_at=ends_at)
    already = find(alert.identifier)
    if already is not None and already.sender == alert.sender:
        return Decision("logged", "duplicate", info=info)

    targets = ()
    action = "new"
    if alert.msg_type == "Update":
        targets = _referenced(alert, find)
        if not targets:
            reason = "unknown-reference" if alert.references else "no-reference"
            return Decision("logged", reason, info=info)
        action = "replace"

    if alert.scope == "Private":
        outcome, reason = "queued", "private-addressed"
    elif policy.airs_automatically(info):
        outcome, reason = "aired", "automatic"
    else:
        outcome, reason = "queued", "needs-confirmation"
    text, spoken = text_to_read(info)
    return Decision(outcome, reason, action=action, targets=targets, receiver_flag=flag,
                    info=info, text=text, spoken_text=spoken, starts_at=starts_at,
                    ends_at=ends_at)
