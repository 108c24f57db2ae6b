"""The head-end's tables (SQLAlchemy 2). Times are stored in UTC, shown in Asia/Ho_Chi_Minh.

Schema changes go through Alembic (headend/migrations); ``alembic revision --autogenerate``
against these classes writes the next migration.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, stored naive UTC (portable across SQLite/PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Names people type (zones, receivers, users). SQLite stores any length; PostgreSQL refuses
# a value longer than its column and any NUL byte, failing the whole transaction.
NAME_LENGTH = 200
# A receiver's own words about a failure ("http 404", "vs1053: DREQ stuck low"), cut to fit.
REASON_DETAIL_LENGTH = 120


def fit_text(value: str, limit: int) -> str:
    """``value`` made storable in a String(limit) column on every database: NUL bytes
    removed, cut to ``limit`` characters. For text we keep but do not own (peer input)."""
    return value.replace("\x00", "")[:limit]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


# Roles, most powerful first. Permissions per role are in headend/security.py.
# editor (biên tập) drafts programmes, leader (lãnh đạo) approves them.
ROLES = ("admin", "operator", "technician", "viewer", "editor", "leader")

# Bulletin classes an operator chooses (live talk has its own class on the wire).
PRIORITIES = ("normal", "priority", "emergency")

# Per-receiver delivery states; headend/services/deliveries.py has the table of the moves
# between them (the only code that writes ``Delivery.state``).
DELIVERY_PENDING = "pending"      # command sent (or about to be), nothing reported yet
DELIVERY_OFFLINE = "offline"      # receiver was offline: sent when it comes back, if current
DELIVERY_FETCHED = "fetched"      # media in the receiver's cache
DELIVERY_PLAYING = "playing"
DELIVERY_PLAYED = "played"
DELIVERY_PREEMPTED = "preempted"
DELIVERY_FAILED = "failed"        # with a reason code (headend/services/deliveries.py REASONS)
DELIVERY_CANCELLED = "cancelled"
DELIVERY_INTERRUPTED = "interrupted"  # the head-end closed a play that can no longer be going on
# Settled: nothing more is expected. Played and preempted are final (the receiver said so);
# failed, cancelled and interrupted may still be corrected by the receiver's own late report.
DELIVERY_FINAL = (DELIVERY_PLAYED, DELIVERY_PREEMPTED)
DELIVERY_TERMINAL = DELIVERY_FINAL + (DELIVERY_FAILED, DELIVERY_CANCELLED, DELIVERY_INTERRUPTED)
DELIVERY_WAITING = (DELIVERY_PENDING, DELIVERY_OFFLINE, DELIVERY_FETCHED)
DELIVERY_STATES = DELIVERY_WAITING + (DELIVERY_PLAYING,) + DELIVERY_TERMINAL

# Broadcast states (a summary of its deliveries: deliveries.summarise).
BROADCAST_SCHEDULED = "scheduled"
BROADCAST_PLAYING = "playing"
BROADCAST_PLAYED = "played"
BROADCAST_PREEMPTED = "preempted"
BROADCAST_PARTIAL = "partial"     # some receivers played it, others did not
BROADCAST_INTERRUPTED = "interrupted"  # cut short everywhere it started (restarts, power cuts)
BROADCAST_FAILED = "failed"
BROADCAST_CANCELLED = "cancelled"
BROADCAST_FINAL = (BROADCAST_PLAYED, BROADCAST_PREEMPTED, BROADCAST_PARTIAL,
                   BROADCAST_INTERRUPTED, BROADCAST_FAILED, BROADCAST_CANCELLED)


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Zone(Base):
    """A village / hamlet (thôn, xóm, tổ dân phố): the unit an operator targets."""

    __tablename__ = "zones"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # The loudest volume (0-100) a programme may ask for here (a hospital's street); None:
    # no limit. Checked when a programme is saved (headend/services/programmes_rules.py).
    volume_limit: Mapped[int | None] = mapped_column(Integer)
    # The loudest in the site's early-morning hours (``early_hours_start``-``_end``), below
    # ``volume_limit``; None: no lower limit then. Enforced by the receivers (the window's
    # ``early``) and checked when a programme is saved.
    early_volume_limit: Mapped[int | None] = mapped_column(Integer)
    # Every receiver here takes CAP Exercise alerts (as Receiver.exercise marks one).
    exercise: Mapped[bool | None] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Where it is, for CAP alerts: {"polygon": [[lat, lon], ...] | null, "geocodes":
    # [{"valueName": ..., "value": ...}]}, as headend/cap/area.py Zone.from_area reads it.
    area: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Receiver(Base):
    """A receiver cluster on a pole. Its key signs every command it obeys."""

    __tablename__ = "receivers"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    zone_id: Mapped[str | None] = mapped_column(ForeignKey("zones.id"), index=True)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    codec: Mapped[str] = mapped_column(String(16), default="mp3")  # until its birth says more
    firmware: Mapped[str | None] = mapped_column(String(64))
    capabilities: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    link: Mapped[str | None] = mapped_column(String(16))
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    offline_reason: Mapped[str | None] = mapped_column(String(32))
    last_seen: Mapped[datetime | None]
    online_since: Mapped[datetime | None]
    session_boot: Mapped[int | None] = mapped_column(BigInteger)
    session_conn: Mapped[int | None] = mapped_column(BigInteger)
    telemetry: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Event numbering generation: a board whose flash was wiped (re-flashed, replaced) starts
    # its event seq again at 1; its birth's lower session moves this on, so its new events are
    # not taken for duplicates of the old ones.
    event_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The one-use nonce of its latest birth (hex, new each boot; none once a reset used it): a
    # ``reset_floor`` for it is the one command it takes below its counter floor.
    reset_nonce: Mapped[str | None] = mapped_column(String(64))
    # Marked for exercises: a CAP alert of status Exercise airs on these receivers only.
    exercise: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # How its last firmware update went, from its latest birth ({"ota", "ota_ver", "ota_why"}:
    # updated, trial, rolled-back and why); None if it never said.
    ota: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Secrets: the HMAC key (hex of 32 random bytes) and the broker password's hash. Never
    # logged, never in a list response; shown once at provisioning.
    device_key: Mapped[str] = mapped_column(String(128))
    mqtt_user: Mapped[str] = mapped_column(String(64))
    mqtt_password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A rotation of the key and broker account under way (headend/services/rotation.py): the
    # new key and password, sealed as device_key is (the password with its own associated
    # data), and the new account, valid in the broker beside the old one until the receiver
    # is heard under the new key. None when no rotation is pending.
    rekey_id: Mapped[str | None] = mapped_column(String(32))
    rekey_started_at: Mapped[datetime | None] = mapped_column()
    rekey_sent_at: Mapped[datetime | None] = mapped_column()  # its offer last went out
    pending_key: Mapped[str | None] = mapped_column(String(128))
    pending_password: Mapped[str | None] = mapped_column(String(255))
    pending_mqtt_user: Mapped[str | None] = mapped_column(String(64))
    pending_mqtt_password_hash: Mapped[str | None] = mapped_column(String(255))
    # The claim code of its pole label (tools/device_label.py) once its key has rotated: the
    # label was computed from the first key and stays on the pole (headend/services/claims.py).
    claim_code: Mapped[str | None] = mapped_column(String(16))

    zone: Mapped[Zone | None] = relationship(lazy="joined")


class CommandCounter(Base):
    """The last command counter used per receiver: ctr = max(last + 1, now_ms)."""

    __tablename__ = "command_counters"
    device_id: Mapped[str] = mapped_column(ForeignKey("receivers.id", ondelete="CASCADE"),
                                           primary_key=True)
    last_ctr: Mapped[int] = mapped_column(BigInteger)


class MediaItem(Base):
    __tablename__ = "media_items"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    filename: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int] = mapped_column(Integer)
    source_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    loudness_lufs: Mapped[float | None] = mapped_column(Float)  # after normalisation
    warnings: Mapped[list[str] | None] = mapped_column(JSON)  # near-silent, clipped, ...
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A bulletin's expiry: no broadcast of it starts at or after this (None: never expires).
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # In the site's pinned set (kept on every receiver ahead of need, never evicted: the alert
    # tone, standard emergency messages; headend/services/pinned.py): True; False once it left
    # the set (a receiver that reported holding it is told to unpin it at its birth); None never.
    pinned: Mapped[bool | None] = mapped_column(Boolean, nullable=True)

    renditions: Mapped[list["Rendition"]] = relationship(
        back_populates="media", lazy="selectin", cascade="all, delete-orphan")


class Rendition(Base):
    """One encoded form of a media item, as receivers fetch it (GET /media/{sha256}.{ext})."""

    __tablename__ = "renditions"
    __table_args__ = (UniqueConstraint("media_id", "codec"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    media_id: Mapped[str] = mapped_column(ForeignKey("media_items.id", ondelete="CASCADE"))
    codec: Mapped[str] = mapped_column(String(16))
    ext: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    rate: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)

    media: Mapped[MediaItem] = relationship(back_populates="renditions")


class Broadcast(Base):
    __tablename__ = "broadcasts"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    media_id: Mapped[str] = mapped_column(ForeignKey("media_items.id"), index=True)
    targets: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[str] = mapped_column(String(16))
    start_at: Mapped[datetime] = mapped_column(index=True)
    # Until when a receiver that comes back is still sent this broadcast.
    valid_until: Mapped[datetime] = mapped_column(index=True)
    # Play "at" time in the commands (ms, network time); None: as soon as fetched.
    play_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default=BROADCAST_SCHEDULED, index=True)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    # The volume its play commands carry (a programme's own); None: the receiver's default.
    volume: Mapped[int | None] = mapped_column(Integer)

    media: Mapped[MediaItem] = relationship(lazy="joined")


class Delivery(Base):
    """One receiver's part in a broadcast, built from that receiver's own reports."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("broadcast_id", "device_id"),
                      Index("ix_deliveries_device_state", "device_id", "state"),
                      Index("ix_deliveries_state", "state"))  # the sweep's "playing" lookups
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"),
                                              index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("receivers.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=DELIVERY_PENDING)
    # Why it failed or was interrupted (or how it ended): a code of deliveries.REASONS, and
    # the receiver's own words after it ("http 404", "vs1053: DREQ stuck low"), if any.
    reason: Mapped[str | None] = mapped_column(String(64))
    reason_detail: Mapped[str | None] = mapped_column(String(REASON_DETAIL_LENGTH))
    command_id: Mapped[str | None] = mapped_column(String(64), index=True)
    sent_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]
    fetched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # A receiver that held this broadcast when it was cancelled, but was offline then: it gets
    # the stop when it comes back.
    stop_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    # While "playing": since when the receiver's heartbeats say it plays something else (its
    # end report may be on the way; after a grace the head-end closes it, "end-unreported").
    contradicted_at: Mapped[datetime | None]
    # How many times the play was sent again because the receiver did not ack it in time
    # (headend/services/escalation.py); ``sent_at`` is the latest send.
    resends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeviceEvent(Base):
    """Every event a receiver reported, once: (device_id, seq) is unique, duplicates dropped."""

    __tablename__ = "device_events"
    __table_args__ = (UniqueConstraint("device_id", "epoch", "seq",
                                       name="uq_device_events_device_epoch_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(48))
    epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    t: Mapped[datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlayLog(Base):
    """Proof of play (nhật ký phát thanh): what a receiver says it played, when, how it ended."""

    __tablename__ = "playlog"
    __table_args__ = (UniqueConstraint("device_id", "epoch", "seq",
                                       name="uq_playlog_device_epoch_seq"),
                      Index("ix_playlog_broadcast", "broadcast_id"),
                      Index("ix_playlog_started", "started_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(48))
    epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    broadcast_id: Mapped[str | None] = mapped_column(String(48))
    item: Mapped[str | None] = mapped_column(String(48))
    seq: Mapped[int] = mapped_column(BigInteger)  # seq of the event that opened this record
    scheduled_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))  # None while playing
    # How it ended, as on the delivery: a deliveries.REASONS code and the receiver's detail.
    # "interrupted" rows were closed by the head-end (a restart); a late report corrects them.
    reason: Mapped[str | None] = mapped_column(String(64))
    reason_detail: Mapped[str | None] = mapped_column(String(REASON_DETAIL_LENGTH))
    played_ms: Mapped[int | None] = mapped_column(BigInteger)
    skip_ms: Mapped[int | None] = mapped_column(BigInteger)


class HeadendRun(Base):
    """One run of the head-end's MQTT service: when it started and when it was last alive
    (moved on every presence sweep). The gaps between runs are when it was down: a broadcast
    whose air time fell in one and that no report settled is "headend-down", not "no-report"."""

    __tablename__ = "headend_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime]
    alive_at: Mapped[datetime] = mapped_column(index=True)


class DeviceMedia(Base):
    """Which renditions a receiver reported as cached (so an emergency can start in sync)."""

    __tablename__ = "device_media"
    device_id: Mapped[str] = mapped_column(ForeignKey("receivers.id", ondelete="CASCADE"),
                                           primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Every token carries the value it was made with; a password change or a deactivation
    # bumps it, so every token made before is refused (headend/api/deps.py).
    token_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditEntry(Base):
    """Who changed what, when: every mutating call, from the API, the pages or the CLI."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# -- telemetry history (headend/services/telemetry.py) --------------------------------------
# Heartbeat figures as small integers in fixed units (centivolts, tenths of a degree), times as
# integer epoch seconds (UTC): a SQLite DATETIME is 26 bytes of text, an integer 4 to 6.

class TelemetrySample(Base):
    """One heartbeat's figures, kept ``telemetry_raw_days`` (default 7). The primary key leads
    with the receiver, so one receiver's day or week is one range of the index."""

    __tablename__ = "telemetry_samples"
    __table_args__ = {"sqlite_with_rowid": False}  # the key is the row: no second copy of it
    device_id: Mapped[str] = mapped_column(ForeignKey("receivers.id", ondelete="CASCADE"),
                                           primary_key=True)
    t: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch s, UTC
    rssi: Mapped[int | None] = mapped_column(SmallInteger)      # dBm
    mains: Mapped[int | None] = mapped_column(SmallInteger)     # 1 mains, 0 on battery
    dc: Mapped[int | None] = mapped_column(SmallInteger)        # centivolts
    amp: Mapped[int | None] = mapped_column(SmallInteger)       # amplifier relay on
    af: Mapped[int | None] = mapped_column(SmallInteger)        # amplifier fault
    temp: Mapped[int | None] = mapped_column(SmallInteger)      # tenths of a degree C
    heap: Mapped[int | None] = mapped_column(Integer)           # bytes free
    up: Mapped[int | None] = mapped_column(Integer)             # s since boot
    off: Mapped[int | None] = mapped_column(BigInteger)         # clock offset, ms
    err: Mapped[int | None] = mapped_column(Integer)            # errors since boot
    lost: Mapped[int | None] = mapped_column(Integer)           # audio frames lost


class TelemetryHourly(Base):
    """One receiver's hour: how many samples, and min / mean / max of each figure (same units
    as TelemetrySample), kept ``telemetry_hourly_days`` (default 400)."""

    __tablename__ = "telemetry_hourly"
    __table_args__ = {"sqlite_with_rowid": False}
    device_id: Mapped[str] = mapped_column(ForeignKey("receivers.id", ondelete="CASCADE"),
                                           primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch s of its start
    n: Mapped[int] = mapped_column(Integer)
    rssi_min: Mapped[int | None] = mapped_column(SmallInteger)
    rssi_avg: Mapped[float | None] = mapped_column(Float)
    rssi_max: Mapped[int | None] = mapped_column(SmallInteger)
    mains_min: Mapped[int | None] = mapped_column(SmallInteger)
    mains_avg: Mapped[float | None] = mapped_column(Float)
    mains_max: Mapped[int | None] = mapped_column(SmallInteger)
    dc_min: Mapped[int | None] = mapped_column(SmallInteger)
    dc_avg: Mapped[float | None] = mapped_column(Float)
    dc_max: Mapped[int | None] = mapped_column(SmallInteger)
    amp_min: Mapped[int | None] = mapped_column(SmallInteger)
    amp_avg: Mapped[float | None] = mapped_column(Float)
    amp_max: Mapped[int | None] = mapped_column(SmallInteger)
    af_min: Mapped[int | None] = mapped_column(SmallInteger)
    af_avg: Mapped[float | None] = mapped_column(Float)
    af_max: Mapped[int | None] = mapped_column(SmallInteger)
    temp_min: Mapped[int | None] = mapped_column(SmallInteger)
    temp_avg: Mapped[float | None] = mapped_column(Float)
    temp_max: Mapped[int | None] = mapped_column(SmallInteger)
    heap_min: Mapped[int | None] = mapped_column(Integer)
    heap_avg: Mapped[float | None] = mapped_column(Float)
    heap_max: Mapped[int | None] = mapped_column(Integer)
    up_min: Mapped[int | None] = mapped_column(Integer)
    up_avg: Mapped[float | None] = mapped_column(Float)
    up_max: Mapped[int | None] = mapped_column(Integer)
    off_min: Mapped[int | None] = mapped_column(BigInteger)
    off_avg: Mapped[float | None] = mapped_column(Float)
    off_max: Mapped[int | None] = mapped_column(BigInteger)
    err_min: Mapped[int | None] = mapped_column(Integer)
    err_avg: Mapped[float | None] = mapped_column(Float)
    err_max: Mapped[int | None] = mapped_column(Integer)
    lost_min: Mapped[int | None] = mapped_column(Integer)
    lost_avg: Mapped[float | None] = mapped_column(Float)
    lost_max: Mapped[int | None] = mapped_column(Integer)


class TelemetryRollup(Base):
    """Up to when (epoch s, an hour boundary) the hourly table is complete: the roll-up only
    looks at the hours after it, so it costs nothing between hours."""

    __tablename__ = "telemetry_rollup"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # a single row, id 1
    done_until: Mapped[int] = mapped_column(BigInteger)

# -- CAP alerts (issue 12): zones' areas, warning sources, alerts, the emergency ledger ------

CAP_SOURCE_AUTH = ("api-key", "hmac")
# A stored alert's life: queued for an operator, on the air, ended (cancelled, replaced,
# stopped), or only logged. An expired one keeps its state; ``expires`` says it is over.
CAP_QUEUED = "queued"
CAP_ON_AIR = "on-air"
CAP_ENDED = "ended"
CAP_LOGGED = "logged"
CAP_STATES = (CAP_QUEUED, CAP_ON_AIR, CAP_ENDED, CAP_LOGGED)
# CAP identifiers and senders have no length limit; longer ones are refused, not cut.
CAP_ID_LENGTH = 255


class CapSource(Base):
    """A warning agency allowed to post CAP alerts. Its API key is kept as a SHA-256 (the key
    is 32 random bytes: no slow hash needed); its HMAC secret is sealed under the KEK like the
    receivers' keys. Neither is ever logged or listed."""

    __tablename__ = "cap_sources"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    auth: Mapped[str] = mapped_column(String(16))  # one of CAP_SOURCE_AUTH
    key_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    hmac_secret: Mapped[str | None] = mapped_column(String(255))
    senders: Mapped[list[str]] = mapped_column(JSON)  # CAP <sender> values it may use
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CapAlert(Base):
    """One CAP message received and kept (refused ones are not), keyed by (sender,
    identifier): a message received twice is acted on once."""

    __tablename__ = "cap_alerts"
    __table_args__ = (UniqueConstraint("sender", "identifier",
                                       name="uq_cap_alerts_sender_identifier"),)
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(CAP_ID_LENGTH))
    sender: Mapped[str] = mapped_column(String(CAP_ID_LENGTH))
    sent: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    msg_type: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    action: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)  # one of CAP_STATES
    zones: Mapped[list[str]] = mapped_column(JSON)
    # The stored alerts this one replaces or stops (ids of this table).
    targets: Mapped[list[str]] = mapped_column(JSON)
    headline: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)  # as written, for the pages
    spoken_text: Mapped[str | None] = mapped_column(Text)  # what the speech engine reads
    broadcast_id: Mapped[str | None] = mapped_column(ForeignKey("broadcasts.id"))
    expires: Mapped[datetime | None]
    xml_sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))  # a CapSource id, or "user:<name>"
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    confirmed_by: Mapped[str | None] = mapped_column(String(64))
    confirmed_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(64))  # who or which message ended it
    ended_at: Mapped[datetime | None]
    # The media made from its attached audio resource when received (None: the speech engine
    # reads its text when it airs).
    media_id: Mapped[str | None] = mapped_column(String(48))


