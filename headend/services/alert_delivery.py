"""Sending alert notices: e-mail (SMTP) and webhook (a JSON POST), from a thread of their own.

The ingest thread writes notices (``AlertNotice``) with the alerts (headend/services/alerts.py)
and wakes this thread; a slow or dead mail server never holds up the ingest. Each notice is
claimed (pending -> sending, one UPDATE that only one thread can win) and committed before it
is sent, then marked sent: an alert that is cleared meanwhile drops only what is still
pending, so nobody is told "over" of an alert they never heard of, and nothing is sent twice
(after a crash between the send and its commit, a notice found "sending" at start is sent
again: at least once, the webhook's ``id`` lets a receiver drop the copy). A failed send is
retried with a growing delay, ``MAX_ATTEMPTS`` times.

The SMTP password and the webhook secret are ``SecretStr``: never in a log line or a repr.
"""

import json
import logging
import smtplib
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from headend.db import session_scope
from headend.models import (
    ALERT_NOTICE_FAILED,
    ALERT_NOTICE_PENDING,
    ALERT_NOTICE_SENDING,
    ALERT_NOTICE_SENT,
    Alert,
    AlertNotice,
    Receiver,
)
from headend.services import alerts
from headend.services.cap_alerts import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from headend.settings import Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
RETRY_FIRST_S = 30  # then doubled each time: 30 s, 1 min, 2 min, ... ~1 h
PER_RUN = 100
USER_AGENT = "loaxa-headend-alerts/1"


class DeliveryError(Exception):
    pass


def email_message(settings: Settings, notice: AlertNotice, alert: Alert,
                  receiver: Receiver | None) -> EmailMessage:
    """The e-mail of a notice: Vietnamese first, then English, in one plain-text body."""
    message = EmailMessage()
    name = receiver.name if receiver is not None else alert.device_id
    message["Subject"] = "[%s] %s — %s" % (settings.site_name,
                                           alerts.event_title(alert, notice.event, "vi"), name)
    message["From"] = settings.alert_smtp_from
    message["To"] = ", ".join(settings.alert_email_to)
    message["X-Loaxa-Alert"] = "%d/%s" % (alert.id, notice.event)
    body = "%s\n\n-- English --\n%s\n" % (
        alerts.describe(alert, notice.event, receiver=receiver, settings=settings,
                        language="vi"),
        alerts.describe(alert, notice.event, receiver=receiver, settings=settings,
                        language="en"))
    message.set_content(body)
    return message


def send_email(settings: Settings, message: EmailMessage) -> None:
    timeout = settings.alert_delivery_timeout_s
    try:
        with smtplib.SMTP(settings.alert_smtp_host, settings.alert_smtp_port,
                          timeout=timeout) as smtp:
            smtp.ehlo()
            if settings.alert_smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if settings.alert_smtp_user:
                smtp.login(settings.alert_smtp_user,
                           settings.alert_smtp_password.get_secret_value())
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        # The server's answer says what went wrong; it never holds the password.
        raise DeliveryError("smtp %s:%d: %s: %s" % (settings.alert_smtp_host,
                                                  settings.alert_smtp_port,
                                                  type(exc).__name__, exc)) from None


def webhook_body(settings: Settings, notice: AlertNotice, alert: Alert,
                 receiver: Receiver | None) -> dict[str, Any]:
    """The JSON a webhook gets (docs/alerts.md)."""
    return {
        "id": notice.id, "event": notice.event, "site": settings.site_id,
        "site_name": settings.site_name, "alert": alerts.as_dict(alert, receiver),
        "text_vi": alerts.describe(alert, notice.event, receiver=receiver, settings=settings,
                                   language="vi"),
        "text_en": alerts.describe(alert, notice.event, receiver=receiver, settings=settings,
                                   language="en"),
    }


