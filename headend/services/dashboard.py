"""The dashboard (the home page, GET /api/v1/dashboard): the fleet at a glance, gathered here
in one call so a panel is one more field and one more query.

Receivers online / with a fault / offline per village; what plays now (broadcasts whose
receivers report playing, live sessions on air, emergencies still held for returning
receivers); the next occurrences of approved programmes; the open alerts (the worst and newest
first, headend/services/alerts.py). A new panel is a field of ``Dashboard`` filled in
``overview``.
"""

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from headend.live.session import LIVE
from headend.models import (
    DELIVERY_PLAYING,
    PROGRAMME_APPROVED,
    Broadcast,
    Delivery,
)
from headend.services import alert_rules, alerts
from headend.services.broadcasts import current_emergencies
from headend.services.devices import RECEIVER_STATES, list_devices, receiver_state
from headend.services.programmes import list_programmes, occurrences
from headend.settings import Settings

UPCOMING = 5                      # next programme occurrences shown
ALERTS = 8                        # open alerts shown (the page /alerts lists them all)
UPCOMING_AHEAD = timedelta(days=7)  # looked for this far ahead
NO_VILLAGE = ""                   # the id of the group of receivers in no village
PLAYING_ORDER = {"emergency": 0, "live": 1, "priority": 2, "normal": 3}


@dataclass
class Village:
    id: str       # zone id; NO_VILLAGE for receivers in none
    name: str | None
    online: int = 0
    fault: int = 0    # online, but on battery or with an amplifier fault
    offline: int = 0

    @property
    def total(self) -> int:
        return self.online + self.fault + self.offline


@dataclass
class Playing:
    """A broadcast or live session some receivers play now."""

    id: str
    kind: str            # "broadcast" or "live"
    title: str | None
    priority: str        # normal, priority, emergency; "live" for a live session
    playing: int         # receivers that report playing it (live: were sent its stream)
    targeted: int        # receivers it was sent to
    since: datetime | None
    by: str | None


@dataclass
class Emergency:
    id: str
    title: str | None
    state: str
    started: datetime
    until: datetime
    by: str | None


@dataclass
class Upcoming:
    programme_id: str
    title: str
    priority: str
    at: datetime


@dataclass
class OpenAlert:
    id: int
    device_id: str
    device_name: str | None
    kind: str
    reason: str | None
    severity: str
    raised_at: datetime
    title_vi: str
    title_en: str


@dataclass
class Dashboard:
    at: datetime
    villages: list[Village]
    playing: list[Playing]
    emergencies: list[Emergency]
    upcoming: list[Upcoming]
    totals: dict[str, int] = field(default_factory=dict)  # state -> receivers, and "total"
    alerts: list[OpenAlert] = field(default_factory=list)  # the first ALERTS of them
    alerts_open: int = 0


def villages_of(devices: Iterable[Any]) -> list[Village]:
    """Receivers counted by state per village, villages by name, the unassigned last."""
    found: dict[str, Village] = {}
    for device in devices:
        key = device.zone or NO_VILLAGE
        village = found.get(key)
        if village is None:
            village = found[key] = Village(key, device.zone_name)
        state = receiver_state(device.online, device.telemetry)
        setattr(village, state, getattr(village, state) + 1)
    return sorted(found.values(), key=lambda v: (v.id == NO_VILLAGE, name_key(v.name or v.id)))


def name_key(name: str) -> str:
    """A name as Vietnamese readers order it, near enough: letters without their marks, Đ
    with D ("Thôn Đông" before "Thôn Tây", which code points put after it)."""
    plain = unicodedata.normalize("NFD", name.replace("Đ", "D").replace("đ", "d"))
    return "".join(c for c in plain if not unicodedata.combining(c)).casefold()


def _playing_broadcasts(session: Session) -> list[Playing]:
    playing = (select(Delivery.broadcast_id, func.count().label("n"))
               .where(Delivery.state == DELIVERY_PLAYING)
               .group_by(Delivery.broadcast_id).subquery())
    targeted = (select(Delivery.broadcast_id, func.count().label("n"))
                .group_by(Delivery.broadcast_id).subquery())
    rows = session.execute(
        select(Broadcast, playing.c.n, targeted.c.n)
        .join(playing, playing.c.broadcast_id == Broadcast.id)
        .join(targeted, targeted.c.broadcast_id == Broadcast.id)
        .order_by(Broadcast.start_at.desc()))
    return [Playing(b.id, "broadcast", b.media.title if b.media else None, b.priority, n, total,
                    b.start_at, b.created_by) for b, n, total in rows]


def _live_on_air(sessions: Iterable[Any]) -> list[Playing]:
    return [Playing(s.id, "live", None, "live", len(s.sent), len(s.receivers),
                    s.started_at or s.created_at, s.created_by)
            for s in sessions if s.state == LIVE]


def _emergencies(session: Session, now: datetime) -> list[Emergency]:
    """Emergencies not cancelled and still valid: sent to every receiver that comes back."""
    return [Emergency(b.id, b.media.title if b.media else None, b.state, b.start_at,
                      b.valid_until, b.created_by)
            for b in current_emergencies(session, now=now)]


def _upcoming(session: Session, settings: Settings, now: datetime, limit: int) -> list[Upcoming]:
    found = []
    for programme in list_programmes(session, state=PROGRAMME_APPROVED):
        # Only the first of each: "the next programmes", not one daily programme five times.
        for occurrence in occurrences(session, settings=settings, programme=programme,
                                      start=now, end=now + UPCOMING_AHEAD,
                                      include_skipped=False)[:1]:
            found.append(Upcoming(programme.id, programme.title, programme.priority,
                                  occurrence.start))
    return sorted(found, key=lambda u: u.at)[:limit]


def overview(session: Session, *, settings: Settings, live_sessions: Iterable[Any] = (),
             now: datetime | None = None, upcoming: int = UPCOMING) -> Dashboard:
    """Everything the dashboard shows, as of ``now``. ``live_sessions``: the live service's
    sessions (held in memory, headend/live/service.py), none without it."""
    now = now or datetime.now(UTC)
    devices = list_devices(session)
    villages = villages_of(devices)
    totals = {state: sum(getattr(v, state) for v in villages) for state in RECEIVER_STATES}
    totals["total"] = sum(v.total for v in villages)
    # In the order receivers let them preempt each other: what is heard first comes first.
    playing = sorted(_live_on_air(live_sessions) + _playing_broadcasts(session),
                     key=lambda p: PLAYING_ORDER.get(p.priority, len(PLAYING_ORDER)))
    return Dashboard(at=now, villages=villages, playing=playing,
                     emergencies=_emergencies(session, now),
                     upcoming=_upcoming(session, settings, now, upcoming), totals=totals,
                     **_alerts(session, {d.id: d.name for d in devices}))


def _alerts(session: Session, names: dict[str, str]) -> dict[str, Any]:
    found = alerts.open_alerts(session)
    worst = sorted(found, key=lambda a: alert_rules.SEVERITIES.index(a.severity)
                   if a.severity in alert_rules.SEVERITIES else len(alert_rules.SEVERITIES))
    return {"alerts_open": len(found), "alerts": [
        OpenAlert(a.id, a.device_id, names.get(a.device_id), a.kind, a.reason, a.severity,
                  a.raised_at, alerts.title(a, "vi"), alerts.title(a, "en"))
        for a in worst[:ALERTS]]}