class LedgerEntry(Base):
    """The emergency ledger: append-only, hash-chained (headend/services/ledger.py). Each row
    holds the previous row's hash and the SHA-256 of its own canonical content."""

    __tablename__ = "emergency_ledger"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(64))
    broadcast_id: Mapped[str | None] = mapped_column(String(48), index=True)
    cap_identifier: Mapped[str | None] = mapped_column(String(CAP_ID_LENGTH))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

# Programmes (chương trình): the station's recurring schedule. States and their moves are in
# headend/services/programmes.py (TRANSITIONS); only "approved" ones air.
PROGRAMME_DRAFT = "draft"
PROGRAMME_SUBMITTED = "submitted"
PROGRAMME_APPROVED = "approved"
PROGRAMME_REJECTED = "rejected"
PROGRAMME_STATES = (PROGRAMME_DRAFT, PROGRAMME_SUBMITTED, PROGRAMME_APPROVED, PROGRAMME_REJECTED)
PROGRAMME_CLASSES = ("normal", "priority")

# A stored occurrence is an exception to the rule or one that aired: "skipped" (not aired),
# "moved" (aired at ``start_at`` instead of its slot), "aired" (its broadcast was created).
OCCURRENCE_SKIPPED = "skipped"
OCCURRENCE_MOVED = "moved"
OCCURRENCE_AIRED = "aired"