def send_webhook(settings: Settings, body: dict[str, Any]) -> None:
    payload = json.dumps(body, ensure_ascii=False, default=_iso).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    secret = settings.alert_webhook_secret.get_secret_value()
    if secret:
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, payload)
    try:
        answer = httpx.post(settings.alert_webhook_url, content=payload, headers=headers,
                            timeout=settings.alert_delivery_timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryError("webhook: %s: %s" % (type(exc).__name__, exc)) from None
    if answer.status_code >= 300:
        raise DeliveryError("webhook answered %d" % answer.status_code)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError("not JSON: %r" % type(value))


def deliver_due(session_factory: sessionmaker[Session], *, settings: Settings,
                now: datetime | None = None) -> int:
    """Queue repeats, then send every notice due by now; returns how many were sent."""
    now = now or datetime.now(UTC)
    with session_scope(session_factory) as session:
        alerts.queue_repeats(session, settings=settings, now=now)
        session.commit()
        due = list(session.scalars(select(AlertNotice.id).where(
            AlertNotice.state == ALERT_NOTICE_PENDING, AlertNotice.due_at <= now)
            .order_by(AlertNotice.id).limit(PER_RUN)))
    sent = 0
    for notice_id in due:
        sent += _deliver_one(session_factory, settings, notice_id)
    return sent


def _deliver_one(session_factory, settings: Settings, notice_id: int) -> int:
    with session_scope(session_factory) as session:
        claimed = session.execute(update(AlertNotice).where(
            AlertNotice.id == notice_id, AlertNotice.state == ALERT_NOTICE_PENDING)
            .values(state=ALERT_NOTICE_SENDING))
        session.commit()
        if claimed.rowcount != 1:
            return 0  # dropped (its alert is over) or taken meanwhile
        notice = session.get(AlertNotice, notice_id)
        alert = session.get(Alert, notice.alert_id) if notice is not None else None
        if notice is None or alert is None:
            return 0
        receiver = session.get(Receiver, alert.device_id)
        try:
            if notice.channel == alerts.EMAIL:
                send_email(settings, email_message(settings, notice, alert, receiver))
            elif notice.channel == alerts.WEBHOOK:
                send_webhook(settings, webhook_body(settings, notice, alert, receiver))
            else:
                raise DeliveryError("unknown channel %r" % notice.channel)
        except DeliveryError as exc:
            notice.attempts += 1
            notice.error = str(exc)[:200]
            if notice.attempts >= MAX_ATTEMPTS:
                notice.state = ALERT_NOTICE_FAILED
                log.error("alert notice %d (%s) not sent, giving up: %s", notice.id,
                          notice.channel, exc)
            else:
                notice.state = ALERT_NOTICE_PENDING
                notice.due_at = datetime.now(UTC) + timedelta(
                    seconds=RETRY_FIRST_S * 2 ** (notice.attempts - 1))
                log.warning("alert notice %d (%s) not sent, retrying: %s", notice.id,
                            notice.channel, exc)
            session.commit()
            return 0
        notice.state = ALERT_NOTICE_SENT
        notice.sent_at = datetime.now(UTC)
        notice.attempts += 1
        notice.error = None
        session.commit()
        return 1


class AlertDelivery:
    """The thread that sends notices: woken by ``wake()`` after the ingest wrote some, and
    every ``alert_check_s`` for repeats, the end of quiet hours and retries."""

    def __init__(self, *, settings: Settings, session_factory: sessionmaker[Session]):
        self.settings = settings
        self.session_factory = session_factory
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def start(self) -> "AlertDelivery":
        with session_scope(self.session_factory) as session:
            # Claimed by a run that stopped before it could say: sent again (at least once).
            session.execute(update(AlertNotice).where(
                AlertNotice.state == ALERT_NOTICE_SENDING).values(state=ALERT_NOTICE_PENDING))
            session.commit()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="loaxa-alerts", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.alert_check_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.sent += deliver_due(self.session_factory, settings=self.settings)
            except Exception:
                log.exception("alert delivery failed")
