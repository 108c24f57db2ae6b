"""Telemetry history: every receiver's heartbeat figures, kept compactly, and charts' series.

- **Raw** (``telemetry_samples``): one row per heartbeat, the figures as small integers in
  fixed units (``FIELDS``: centivolts, tenths of a degree), time as integer epoch seconds,
  the primary key (receiver, time) being the row itself (SQLite ``WITHOUT ROWID``). Kept
  ``settings.telemetry_raw_days`` (7).
- **Hourly** (``telemetry_hourly``): per receiver and hour, the number of samples and the
  min / mean / max of each figure. Kept ``settings.telemetry_hourly_days`` (400).
- ``maintain`` (the MQTT service's presence sweep calls it): once a new hour is complete, rolls
  it up from raw (idempotent: an hour rolled twice gives the same row) and deletes what is
  past its retention. Between hours it reads one row and returns.
- ``series``: a chart's buckets (min / mean / max per ``step`` seconds), from hourly rows where
  the step is whole hours and they exist, from raw rows otherwise.

Recording is cheap: ``record`` (one call per heartbeat in the ingest) only keeps the row in
the session; the whole batch's rows go in one executemany when the batch commits.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, event, func, insert, literal_column, select
from sqlalchemy.orm import Session

from headend.errors import Invalid
from headend.models import Receiver, TelemetryHourly, TelemetryRollup, TelemetrySample
from headend.settings import Settings

HOUR = 3600
# Hours rolled up per ``maintain`` call: after a long stop the catch-up is spread over the
# sweeps (0.4 s an hour for 1,000 receivers here), not one long pause of the ingest thread.
ROLL_UP_HOURS_PER_RUN = 6
MAX_POINTS = 5000  # per field in one answer: a chart is at most a few hundred


@dataclass(frozen=True)
class Field:
    """One heartbeat figure: its HEARTBEAT_TABLE name (= column), how it is stored (value *
    ``scale``, rounded to an integer) and the unit it is shown in."""

    name: str
    unit: str
    scale: int = 1
    what: str = ""


# Heartbeat fields (protocol/messages.py HEARTBEAT_TABLE) kept in the history.
FIELDS: tuple[Field, ...] = (
    Field("rssi", "dBm", 1, "link signal"),
    Field("mains", "", 1, "mains present (1) or on battery (0)"),
    Field("dc", "V", 100, "DC supply"),
    Field("amp", "", 1, "amplifier relay on"),
    Field("af", "", 1, "amplifier fault"),
    Field("temp", "°C", 10, "MCU temperature"),
    Field("heap", "B", 1, "free heap"),
    Field("up", "s", 1, "uptime"),
    Field("off", "ms", 1, "clock offset (network - local)"),
    Field("err", "", 1, "errors caught since boot"),
    Field("lost", "", 1, "live audio frames lost since boot"),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
BY_NAME = {f.name: f for f in FIELDS}
# Bigger than any stored column holds (INTEGER on PostgreSQL): such a value is not kept.
_INT32 = 2**31 - 1


def epoch_s(at: datetime) -> int:
    return int(at.timestamp())


def from_epoch(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


_SCALES = tuple((f.name, f.scale, f.name != "off") for f in FIELDS)


def sample_row(device_id: str, at: datetime, telemetry: dict[str, Any]) -> dict[str, Any]:
    """The raw row of one checked heartbeat (messages.check_heartbeat) received at ``at``."""
    row: dict[str, Any] = {"device_id": device_id, "t": int(at.timestamp())}
    for name, scale, int32 in _SCALES:  # runs for every heartbeat: kept plain
        value = telemetry.get(name)
        if value is None or value is True or value is False or not isinstance(value,
                                                                               int | float):
            row[name] = None
            continue
        if scale != 1 or isinstance(value, float):
            if not math.isfinite(value):
                row[name] = None
                continue
            value = int(round(value * scale))
        row[name] = None if int32 and abs(value) > _INT32 else value
    return row


# -- recording -----------------------------------------------------------------------------

_PENDING = "loaxa.telemetry.pending"


def record(session: Session, *, device_id: str, at: datetime,
           telemetry: dict[str, Any]) -> None:
    """Keep one heartbeat's figures; written with the rest of the batch when ``session``
    commits (one executemany), dropped if it rolls back. A second heartbeat of the same
    receiver in the same second replaces the first (the key is receiver and second)."""
    row = sample_row(device_id, at, telemetry)
    session.info.setdefault(_PENDING, {})[(device_id, row["t"])] = row


def _insert_new_samples(session: Session):
    """INSERT ... ON CONFLICT DO NOTHING: a sample already stored for that second stays."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(TelemetrySample.__table__).on_conflict_do_nothing()


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        # On the connection: the ORM's bulk path costs more than the insert itself.
        session.connection().execute(_insert_new_samples(session), list(rows.values()))


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, _previous_transaction) -> None:
    session.info.pop(_PENDING, None)


