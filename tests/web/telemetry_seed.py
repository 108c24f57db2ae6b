"""A receiver's month of telemetry for page tests: raw samples (through ``telemetry.record``,
the ingest's write path) for the last ``raw_days`` rolled up by ``telemetry.maintain``, and
hourly rows as the roll-up makes them for the days before. Figures follow a day's rhythm:
the board warms in the afternoon, the signal wobbles, and one night the mains fails and the
battery runs down for three hours."""

import math
from datetime import UTC, datetime, timedelta

from headend.models import TelemetryHourly
from headend.services import telemetry


def figures(at: datetime, i: int) -> dict:
    hour = (at.hour + 7) % 24 + at.minute / 60  # local
    outage = at.astimezone(UTC).day % 9 == 0 and 1 <= hour < 4
    up = int(at.timestamp()) - 1_790_000_000  # booted in September 2026, never since
    return {"v": 1, "boot": 1, "conn": 1, "up": up,
            "rssi": -62 - 6 * math.sin(i / 17) - (i % 7),
            "temp": 36 + 9 * math.sin((hour - 9) / 24 * 2 * math.pi),
            "dc": 12.4 - (hour - 1) * 0.35 if outage else 13.6,
            "mains": 0 if outage else 1, "amp": 1 if 5 <= hour < 7 or 17 <= hour < 18 else 0,
            "heap": 80_000 - (i % 50) * 100, "off": int(8 * math.sin(i / 40)), "err": up // 900_000}


def seed_history(session, settings, device_id: str, *, now: datetime, raw_days: int = 7,
                 hourly_days: int = 30, every_s: int = 120) -> int:
    start = now - timedelta(days=raw_days)
    i = 0
    at = start
    while at < now:
        telemetry.record(session, device_id=device_id, at=at, telemetry=figures(at, i))
        at += timedelta(seconds=every_s)
        i += 1
    session.commit()
    while telemetry.maintain(session, settings=settings, now=now):
        session.commit()
    hour = telemetry.epoch_s(start) - telemetry.epoch_s(start) % 3600
    first = telemetry.epoch_s(now - timedelta(days=hourly_days))
    rows = []
    while hour > first:
        hour -= 3600
        sample = telemetry.sample_row(device_id, telemetry.from_epoch(hour),
                                      figures(telemetry.from_epoch(hour), hour // 60))
        row = {"device_id": device_id, "hour": hour, "n": 3600 // every_s}
        for f in telemetry.FIELDS:
            value = sample[f.name]
            spread = 0 if value is None or f.name in ("mains", "amp", "af", "err", "up") else 4
            row[f.name + "_min"] = None if value is None else value - spread
            row[f.name + "_avg"] = value
            row[f.name + "_max"] = None if value is None else value + spread
        rows.append(row)
    session.add_all([TelemetryHourly(**row) for row in rows])
    session.commit()
    return i
