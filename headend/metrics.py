"""`/metrics` for Prometheus: what the fleet and the head-end are doing, read at scrape time.

Nothing is counted twice: receivers' presence and command latency come from the database the
pages read, the MQTT link and ingest counters from the running service (``MqttService.stats``,
the figures /health shows). Each app has its own registry, so two head-ends in one process
(tests) never mix their figures.

Scraping needs a bearer token: ``LOAXA_METRICS_TOKEN`` (give Prometheus that one, in
``authorization: credentials``) or any user's token with the "read" permission.
"""

import hmac
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from headend.api.deps import SESSION_COOKIE, get_current_user
from headend.clock_guard import CLOCK
from headend.models import ALERT_NOTICE_PENDING, Alert, AlertNotice, Delivery, Receiver
from headend.security import has_permission

router = APIRouter(tags=["metrics"])

# Command latency is summarised over the deliveries sent this recently: long enough to hold
# a few broadcasts of a quiet day, short enough that an old slow emergency stops showing.
LATENCY_WINDOW = timedelta(minutes=15)
LATENCY_QUANTILES = (0.5, 0.9, 0.99)
NO_ZONE = ""
# MqttService.stats keys exported as counters: name -> (stats key, help).
SERVICE_COUNTERS = {
    "loaxa_reports_ingested": ("ingested", "Reports from receivers written to the database"),
    "loaxa_ingest_batches": ("batches", "Ingest transactions"),
    "loaxa_ingest_errors": ("ingest_error", "Ingest batches that failed and were retried"),
    "loaxa_reports_malformed": ("malformed", "Reports refused: unreadable, forged or replayed"),
    "loaxa_commands_sent": ("commands", "Signed commands published by the MQTT service"),
    "loaxa_time_replies": ("time_reply", "Time-sync replies sent to receivers"),
    "loaxa_mqtt_connects": ("connects", "Connections of the head-end to its broker"),
    "loaxa_receivers_gone_silent": ("silent", "Receivers marked offline for silence"),
    "loaxa_alerts_raised": ("alerts_raised", "Alerts raised (headend/services/alerts.py)"),
}


def _quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty list."""
    rank = max(0, min(len(sorted_values) - 1, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class HeadendCollector:
    """Yields the metric families of one app at each scrape."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        state = self.app.state
        yield from self._receivers(state.session_factory)
        yield from self._service(getattr(state, "mqtt", None))
        trusted = GaugeMetricFamily("loaxa_clock_trusted",
                                    "1 while the head-end's clock is trusted for signing")
        trusted.add_metric([], 0 if CLOCK.problem() else 1)
        yield trusted

    def _receivers(self, session_factory):
        by_state = GaugeMetricFamily("loaxa_receivers", "Receivers by zone and presence",
                                     labels=["zone", "state"])
        offline = GaugeMetricFamily("loaxa_receivers_offline",
                                    "Offline receivers by the reason the head-end knows",
                                    labels=["reason"])
        latency = GaugeMetricFamily(
            "loaxa_command_ack_seconds",
            "Send-to-acknowledgement time of commands sent in the last %d minutes"
            % (LATENCY_WINDOW.total_seconds() // 60), labels=["quantile"])
        acked = GaugeMetricFamily("loaxa_commands_acked_recent",
                                  "Commands acknowledged in the latency window")
        since = datetime.now(UTC) - LATENCY_WINDOW
        with session_factory() as session:
            rows = session.execute(select(Receiver.zone_id, Receiver.online,
                                          Receiver.offline_reason, func.count())
                                   .group_by(Receiver.zone_id, Receiver.online,
                                             Receiver.offline_reason)).all()
            delays = session.execute(select(Delivery.sent_at, Delivery.acked_at).where(
                Delivery.sent_at >= since, Delivery.acked_at.is_not(None))).all()
            open_alerts = session.execute(
                select(Alert.kind, Alert.reason, func.count()).where(Alert.cleared_at.is_(None))
                .group_by(Alert.kind, Alert.reason)).all()
            # Due and not sent: grows while the mail server or the webhook is down.
            overdue = session.scalar(select(func.count()).select_from(AlertNotice).where(
                AlertNotice.state == ALERT_NOTICE_PENDING,
                AlertNotice.due_at <= datetime.now(UTC))) or 0
        zones: dict[tuple[str, str], int] = {}
        reasons: dict[str, int] = {}
        for zone, online, reason, count in rows:
            key = (zone or NO_ZONE, "online" if online else "offline")
            zones[key] = zones.get(key, 0) + count
            if not online:
                reasons[reason or "never-seen"] = reasons.get(reason or "never-seen", 0) + count
        for (zone, presence), count in sorted(zones.items()):
            by_state.add_metric([zone, presence], count)
        for reason, count in sorted(reasons.items()):
            offline.add_metric([reason], count)
        seconds = sorted(max(0.0, (a - s).total_seconds()) for s, a in delays)
        if seconds:
            for q in LATENCY_QUANTILES:
                latency.add_metric([str(q)], _quantile(seconds, q))
        acked.add_metric([], len(seconds))
        alerts = GaugeMetricFamily("loaxa_alerts_open", "Open alerts by kind and reason",
                                   labels=["kind", "reason"])
        for kind, reason, count in sorted(open_alerts, key=lambda r: (r[0], r[1] or "")):
            alerts.add_metric([kind, reason or ""], count)
        notices = GaugeMetricFamily("loaxa_alert_notices_due",
                                    "Alert e-mails and webhook posts due and not yet sent")
        notices.add_metric([], overdue)
        yield from (by_state, offline, latency, acked, alerts, notices)

    def _service(self, mqtt):
        connected = GaugeMetricFamily("loaxa_mqtt_connected",
                                      "1 while the head-end is connected to its broker")
        connected.add_metric([], 1 if mqtt is not None and mqtt.connected.is_set() else 0)
        yield connected
        depth = GaugeMetricFamily("loaxa_ingest_queue_depth",
                                  "Reports received and not yet written to the database")
        depth.add_metric([], mqtt.queue_depth() if mqtt is not None else 0)
        yield depth
        stats = mqtt.stats if mqtt is not None else {}
        for name, (key, text) in SERVICE_COUNTERS.items():
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], int(stats.get(key, 0)))
            yield counter


def registry_of(app) -> CollectorRegistry:
    registry = getattr(app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(HeadendCollector(app))
        app.state.metrics_registry = registry
    return registry


def _authorised(request: Request) -> bool:
    settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if (settings.metrics_token and scheme.lower() == "bearer"
            and hmac.compare_digest(credentials.encode(), settings.metrics_token.encode())):
        return True
    if not credentials and not request.cookies.get(SESSION_COOKIE):
        return False
    with request.app.state.session_factory() as session:
        try:
            user = get_current_user(request, session, settings,
                                    credentials if scheme.lower() == "bearer" else None)
        except HTTPException:
            return False
        return has_permission(user.role, "read")


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request):
    if not _authorised(request):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a metrics or user token is needed",
                            headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(registry_of(request.app)), media_type=CONTENT_TYPE_LATEST)