# -- roll-up and retention -----------------------------------------------------------------

def _floor(t: int, step: int) -> int:
    return t - t % step


def _known_devices():
    # The receivers, as an IN list for the primary keys' first column: each receiver's range
    # is one index seek, where "t < x" alone would read the whole table.
    return select(Receiver.id).scalar_subquery()


def roll_up(session: Session, *, since: int, until: int) -> int:
    """(Re)compute the hourly rows of every receiver for the hours in [since, until) (epoch s,
    hour boundaries) from the raw samples; returns the number of hourly rows written. Only
    hours whose raw samples are all still kept may be rolled up (``maintain`` sees to it)."""
    if until <= since:
        return 0
    devices = _known_devices()
    session.execute(delete(TelemetryHourly).where(
        TelemetryHourly.device_id.in_(devices), TelemetryHourly.hour >= since,
        TelemetryHourly.hour < until))
    s = TelemetrySample
    hour = s.t - s.t % _number(HOUR)
    columns: list[Any] = [s.device_id, hour, func.count()]
    names = ["device_id", "hour", "n"]
    for f in FIELDS:
        column = getattr(s, f.name)
        columns += [func.min(column), func.avg(column), func.max(column)]
        names += [f.name + "_min", f.name + "_avg", f.name + "_max"]
    query = (select(*columns).where(s.device_id.in_(devices), s.t >= since, s.t < until)
             .group_by(s.device_id, hour))
    session.execute(insert(TelemetryHourly).from_select(names, query))
    # Counted, not taken from the rowcount, which psycopg does not give for INSERT ... SELECT.
    return session.scalar(select(func.count()).select_from(TelemetryHourly).where(
        TelemetryHourly.device_id.in_(devices), TelemetryHourly.hour >= since,
        TelemetryHourly.hour < until)) or 0


@dataclass
class Maintenance:
    rolled_from: int
    rolled_until: int
    hourly_rows: int
    raw_deleted: int
    hourly_deleted: int


def apply_retention(session: Session, *, settings: Settings, now: datetime) -> tuple[int, int]:
    """Delete raw samples older than ``telemetry_raw_days`` and hourly rows older than
    ``telemetry_hourly_days``; returns how many of each."""
    t_now = epoch_s(now)
    devices = _known_devices()
    raw = session.execute(delete(TelemetrySample).where(
        TelemetrySample.device_id.in_(devices),
        TelemetrySample.t < t_now - settings.telemetry_raw_days * 86400))
    hourly = session.execute(delete(TelemetryHourly).where(
        TelemetryHourly.device_id.in_(devices),
        TelemetryHourly.hour < t_now - settings.telemetry_hourly_days * 86400))
    return max(raw.rowcount or 0, 0), max(hourly.rowcount or 0, 0)


