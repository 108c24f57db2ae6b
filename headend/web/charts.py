"""Line charts as server-rendered SVG: a telemetry series becomes coordinates and labels.

No JavaScript and no chart library: ``line_chart`` turns buckets (min / mean / max) into the
mean's polyline over a min-max band, broken where buckets are missing, with y ticks at round
numbers and x ticks at local hours or midnights; templates/_chart.html draws it. The chart's
``summary`` is its accessible label (lowest, mean, highest, latest, in the page's language).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from headend.i18n import Translator
from headend.services.telemetry import Point

WIDTH, HEIGHT = 480, 170
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 10, 26
WEEKDAYS = {"vi": ("T2", "T3", "T4", "T5", "T6", "T7", "CN"),
            "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}


@dataclass
class Chart:
    key: str
    title: str
    unit: str
    summary: str
    lines: list[str] = field(default_factory=list)   # polyline points of the mean
    bands: list[str] = field(default_factory=list)   # polygon points, min to max
    dots: list[tuple[float, float]] = field(default_factory=list)  # lone buckets
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str, str]] = field(default_factory=list)  # x, label, anchor
    latest: str = "—"
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not self.lines and not self.dots


def number(value: float, decimals: int, language: str) -> str:
    text = "%.*f" % (decimals, value)
    if text in ("-0", "-0.0", "-0.00"):
        text = text[1:]
    return text.replace(".", ",") if language == "vi" else text


def nice_ticks(low: float, high: float, count: int = 4,
               smallest: float = 0.0) -> list[float]:
    """Round values (1, 2, 5 times a power of ten apart, at least ``smallest``) covering
    [low, high]."""
    if high <= low:
        low, high = low - 1, high + 1
    raw = max((high - low) / count, smallest)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * 0.999)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _time_ticks(since: datetime, until: datetime, every: timedelta, tz: ZoneInfo,
                language: str) -> list[tuple[datetime, str]]:
    local = since.astimezone(tz)
    if every >= timedelta(days=1):
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        hours = int(every.total_seconds() // 3600) or 1
        start = local.replace(hour=local.hour - local.hour % hours, minute=0, second=0,
                              microsecond=0)
    ticks = []
    at = start
    while at < until:
        if at >= since:
            if every >= timedelta(days=1):
                day = "%02d/%02d" % (at.day, at.month)
                label = ("%s %s" % (WEEKDAYS[language][at.weekday()], day)
                         if every == timedelta(days=1) else day)
            else:
                label = "%02d:00" % at.hour
            ticks.append((at, label))
        # Step in local wall time (the zone has no daylight saving, but stay honest).
        at = (at.replace(tzinfo=None) + every).replace(tzinfo=tz)
    return ticks


def line_chart(points: Sequence[Point], *, key: str, title: str, unit: str, since: datetime,
               until: datetime, step: int, tick_every: timedelta, tz: ZoneInfo, t: Translator,
               span_text: str, factor: float = 1.0, decimals: int = 0,
               bounds: tuple[float, float] | None = None, min_range: float = 0.0) -> Chart:
    """A chart of ``points`` over [since, until); values are multiplied by ``factor`` (units
    shown: KB, %, hours) and written with ``decimals``; ``bounds`` fixes the y range, else it
    spans at least ``min_range`` (so 0.02 V of noise does not fill the chart)."""
    language = t.language

    def show(value: float) -> str:
        return number(value, decimals, language)

    if not points:
        return Chart(key, title, unit, "%s (%s), %s: %s" % (title, unit, span_text,
                                                           t("chart.no_data")))
    lows = [p.min * factor for p in points]
    means = [p.avg * factor for p in points]
    highs = [p.max * factor for p in points]
    low, high = bounds if bounds else (min(lows), max(highs))
    if high - low < min_range:
        middle = (high + low) / 2
        low, high = middle - min_range / 2, middle + min_range / 2
    # No tick finer than the figure's own precision (a count's ticks are whole numbers).
    ticks = nice_ticks(low, high, smallest=10.0 ** -decimals)
    y_low, y_high = ticks[0], ticks[-1]
    span_s = (until - since).total_seconds()
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return round(LEFT + (at - since).total_seconds() / span_s * plot_w, 1)

    def y(value: float) -> float:
        return round(TOP + (y_high - value) / (y_high - y_low) * plot_h, 1)

    half = timedelta(seconds=step / 2)
    chart = Chart(key, title, unit, "")
    segment: list[int] = []

    def close() -> None:
        if len(segment) == 1:
            i = segment[0]
            chart.dots.append((x(points[i].t + half), y(means[i])))
        elif segment:
            chart.lines.append(" ".join("%s,%s" % (x(points[i].t + half), y(means[i]))
                                        for i in segment))
            chart.bands.append(" ".join(
                ["%s,%s" % (x(points[i].t + half), y(highs[i])) for i in segment]
                + ["%s,%s" % (x(points[i].t + half), y(lows[i])) for i in reversed(segment)]))

    for i, point in enumerate(points):
        if segment and (point.t - points[segment[-1]].t).total_seconds() > step:
            close()
            segment = []
        segment.append(i)
    close()
    tick_decimals = max(0, -math.floor(math.log10(ticks[1] - ticks[0]) + 1e-9))
    chart.y_ticks = [(y(v), number(v, min(tick_decimals, decimals), language)) for v in ticks]
    # A label near an edge is anchored inside the chart, not centred over it and cut.
    chart.x_ticks = [(x(at), label, "start" if x(at) < LEFT + 30 else
                      "end" if x(at) > WIDTH - RIGHT - 30 else "middle")
                     for at, label in _time_ticks(since, until, tick_every, tz, language)]
    mean = sum(m * p.n for m, p in zip(means, points, strict=True)) / sum(p.n for p in points)
    chart.latest = show(means[-1])
    chart.summary = t("chart.summary", title=title, unit=unit, span=span_text,
                      low=show(min(lows)), mean=show(mean), high=show(max(highs)),
                      latest=show(means[-1]))
    return chart
