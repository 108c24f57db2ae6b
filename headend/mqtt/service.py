"""The long-running MQTT service inside the head-end process.

Two threads besides paho's network thread:

- paho's thread receives; time requests are answered right there, from the in-memory key
  cache, without touching the database (a receiver's clock estimate depends on a fast reply);
  every other report goes on a queue.
- the ingest thread drains the queue in batches, one transaction per batch, and acknowledges
  each QoS-1 report only after the transaction that stored it committed (``manual_ack``).
  With a persistent session (fixed client id, no clean start) the broker keeps what receivers
  sent while the head-end was down, or unacknowledged when it died, and delivers it on return:
  no proof-of-play record is lost to a crash.

The same thread sweeps presence (a receiver silent for ``offline_after_s`` is offline) and
publishes the commands that follow from reports (what a returning receiver missed). After each
committed batch and sweep it raises and clears the alerts of the receivers concerned
(headend/services/alerts.py: reads only, unless something changed); a third thread
(headend/services/alert_delivery.py) sends their e-mails and webhooks.
"""

import logging
import queue
import ssl
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from headend.clock_guard import CLOCK, ClockUntrusted
from headend.commands import Outgoing, chunks, now_ms, prepare
from headend.db import session_scope
from headend.keystore import load_kek, open_device_key
from headend.logbudget import LogBudget
from headend.models import CommandCounter, Receiver
from headend.mqtt.ingest import Report, apply_batch, sweep_presence
from headend.planning import answer_time_request
from headend.services import alerts, escalation, firmware, reconcile, telemetry
from headend.services.alert_delivery import AlertDelivery
from headend.settings import Settings
from protocol import topics
from protocol.errors import ProtocolError
from protocol.signing import key_from_hex

log = logging.getLogger(__name__)
_clock_log = LogBudget(log, lines=5, per_s=60.0)  # one line per refused reply would flood
_alert_log = LogBudget(log, lines=5, per_s=60.0)  # a failing alert check fails every batch

# Leaf -> QoS of the head-end's subscription. Presence and events are QoS 1, so the broker
# keeps them for the head-end's persistent session while it restarts (proof of play is never
# lost); a heartbeat or a time request is worthless once stale, so QoS 0: not queued.
SUBSCRIBED = {topics.STATUS: 1, topics.HEARTBEAT: 0, topics.EVENT: 1, topics.TIME_REQUEST: 0}
_NEVER_EXPIRE = 0xFFFFFFFF
_V5_GIVE_UP_S = 1.5  # an "auto" connection falls back to 3.1.1 if MQTT 5 got nowhere by then