def maintain(session: Session, *, settings: Settings, now: datetime | None = None
             ) -> Maintenance | None:
    """Roll up the hours completed since the last run, then apply retention; None (and one
    row read) when no new hour is complete. The caller commits.

    Samples are stamped with the time they were received, so an hour gets no new sample once
    it is over: each hour is rolled up once, after it ends. After a long stop only the hours
    whose raw samples are still kept are rolled up, ``ROLL_UP_HOURS_PER_RUN`` per call."""
    now = now or datetime.now(UTC)
    t_now = epoch_s(now)
    complete_until = _floor(t_now, HOUR)
    mark = session.get(TelemetryRollup, 1)
    if mark is not None and mark.done_until >= complete_until:
        return None
    oldest_raw = t_now - settings.telemetry_raw_days * 86400
    if mark is not None:
        done = mark.done_until
    else:
        # The first run (the table is as young as this head-end version): from its oldest.
        oldest = session.scalar(select(func.min(TelemetrySample.t)))
        done = complete_until if oldest is None else _floor(oldest, HOUR)
    start = max(done, _floor(oldest_raw, HOUR) + HOUR)
    until = max(start, min(complete_until, start + ROLL_UP_HOURS_PER_RUN * HOUR))
    rows = roll_up(session, since=start, until=until)
    if mark is None:
        session.add(TelemetryRollup(id=1, done_until=until))
    else:
        mark.done_until = until
    raw_deleted, hourly_deleted = apply_retention(session, settings=settings, now=now)
    return Maintenance(start, until, rows, raw_deleted, hourly_deleted)


# -- reading -------------------------------------------------------------------------------

@dataclass
class Point:
    """One bucket of one figure, in its unit: ``t`` its start, ``n`` the samples in it."""

    t: datetime
    min: float
    avg: float
    max: float
    n: int


@dataclass
class _Partial:
    n: int
    low: float
    weighted: float  # mean * n, so parts of one bucket combine
    high: float

    def merge(self, other: "_Partial") -> None:
        self.n += other.n
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        self.weighted += other.weighted


def check_fields(names: Iterable[str] | None) -> tuple[str, ...]:
    """The figures asked for (all when none), each a known one; Invalid otherwise."""
    wanted: list[str] = []
    for name in names or ():
        for part in name.split(","):
            part = part.strip()
            if part and part not in wanted:
                wanted.append(part)
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise Invalid("unknown-field", "unknown telemetry field %s (known: %s)"
                      % (", ".join(unknown), ", ".join(FIELD_NAMES)),
                      "Không có số liệu %s (có: %s)" % (", ".join(unknown),
                                                       ", ".join(FIELD_NAMES)))
    return tuple(wanted) or FIELD_NAMES


def check_range(since: datetime, until: datetime, step: int) -> None:
    if until <= since:
        raise Invalid("bad-range", "until must be after since",
                      "Thời điểm kết thúc phải sau thời điểm bắt đầu")
    if step < 30:
        raise Invalid("bad-step", "step must be at least 30 s (the heartbeat period)",
                      "Bước thời gian phải từ 30 giây trở lên")
    if (until - since).total_seconds() / step > MAX_POINTS:
        raise Invalid("too-many-points", "at most %d points per field: use a larger step"
                      % MAX_POINTS, "Tối đa %d điểm mỗi số liệu: hãy chọn bước lớn hơn"
                      % MAX_POINTS)