class Programme(Base):
    """A title, ordered segments, targets, a class and when: one start or an RFC 5545 RRULE
    (in the site's time zone) with EXDATEs. ``revision`` counts the changes to what airs
    (content, time, targets, class, volume); the approval is of ``approved_revision``."""

    __tablename__ = "programmes"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    # [{"media_id"} | {"text", "voice"} | {"chime": "start" | "end"}] (a relay slot later)
    segments: Mapped[list[Any]] = mapped_column(JSON)
    targets: Mapped[dict[str, Any]] = mapped_column(JSON)  # as broadcasts
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    start_at: Mapped[datetime]  # DTSTART (the first occurrence, or the only one)
    rrule: Mapped[str | None] = mapped_column(Text)
    exdates: Mapped[list[Any]] = mapped_column(JSON, default=list)  # ISO times, UTC
    volume: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=PROGRAMME_DRAFT, index=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    approved_revision: Mapped[int | None] = mapped_column(Integer)
    # A normal programme in the quiet hours: who asked for it (an editor) and which leader
    # confirmed it; both cleared by a change of time.
    quiet_requested_by: Mapped[str | None] = mapped_column(String(64))
    quiet_confirmed_by: Mapped[str | None] = mapped_column(String(64))
    review_comment: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProgrammeOccurrence(Base):
    """One occurrence kept in the database: an exception (skipped, moved) or one that aired.
    ``slot`` is its time by the rule, its identity; ``start_at`` when it airs."""

    __tablename__ = "programme_occurrences"
    __table_args__ = (UniqueConstraint("programme_id", "slot",
                                       name="uq_programme_occurrences_programme_slot"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    programme_id: Mapped[str] = mapped_column(ForeignKey("programmes.id", ondelete="CASCADE"),
                                              index=True)
    slot: Mapped[datetime]
    start_at: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[str] = mapped_column(String(16))
    broadcast_id: Mapped[str | None] = mapped_column(String(48), index=True)
    # Its relay segment's live session (headend/services/programme_relays.py), once started.
    live_id: Mapped[str | None] = mapped_column(String(48))
    revision: Mapped[int | None] = mapped_column(Integer)  # the programme's, when it aired
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProgrammeMedia(Base):
    """A programme's segments joined into one media item, by the hash of their content:
    the same segments are built once (headend/services/programme_media.py)."""

    __tablename__ = "programme_media"
    content_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_id: Mapped[str] = mapped_column(ForeignKey("media_items.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CapFeed(Base):
    """A CAP feed (Atom or RSS of CAP items) polled every ``interval_s``, bound to a warning
    source: its items are received as that source's posts (headend/services/cap_feeds.py)."""

    __tablename__ = "cap_feeds"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    source_id: Mapped[str] = mapped_column(ForeignKey("cap_sources.id"))
    interval_s: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    etag: Mapped[str | None] = mapped_column(String(255))  # for If-None-Match
    last_modified: Mapped[str | None] = mapped_column(String(64))  # for If-Modified-Since
    failures: Mapped[int] = mapped_column(Integer, default=0)  # in a row, for the back-off
    last_error: Mapped[str | None] = mapped_column(String(300))
    last_polled_at: Mapped[datetime | None]
    last_ok_at: Mapped[datetime | None]
    next_poll_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CapFeedItem(Base):
    """A feed entry handled once: by its entry key (Atom id / RSS guid or link, with its
    updated time) and, once read, by its CAP sender, identifier and sent."""

    __tablename__ = "cap_feed_items"
    __table_args__ = (UniqueConstraint("feed_id", "entry_key", name="uq_cap_feed_items_feed_entry"),
                      Index("ix_cap_feed_items_cap", "sender", "identifier", "sent"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feed_id: Mapped[str] = mapped_column(ForeignKey("cap_feeds.id", ondelete="CASCADE"))
    entry_key: Mapped[str] = mapped_column(String(300))
    sender: Mapped[str | None] = mapped_column(String(CAP_ID_LENGTH))
    identifier: Mapped[str | None] = mapped_column(String(CAP_ID_LENGTH))
    sent: Mapped[str | None] = mapped_column(String(40))  # ISO, UTC
    outcome: Mapped[str] = mapped_column(String(16))  # the CAP outcome, or "refused"
    reason: Mapped[str | None] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class FirmwareBundle(Base):
    """A firmware bundle (``loaxa device bundle``) uploaded to the head-end, its files kept
    under ``{data_dir}/firmware/{version}/`` (headend/services/firmware.py) and served to
    receivers with HTTP Range (headend/media_http.py). ``manifest_sha256`` is the SHA-256 of
    its manifest.json bytes: what a signed ``update`` names."""

    __tablename__ = "firmware_bundles"
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    manifest_size: Mapped[int] = mapped_column(Integer)
    total_size: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int] = mapped_column(Integer)
    source_commit: Mapped[str | None] = mapped_column(String(64))
    uploaded_by: Mapped[str | None] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)


class FirmwareRollout(Base):
    """One receiver told to update to a version: the command sent, and the receiver's session
    then, so its progress can be read from what it reported since (acks, ``update`` events,
    births)."""

    __tablename__ = "firmware_rollouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(ForeignKey("firmware_bundles.version",
                                                    ondelete="CASCADE"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("receivers.id", ondelete="CASCADE"),
                                           index=True)
    command_id: Mapped[str] = mapped_column(String(64))
    boot_at_send: Mapped[int | None] = mapped_column(BigInteger)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_by: Mapped[str | None] = mapped_column(String(64))


class FirmwareWavePlan(Base):
    """A rollout in waves (one canary receiver, then its village, then the commune): the next
    wave goes once every receiver of this one reports the version updated; the first refusal,
    failure or rollback pauses it, with the reason (headend/services/firmware.py)."""

    __tablename__ = "firmware_wave_plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(ForeignKey("firmware_bundles.version",
                                                    ondelete="CASCADE"), index=True)
    waves: Mapped[list[list[str]]] = mapped_column(JSON)
    wave: Mapped[int] = mapped_column(Integer, default=0)  # the wave under way
    state: Mapped[str] = mapped_column(String(16))  # running, paused, done
    reason: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# -- alerts (headend/services/alerts.py, docs/alerts.md) ------------------------------------

ALERT_NOTICE_PENDING = "pending"
ALERT_NOTICE_SENDING = "sending"  # claimed by the delivery thread, on its way
ALERT_NOTICE_SENT = "sent"
ALERT_NOTICE_FAILED = "failed"    # gave up after its attempts
ALERT_NOTICE_DROPPED = "dropped"  # the alert was over before its notice was due


class Alert(Base):
    """Something wrong with a receiver (``device_id``) or with another subject (``subject``,
    e.g. "live:<session id>": dead air on a relay), from when it was raised until it was over
    (``cleared_at``). At most one open alert per receiver and kind, and per subject and kind
    (the partial unique indexes; NULLs are distinct, so each index ignores the other's rows)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("uq_alerts_open", "device_id", "kind", unique=True,
              sqlite_where=sql_text("cleared_at IS NULL"),
              postgresql_where=sql_text("cleared_at IS NULL")),
        Index("uq_alerts_open_subject", "subject", "kind", unique=True,
              sqlite_where=sql_text("cleared_at IS NULL"),
              postgresql_where=sql_text("cleared_at IS NULL")),
        Index("ix_alerts_raised", "raised_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("receivers.id",
                                                             ondelete="CASCADE"))
    subject: Mapped[str | None] = mapped_column(String(64))  # None: the receiver's alert
    kind: Mapped[str] = mapped_column(String(24))  # headend/services/alert_rules.py KINDS
    reason: Mapped[str | None] = mapped_column(String(24))  # offline: power-lost, link-lost, ...
    severity: Mapped[str] = mapped_column(String(8))  # critical | warning | info
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the figures that raised it
    raised_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    # When its latest raise or repeat notice was due (repeats count from there); None: none.
    noticed_at: Mapped[datetime | None]
    repeats: Mapped[int] = mapped_column(Integer, default=0)


class AlertNotice(Base):
    """One message about an alert on one channel (e-mail, webhook): an outbox row, written in
    the transaction that raised or cleared the alert, sent later by the delivery thread."""

    __tablename__ = "alert_notices"
    __table_args__ = (Index("ix_alert_notices_due", "state", "due_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"),
                                          index=True)
    event: Mapped[str] = mapped_column(String(8))  # raised | repeat | cleared
    channel: Mapped[str] = mapped_column(String(8))  # email | webhook
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime]  # held past the quiet hours, a reboot's grace, a retry's backoff
    state: Mapped[str] = mapped_column(String(8), default=ALERT_NOTICE_PENDING)
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(200))
# The periodic test (kiểm tra định kỳ): a run sends ``selftest`` to every receiver online; each
# answers with a ``selftest`` event (headend/services/selftests.py).
SELFTEST_WAITING = "waiting"
SELFTEST_PASSED = "passed"
SELFTEST_FAILED = "failed"
SELFTEST_NO_ANSWER = "no-answer"


class SelftestRun(Base):
    """One periodic test: by the schedule (``slot``: the weekly time it was for, once each)
    or by hand."""

    __tablename__ = "selftest_runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(64))
    slot: Mapped[datetime | None] = mapped_column(unique=True)


class SelftestResult(Base):
    """One receiver's answer to a run: waiting, passed, failed (``reason``: the receiver's,
    firmware/reasons.py) or no-answer (offline when sent; past the wait: shown, not stored)."""

    __tablename__ = "selftest_results"
    run_id: Mapped[str] = mapped_column(ForeignKey("selftest_runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("receivers.id", ondelete="CASCADE"),
                                           primary_key=True, index=True)
    command_id: Mapped[str | None] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), default=SELFTEST_WAITING)
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    answered_at: Mapped[datetime | None]


class LiveSessionRecord(Base):
    """A live session (headend/live/), kept so a head-end restart finds it: a microphone
    session is ended ("headend-restarted", stops sent), a relay inside its window resumed
    (headend/live/service.py ``recover``). ``bid`` the stream's broadcast id now (a resumed
    relay has a new one: receivers refuse a bid they ended); ``sent`` the receivers sent it."""

    __tablename__ = "live_sessions"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    url: Mapped[str | None] = mapped_column(Text)  # a relay's source; None: the microphone
    targets: Mapped[dict[str, Any]] = mapped_column(JSON)
    receivers: Mapped[list[Any]] = mapped_column(JSON)  # [{"id", "codec", "online", ...}]
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(32))
    bid: Mapped[str] = mapped_column(String(48))
    sent: Mapped[dict[str, Any]] = mapped_column(JSON)  # device id -> stream command id
    jitter_ms: Mapped[int] = mapped_column(Integer)
    fallbacks: Mapped[int] = mapped_column(Integer, default=0)
    resumes: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    until: Mapped[datetime | None]
    # The class its stream is sent in: live (2), or a programme's own (0 normal, 1 priority)
    # for a programme's relay; None: live (rows from before it was kept).
    prio: Mapped[int | None] = mapped_column(Integer)


class MediaJob(Base):
    """An upload being converted (headend/services/media_jobs.py): queued -> running ->
    done (``media_id``) | failed (``reason``, messages in English and Vietnamese). A job
    found queued or running when the head-end starts is failed ("restarted")."""

    __tablename__ = "media_jobs"
    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)  # 0..100
    stage: Mapped[str | None] = mapped_column(String(16))  # screen, analyse, measure, encode
    filename: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(300))
    src_path: Mapped[str | None] = mapped_column(Text)  # the upload, until the job ends
    expires_at: Mapped[datetime | None]  # given to the media item it makes
    media_id: Mapped[str | None] = mapped_column(String(48))
    duplicate: Mapped[bool] = mapped_column(Boolean, default=False)  # same sound already held
    reason: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    message_vi: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