class MqttService:
    """Start with ``start()``, stop with ``stop()``; ``publish_many`` sends signed commands."""

    def __init__(self, *, settings: Settings, session_factory: sessionmaker[Session]):
        self.settings = settings
        self.session_factory = session_factory
        self.stats: Counter = Counter()
        self.connected = threading.Event()
        self._queue: queue.SimpleQueue[Report] = queue.SimpleQueue()
        self._keys: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._generation = 0
        self._client: mqtt.Client | None = None
        self._protocol = settings.mqtt_protocol
        self._ingest_thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._lock = threading.Lock()
        self._fallback_lock = threading.Lock()
        self._v5_refused = threading.Event()
        self._run_id: int | None = None
        self.alert_delivery = AlertDelivery(settings=settings, session_factory=session_factory)
        # Silence counts for alerts only once every live receiver had time to report after a
        # start (monotonic s): a head-end that was down finds every receiver's "last seen" old.
        self._alerts_from: float | None = None
        self._alerts_retry: set[str] = set()  # receivers whose judging failed: again next time

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> "MqttService":
        self._load_keys()
        self._learn_counter_floor()
        self._record_run()
        self._alerts_from = time.monotonic() + self.settings.offline_after_s + 2 * (
            self.settings.presence_sweep_s)
        self._stop.clear()
        self._connect("5" if self._protocol in ("auto", "5") else "3.1.1")
        self._ingest_thread = threading.Thread(target=self._ingest_loop, name="loaxa-ingest",
                                               daemon=True)
        self._ingest_thread.start()
        self.alert_delivery.start()
        return self

    def _learn_counter_floor(self) -> None:
        """A clock far behind the newest counter this head-end signed is wrong (a dead RTC
        battery): it must neither sign nor teach receivers its time."""
        with session_scope(self.session_factory) as session:
            newest = session.scalar(select(func.max(CommandCounter.last_ctr)))
        CLOCK.learn_floor(newest or 0)

    def _record_run(self) -> None:
        """This run of the head-end, kept alive by every sweep: the gaps between runs are when
        it was down (headend/services/reconcile.py). The first sweeps after a start conclude
        nothing while the broker delivers what it kept; after that, what aired while it was
        down and no report settled is concluded "headend-down"."""
        with session_scope(self.session_factory) as session:
            self._run_id = reconcile.start_run(session, now=datetime.now(UTC))
            session.commit()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._ingest_thread is not None:
            self._ingest_thread.join(timeout)
        self.alert_delivery.stop(timeout)
        client = self._client
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self.connected.clear()

    def queue_depth(self) -> int:
        """Reports received and not yet ingested (approximate, for /metrics)."""
        return self._queue.qsize()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)

    def _connect(self, protocol: str) -> None:
        s = self.settings
        v5 = protocol == "5"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=s.resolved_client_id,
                             clean_session=None if v5 else False,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, manual_ack=True)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        if s.mqtt_username:
            client.username_pw_set(s.mqtt_username, s.mqtt_password or None)
        if s.mqtt_tls:
            client.tls_set(ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        kwargs: dict[str, Any] = {}
        if v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = _NEVER_EXPIRE
            kwargs = {"clean_start": False, "properties": properties}
        self._client = client
        self._client_protocol = protocol
        client.connect_async(s.mqtt_host, s.mqtt_port, s.mqtt_keepalive_s, **kwargs)
        client.loop_start()
        if v5 and self._protocol == "auto":
            threading.Thread(target=self._fall_back_if_stuck, args=(client,), daemon=True).start()

    def _fall_back_if_stuck(self, client: mqtt.Client, wait_s: float = _V5_GIVE_UP_S) -> None:
        """A broker without MQTT 5 (amqtt) refuses or drops the v5 CONNECT: use 3.1.1."""
        with self._fallback_lock:
            if self.connected.wait(wait_s) or self._stop.is_set():
                return
            if self._client is client and not self.connected.is_set():
                log.info("MQTT 5 not accepted by %s:%d; using MQTT 3.1.1",
                         self.settings.mqtt_host, self.settings.mqtt_port)
                self._protocol = "3.1.1"
                client.disconnect()
                client.loop_stop()
                self._connect("3.1.1")

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self.stats["connect_refused"] += 1
            log.warning("broker refused the connection: %s", reason_code)
            return
        with self._lock:
            self._generation += 1
        site = self.settings.site_id
        client.subscribe([(topics.uplink_filter(site, leaf), SUBSCRIBED[leaf])
                          for leaf in SUBSCRIBED])
        self.stats["connects"] += 1
        log.info("connected to MQTT %s:%d (%s), session present: %s", self.settings.mqtt_host,
                 self.settings.mqtt_port, self._client_protocol,
                 getattr(_flags, "session_present", "?"))
        self.connected.set()

    def _on_disconnect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if (self._protocol == "auto" and self._client_protocol == "5"
                and self.stats["connects"] == 0 and not self._v5_refused.is_set()):
            # Dropped before any CONNACK: a broker that does not speak MQTT 5.
            self._v5_refused.set()
            threading.Thread(target=self._fall_back_if_stuck, args=(client, 0.0),
                             daemon=True).start()
        if client is not self._client:
            return  # the MQTT 5 attempt replaced by a 3.1.1 client
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client, _userdata, msg) -> None:
        received = now_ms()
        parsed = topics.parse(msg.topic)
        if parsed is None or parsed[0] != self.settings.site_id or parsed[1] != "dev":
            self._ack(client, msg.mid, msg.qos)
            self.stats["malformed"] += 1
            return
        device_id, leaf = parsed[2], parsed[3]
        report = Report(leaf, device_id, bytes(msg.payload), received, msg.mid, msg.qos,
                        self._generation)
        if leaf == topics.TIME_REQUEST:
            key = self._keys.get(device_id)
            if key is not None:
                self._answer_time(report, key)
                return
        self._queue.put(report)

    def _answer_time(self, report: Report, key: bytes) -> None:
        try:
            reply = answer_time_request(key, site_id=self.settings.site_id,
                                        device_id=report.device_id, request=report.payload,
                                        arrived_ms=report.received_ms, clock=CLOCK.now_ms)
        except ProtocolError as exc:
            self.stats["malformed"] += 1
            self.stats["malformed." + exc.reason] += 1
            return
        except ClockUntrusted as exc:
            # Receivers keep their own clocks rather than learn a wrong time from this one.
            self.stats["time_reply.untrusted_clock"] += 1
            _clock_log.warning("time", "no time reply to %s: %s", report.device_id, exc.message)
            return
        client = self._client
        if client is None:
            return
        client.publish(reply.topic, reply.payload, qos=reply.qos)
        self.stats["time_reply"] += 1

    @staticmethod
    def _ack(client, mid: int, qos: int) -> None:
        if qos > 0:
            client.ack(mid, qos)

    # -- publishing ------------------------------------------------------------------------

    def publish_many(self, outgoing: list[Outgoing]) -> None:
        client = self._client
        if client is None:
            raise RuntimeError("the MQTT service is not started")
        for message in outgoing:
            client.publish(message.topic, message.payload, qos=message.qos)
        self.stats["commands"] += len(outgoing)

    def publish_frame(self, topic: str, payload: bytes) -> None:
        """One live audio frame (headend/live/), QoS 0: a late frame is worth nothing, so the
        broker must neither queue nor retry it; paho's publish is safe from any thread."""
        client = self._client
        if client is None:
            raise RuntimeError("the MQTT service is not started")
        client.publish(topic, payload, qos=0)
        self.stats["stream_frames"] += 1

    # -- ingest thread ---------------------------------------------------------------------

    def _load_keys(self, device_ids: list[str] | None = None) -> None:
        with session_scope(self.session_factory) as session:
            query = select(Receiver.id, Receiver.device_key)
            rows: list[Any] = []
            if device_ids is None:
                rows = list(session.execute(query).all())
            else:
                for part in chunks(device_ids):
                    rows += session.execute(query.where(Receiver.id.in_(part))).all()
        kek = load_kek(self.settings)
        for device_id, key in rows:
            try:
                self._keys[device_id] = key_from_hex(open_device_key(kek, device_id, key))
            except ProtocolError:
                log.error("receiver %s has an unusable key in the database", device_id)

    def _ingest_loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                first = None
            batch = [] if first is None else [first]
            while len(batch) < self.settings.ingest_max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch:
                self._ingest(batch)
            if time.monotonic() - self._last_sweep >= self.settings.presence_sweep_s:
                self._last_sweep = time.monotonic()
                self._sweep()

    def _ingest(self, batch: list[Report]) -> None:
        try:
            outgoing = self._apply(batch)
        except Exception:
            log.exception("ingest of a batch of %d failed; retrying one by one", len(batch))
            outgoing = []
            for report in batch:
                try:
                    outgoing += self._apply([report])
                except Exception:
                    # A report that cannot be stored even alone would block every later one:
                    # count it, log it (not its payload) and let it go.
                    self.stats["ingest_error"] += 1
                    log.exception("dropped a %s report of %s", report.leaf, report.device_id)
        client = self._client
        for report in batch:
            if report.qos > 0 and report.generation == self._generation and client is not None:
                client.ack(report.mid, report.qos)
        if outgoing:
            self.publish_many(outgoing)
        self.stats["ingested"] += len(batch)
        self.stats["batches"] += 1

    def _apply(self, batch: list[Report]) -> list[Outgoing]:
        with session_scope(self.session_factory) as session:
            result = apply_batch(session, settings=self.settings, reports=batch,
                                 now=datetime.now(UTC))
            try:
                outgoing = prepare(session, site_id=self.settings.site_id,
                                   commands=result.commands, ttl_s=self.settings.command_ttl_s)
            except ClockUntrusted as exc:  # raised before any write: the reports still count
                outgoing = []
                self.stats["commands.untrusted_clock"] += len(result.commands)
                _clock_log.warning("commands", "%d commands not sent: %s", len(result.commands), exc.message)
            session.commit()
            self._alerts(session, {r.device_id for r in batch if r.leaf != topics.TIME_REQUEST})
        self.stats.update(result.stats)
        for device_id in result.went_offline:
            log.info("receiver %s went offline (link lost)", device_id)
        if result.time_requests:
            self._load_keys(sorted({r.device_id for r in result.time_requests}))
            for report in result.time_requests:
                key = self._keys.get(report.device_id)
                if key is not None:
                    self._answer_time(report, key)
        return outgoing

    def _alerts(self, session: Session, device_ids) -> None:
        """Raise and clear the alerts of these receivers, in ``session`` after its commit;
        never lets an alert problem reach the ingest (it is logged and counted, and those
        receivers are judged again with the next batch or sweep)."""
        device_ids = set(device_ids) | self._alerts_retry
        if not device_ids:
            return
        try:
            result = alerts.evaluate(session, settings=self.settings, device_ids=device_ids,
                                     now=datetime.now(UTC))
            if result.raised or result.cleared:
                session.commit()
        except Exception as exc:
            session.rollback()
            self._alerts_retry = device_ids
            self.stats["alert_error"] += 1
            _alert_log.warning("alerts", "alert evaluation failed (%d receivers kept for the "
                               "next try): %s: %s", len(device_ids), type(exc).__name__, exc)
            return
        self._alerts_retry = set()
        self.stats["alerts_raised"] += len(result.raised)
        self.stats["alerts_cleared"] += len(result.cleared)
        for alert in result.raised:
            log.info("alert: %s %s%s", alert.device_id, alert.kind,
                     " (%s)" % alert.reason if alert.reason else "")
        if result.notices:
            self.alert_delivery.wake()

    def _silent_for_alerts(self, session: Session, silent: list[str]) -> list[str]:
        """The receivers gone silent whose alerts to judge: none in the grace after a start
        (the sweep then marks offline every receiver the head-end last heard before it went
        down, most of which report within a heartbeat); at its end, once, every receiver
        offline that was ever heard, so those that did not come back are alerted."""
        if self._alerts_from is None:
            return silent
        if time.monotonic() < self._alerts_from:
            return []
        self._alerts_from = None
        return list(session.scalars(select(Receiver.id).where(
            Receiver.online.is_(False), Receiver.last_seen.is_not(None))))

    def _sweep(self) -> None:
        try:
            with session_scope(self.session_factory) as session:
                now = datetime.now(UTC)
                if self._run_id is not None:
                    reconcile.mark_alive(session, run_id=self._run_id, now=now)
                silent = sweep_presence(session, settings=self.settings, now=now)
                session.commit()
                self._alerts(session, self._silent_for_alerts(session, silent))
                # Emergencies not acked in time are sent again (bounded; nothing is counted
                # as re-sent while the clock is untrusted and nothing can be signed).
                resent = escalation.resend_overdue(session, settings=self.settings, now=now)
                try:
                    outgoing = prepare(session, site_id=self.settings.site_id, commands=resent,
                                       ttl_s=self.settings.command_ttl_s)
                except ClockUntrusted:
                    session.rollback()
                    outgoing = []
                session.commit()
                if outgoing:
                    self.publish_many(outgoing)
                # Telemetry roll-up and retention: work only once an hour, one read otherwise.
                telemetry.maintain(session, settings=self.settings, now=datetime.now(UTC))
                session.commit()
                # Firmware rollouts in waves: the next wave, or a pause on a failure.
                try:
                    firmware.advance(session, settings=self.settings, publisher=self)
                except Exception:
                    session.rollback()
                    log.exception("firmware rollout step failed")
        except Exception:
            log.exception("presence sweep failed")
            return
        for device_id in silent:
            log.info("receiver %s went offline (silent for %d s)", device_id,
                     self.settings.offline_after_s)
        self.stats["silent"] += len(silent)