def series(session: Session, *, device_id: str, since: datetime, until: datetime, step: int,
           fields: Sequence[str] = FIELD_NAMES, align_s: int = 0) -> dict[str, list[Point]]:
    """Buckets of ``step`` seconds over [since, until) for each of ``fields``, oldest first,
    the first from the start of the bucket ``since`` falls in;
    buckets without a sample are left out (a chart shows a gap). Buckets start where
    ``t + align_s`` is a multiple of ``step`` (``align_s``: the display zone's UTC offset, so a
    day bucket starts at local midnight).

    Whole-hour steps read the hourly rows up to the last roll-up and the raw samples after it;
    finer steps read raw samples only (kept ``telemetry_raw_days``). A bucket's mean weighs
    each hour by its sample count."""
    check_range(since, until, step)
    # Samples are stamped in whole seconds: one taken in until's own second is before it.
    t0, t1 = epoch_s(since), math.ceil(until.timestamp())
    t0 -= (t0 + align_s) % step  # from the start of since's bucket: no bucket half read
    parts: dict[str, dict[int, _Partial]] = {name: {} for name in fields}
    raw_from = t0
    if step % HOUR == 0:
        mark = session.get(TelemetryRollup, 1)
        if mark is not None and mark.done_until > t0:
            raw_from = min(mark.done_until, t1)
            _read_hourly(session, device_id, t0, raw_from, step, align_s, fields, parts)
    if raw_from < t1:
        _read_raw(session, device_id, raw_from, t1, step, align_s, fields, parts)
    out: dict[str, list[Point]] = {}
    for name in fields:
        scale = BY_NAME[name].scale
        out[name] = [Point(from_epoch(bucket), p.low / scale, p.weighted / p.n / scale,
                           p.high / scale, p.n)
                     for bucket, p in sorted(parts[name].items()) if p.n]
    return out


def _number(value: int):
    """An integer of ours written into the SQL: PostgreSQL sees a GROUP BY expression as the
    SELECT's only when both are the same text, which two bound parameters are not."""
    return literal_column(str(int(value)))


def _bucket(column, step: int, align_s: int):
    return column - (column + _number(align_s)) % _number(step)


def _read_raw(session, device_id, t0, t1, step, align_s, fields, parts) -> None:
    s = TelemetrySample
    bucket = _bucket(s.t, step, align_s)
    columns: list[Any] = [bucket]
    for name in fields:
        column = getattr(s, name)
        columns += [func.count(column), func.min(column), func.avg(column), func.max(column)]
    query = (select(*columns).where(s.device_id == device_id, s.t >= t0, s.t < t1)
             .group_by(bucket))
    for row in session.execute(query):
        for i, name in enumerate(fields):
            n, low, mean, high = row[1 + 4 * i: 5 + 4 * i]
            if n:
                _add(parts[name], int(row[0]), _Partial(n, float(low), float(mean) * n,
                                                        float(high)))


def _read_hourly(session, device_id, t0, t1, step, align_s, fields, parts) -> None:
    h = TelemetryHourly
    bucket = _bucket(h.hour, step, align_s)
    columns: list[Any] = [bucket]
    for name in fields:
        low, mean, high = (getattr(h, name + suffix) for suffix in ("_min", "_avg", "_max"))
        counted = case((mean.is_not(None), h.n), else_=0)
        columns += [func.sum(counted), func.min(low), func.sum(mean * h.n), func.max(high)]
    query = (select(*columns).where(h.device_id == device_id, h.hour >= t0, h.hour < t1)
             .group_by(bucket))
    for row in session.execute(query):
        for i, name in enumerate(fields):
            n, low, weighted, high = row[1 + 4 * i: 5 + 4 * i]
            if n:
                _add(parts[name], int(row[0]), _Partial(int(n), float(low), float(weighted),
                                                        float(high)))


def _add(buckets: dict[int, _Partial], bucket: int, part: _Partial) -> None:
    found = buckets.get(bucket)
    if found is None:
        buckets[bucket] = part
    else:
        found.merge(part)


# -- ranges the pages show -----------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """A chart range: how far back and how wide its buckets are."""

    name: str
    length: timedelta
    step: int
    tick: timedelta  # x-axis labels this far apart, at local midnights / hours


SPANS = {
    "day": Span("day", timedelta(days=1), 600, timedelta(hours=3)),
    "week": Span("week", timedelta(days=7), HOUR, timedelta(days=1)),
    "month": Span("month", timedelta(days=30), 3 * HOUR, timedelta(days=5)),
}
