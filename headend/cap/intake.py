"""One CAP message in, one answer out: parse, decide, select the zones. No database, no IO.

The API route (and a feed poller) calls ``receive_cap`` with the body and what it knows (the
site's zones and policy, the running alerts, the time, which zones have receivers marked for
exercises), then acts on ``CapResult.decision`` and answers ``CapResult.as_dict()`` with
``CapResult.http_status``. A message that cannot be read raises CapError (a 4xx ServiceError).
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from headend.cap.area import Zone, select_zones
from headend.cap.parse import Alert, parse_cap
from headend.cap.policy import Decision, RunningAlert, SitePolicy, decide


@dataclass(frozen=True, slots=True)
class CapResult:
    alert: Alert
    decision: Decision
    zones: tuple[str, ...]  # the zones it airs on (empty for a stop: it stops everywhere)

    @property
    def http_status(self) -> int:
        return 422 if self.decision.outcome == "refused" else 200

    def as_dict(self) -> dict:
        """The API's answer (the route adds its "broadcast_id")."""
        answer = {
            "identifier": self.alert.identifier,
            "outcome": self.decision.outcome,
            "reason": self.decision.reason,
            "action": self.decision.action,
            "targets": [target.identifier for target in self.decision.targets],
            "zones": list(self.zones),
            "receiver_flag": self.decision.receiver_flag,
        }
        refusal = self.decision.refusal()
        if refusal is not None:
            answer.update(refusal.as_dict())
        return answer


def receive_cap(body: bytes, *, zones: Iterable[Zone], policy: SitePolicy,
                running: Mapping[str, RunningAlert] | Callable[[str], RunningAlert | None],
                now: datetime,
                has_exercise_receivers: Callable[[tuple[str, ...]], bool] = lambda zones: False,
                ) -> CapResult:
    """Parse ``body`` (raises CapError), decide, and select the zones the alert's area touches.
    An alert that would air but touches no zone, or an exercise whose zones have no receiver
    marked for exercises, becomes a log entry with that reason ("no-zones",
    "no-exercise-receivers"); an update in that case stops the alert it replaces."""
    alert = parse_cap(body)
    decision = decide(alert, policy, running, now)
    selected = ()
    if decision.will_air and decision.action != "stop":
        selected = select_zones(decision.info.areas, zones)
        if not selected:
            decision = decision.nothing_to_air("no-zones")
        elif decision.receiver_flag == "exercise" and not has_exercise_receivers(selected):
            decision = decision.nothing_to_air("no-exercise-receivers")
        if not decision.will_air or decision.action == "stop":
            selected = ()
    return CapResult(alert=alert, decision=decision, zones=selected)
