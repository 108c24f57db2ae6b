"""Alerts with the reason: raised once, cleared when over, notified by e-mail and webhook.

- ``evaluate`` (the engine): called by the MQTT service's ingest thread for the receivers of
  each batch it committed (heartbeats, births, deaths) and for those the presence sweep
  marked offline. It applies the rules (headend/services/alert_rules.py) to what the
  database holds of each receiver, raises what newly holds and clears what is over, and
  writes one notice per channel (``AlertNotice``, an outbox) in the same transaction. It only
  reads when nothing changes (two indexed queries per batch) and never talks to the network.
- ``queue_repeats``: notices again for alerts still open after the repeat interval.
- The delivery (headend/services/alert_delivery.py) sends due notices from its own thread.
- ``open_alerts``, ``recent_alerts``, ``list_alerts``: for the pages and GET /api/v1/alerts.

Only the ingest thread raises and clears alerts, so "one open alert per receiver and kind"
holds by construction; the database's partial unique index (``uq_alerts_open``) keeps it too.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from headend.commands import chunks
from headend.db import begin_writing
from headend.i18n import translator
from headend.models import (
    ALERT_NOTICE_DROPPED,
    ALERT_NOTICE_PENDING,
    ALERT_NOTICE_SENDING,
    ALERT_NOTICE_SENT,
    Alert,
    AlertNotice,
    AuditEntry,
    Receiver,
)
from headend.services import alert_rules as rules
from headend.services.programmes_time import local_text
from headend.settings import Settings

log = logging.getLogger(__name__)

EMAIL, WEBHOOK = "email", "webhook"
MAX_LIST = 1000


def channels(settings: Settings) -> list[str]:
    """The channels notices go out on: e-mail with an SMTP host, the webhook with a URL."""
    out = []
    if settings.alert_smtp_host and settings.alert_email_to:
        out.append(EMAIL)
    if settings.alert_webhook_url:
        out.append(WEBHOOK)
    return out


@dataclass
class Evaluation:
    raised: list[Alert]
    cleared: list[Alert]
    notices: int = 0


class _Engine:
    def __init__(self, session: Session, settings: Settings, now: datetime):
        self.session = session
        self.settings = settings
        self.now = now
        self.thresholds = rules.Thresholds.from_settings(settings)
        self.policy = rules.Policy.from_settings(settings)
        self.channels = channels(settings)
        self.result = Evaluation([], [])

    def raise_(self, receiver: Any, condition: rules.Condition) -> None:
        alert = Alert(device_id=receiver.id, kind=condition.kind, reason=condition.reason,
                      severity=rules.severity(condition.kind, condition.reason),
                      detail=condition.detail, raised_at=self.now, repeats=0)
        self.session.add(alert)
        self.session.flush()  # its id, for the notices
        self.result.raised.append(alert)
        if self.channels:
            alert.noticed_at = self._notices(alert, rules.RAISED)

    def clear(self, alert: Alert) -> None:
        alert.cleared_at = self.now
        self.result.cleared.append(alert)
        # Notices not sent yet are not worth sending now; "over" goes out only to those told
        # of it (a notice sent or being sent: the delivery claims one before it sends it).
        self.session.execute(update(AlertNotice).where(
            AlertNotice.alert_id == alert.id, AlertNotice.state == ALERT_NOTICE_PENDING)
            .values(state=ALERT_NOTICE_DROPPED))
        told = self.session.scalar(select(AlertNotice.id).where(
            AlertNotice.alert_id == alert.id,
            AlertNotice.state.in_((ALERT_NOTICE_SENDING, ALERT_NOTICE_SENT))).limit(1))
        if told is not None:
            self._notices(alert, rules.CLEARED)

    def _notices(self, alert: Alert, event: str) -> datetime:
        due = self.policy.due_at(alert.kind, alert.reason, event, self.now)
        for channel in self.channels:
            self.session.add(AlertNotice(alert_id=alert.id, event=event, channel=channel,
                                         created_at=self.now, due_at=due,
                                         state=ALERT_NOTICE_PENDING, attempts=0))
            self.result.notices += 1
        return due

    def reboot_requested(self, device_id: str) -> bool:
        """Whether a reboot command went to this receiver within the reboot grace."""
        since = self.now - timedelta(seconds=self.settings.alert_reboot_grace_s)
        for (detail,) in self.session.execute(select(AuditEntry.detail).where(
                AuditEntry.action == "device.command", AuditEntry.target == device_id,
                AuditEntry.at >= since)):
            if isinstance(detail, dict) and detail.get("kind") == "reboot":
                return True
        return False

    def judge(self, receiver: Any, open_: dict[str, Alert]) -> None:
        telemetry = receiver.telemetry if isinstance(receiver.telemetry, dict) else None
        offline = open_.get(rules.OFFLINE)
        if not receiver.online:
            if offline is None and receiver.last_seen is not None:  # never heard: not yet up
                battery = open_.get(rules.ON_BATTERY)
                start_dc = (battery.detail or {}).get("dc") if battery is not None else None
                reason = rules.offline_reason(
                    telemetry, battery_start_dc=start_dc, thresholds=self.thresholds,
                    reboot_requested=self.reboot_requested(receiver.id))
                detail = {"last_seen": receiver.last_seen.isoformat()
                          if receiver.last_seen else None}
                for name in ("mains", "dc", "rssi"):
                    if telemetry is not None and telemetry.get(name) is not None:
                        detail[name] = telemetry[name]
                self.raise_(receiver, rules.Condition(rules.OFFLINE, reason, detail))
            return  # its other figures are as old as its last heartbeat: left as they are
        if offline is not None:
            self.clear(offline)
        if telemetry is None or (telemetry.get("boot"), telemetry.get("conn")) != (
                receiver.session_boot, receiver.session_conn):
            return  # no heartbeat of this session yet
        holds, unknown = rules.judge_telemetry(telemetry, receiver.capabilities,
                                               self.thresholds, set(open_))
        for kind in rules.TELEMETRY_KINDS:
            if kind in unknown:
                continue
            alert = open_.get(kind)
            if kind in holds and alert is None:
                self.raise_(receiver, holds[kind])
            elif kind not in holds and alert is not None:
                self.clear(alert)


_VIEW = (Receiver.id, Receiver.online, Receiver.last_seen, Receiver.telemetry,
         Receiver.capabilities, Receiver.session_boot, Receiver.session_conn)


def evaluate(session: Session, *, settings: Settings, device_ids: Iterable[str],
             now: datetime) -> Evaluation:
    """Raise and clear the alerts of these receivers from what the database says of them
    now; the notices go in the same session. The caller commits."""
    engine = _Engine(session, settings, now)
    ids = sorted(set(device_ids))
    receivers: dict[str, Any] = {}
    open_: dict[str, dict[str, Alert]] = {}
    # The columns the rules read, not whole receivers (no zone join, no key columns).
    for part in chunks(ids):
        for row in session.execute(select(*_VIEW).where(Receiver.id.in_(part))):
            receivers[row.id] = row
    for part in chunks(ids):
        for alert in session.scalars(select(Alert).where(Alert.device_id.in_(part),
                                                         Alert.cleared_at.is_(None))):
            open_.setdefault(alert.device_id, {})[alert.kind] = alert
    for device_id in ids:
        receiver = receivers.get(device_id)
        if receiver is not None:
            engine.judge(receiver, open_.get(device_id, {}))
    return engine.result


def queue_repeats(session: Session, *, settings: Settings, now: datetime) -> int:
    """Notices again for open alerts whose last notice was due a repeat interval ago; returns
    how many alerts. Takes the write lock first: the ingest thread may clear one meanwhile."""
    policy = rules.Policy.from_settings(settings)
    out = channels(settings)
    if policy.repeat is None or not out:
        return 0
    query = select(Alert).where(Alert.cleared_at.is_(None), Alert.noticed_at.is_not(None),
                                Alert.noticed_at <= now - policy.repeat)
    if session.scalar(query.with_only_columns(Alert.id).limit(1)) is None:
        return 0  # the usual case: read only, no write lock taken
    begin_writing(session)
    due = list(session.scalars(query.order_by(Alert.id).limit(500)))
    for alert in due:
        at = policy.due_at(alert.kind, alert.reason, rules.REPEAT, now)
        for channel in out:
            session.add(AlertNotice(alert_id=alert.id, event=rules.REPEAT, channel=channel,
                                    created_at=now, due_at=at, state=ALERT_NOTICE_PENDING,
                                    attempts=0))
        alert.noticed_at = at
        alert.repeats += 1
    return len(due)


# -- reading -------------------------------------------------------------------------------

def list_alerts(session: Session, *, open: bool | None = None, device_id: str | None = None,
                since: datetime | None = None, limit: int = 200) -> list[Alert]:
    """Alerts newest first: only open ones (``open=True``), only those over (False), of one
    receiver, raised or still open since ``since``."""
    query = select(Alert)
    if open is True:
        query = query.where(Alert.cleared_at.is_(None))
    elif open is False:
        query = query.where(Alert.cleared_at.is_not(None))
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    if since is not None:
        query = query.where((Alert.raised_at >= since) | Alert.cleared_at.is_(None)
                            | (Alert.cleared_at >= since))
    query = query.order_by(Alert.raised_at.desc(), Alert.id.desc())
    return list(session.scalars(query.limit(max(1, min(limit, MAX_LIST)))))


def open_alerts(session: Session, *, device_id: str | None = None,
                limit: int = MAX_LIST) -> list[Alert]:
    """What is wrong now, newest first (the dashboard's panel)."""
    return list_alerts(session, open=True, device_id=device_id, limit=limit)


def recent_alerts(session: Session, limit: int = 20) -> list[Alert]:
    """The latest alerts, open or over, newest first."""
    return list_alerts(session, limit=limit)


# -- words ---------------------------------------------------------------------------------

def title(alert: Alert, language: str) -> str:
    """"Mất kết nối: mất điện (...)" / "Offline: power lost (...)"."""
    t = translator(language)
    text = t("alert.kind." + alert.kind)
    if alert.reason:
        text += ": " + t.maybe("alert.reason", alert.reason)
    return text


def event_title(alert: Alert, event: str, language: str) -> str:
    t = translator(language)
    if event == rules.CLEARED:
        if alert.kind == rules.OFFLINE:
            return t("alert.back-online")
        return "%s: %s" % (t("alert.event.cleared"), t("alert.kind." + alert.kind))
    prefix = t("alert.event." + event)
    return "%s: %s" % (prefix, title(alert, language))


def describe(alert: Alert, event: str, *, receiver: Receiver | None, settings: Settings,
             language: str) -> str:
    """The lines of a notice in one language."""
    t = translator(language)
    name = receiver.name if receiver is not None else alert.device_id
    lines = [event_title(alert, event, language),
             "%s: %s (%s)" % (t("alert.field.receiver"), name, alert.device_id)]
    if receiver is not None and receiver.zone is not None:
        lines.append("%s: %s" % (t("alert.field.zone"), receiver.zone.name))
    lines.append("%s: %s" % (t("alert.field.since"), local_text(alert.raised_at, settings.tz)))
    if alert.cleared_at is not None:
        lines.append("%s: %s" % (t("alert.field.over"),
                                 local_text(alert.cleared_at, settings.tz)))
    figures = _figures(alert.detail)
    if figures:
        lines.append("%s: %s" % (t("alert.field.detail"), figures))
    return "\n".join(lines)


def _figures(detail: dict[str, Any] | None) -> str:
    units = {"dc": " V", "rssi": " dBm", "pct": " %", "up": " s"}
    parts = []
    for key, value in (detail or {}).items():
        if value is None or key in ("last_seen", "used", "total"):
            continue
        parts.append("%s %s%s" % (key, value, units.get(key, "")))
    return ", ".join(parts)


def as_dict(alert: Alert, receiver: Receiver | None = None) -> dict[str, Any]:
    """An alert as the API and the webhook show it."""
    return {"id": alert.id, "device_id": alert.device_id,
            "device_name": receiver.name if receiver is not None else None,
            "zone": receiver.zone_id if receiver is not None else None,
            "kind": alert.kind, "reason": alert.reason, "severity": alert.severity,
            "open": alert.cleared_at is None, "raised_at": alert.raised_at,
            "cleared_at": alert.cleared_at, "detail": alert.detail or {},
            "repeats": alert.repeats, "title_vi": title(alert, "vi"),
            "title_en": title(alert, "en")}
