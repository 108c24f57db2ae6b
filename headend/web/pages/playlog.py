"""Nhật ký phát thanh: what the receivers say they played (proof of play), and its CSV."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headend.api.deps import SessionDep, SettingsDep
from headend.errors import Invalid
from headend.services.devices import list_devices
from headend.services.media import list_media
from headend.services.playlog import list_playlog, playlog_csv
from headend.web.guard import PageRoute, PageUser
from headend.web.rendering import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

PAGE_ROWS = 500
CSV_ROWS = 100_000


def _day(value: str, settings, *, next_day: bool = False) -> datetime | None:
    """Local midnight of a yyyy-mm-dd day (or of the day after), in UTC."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise Invalid("bad-date", "dates are written yyyy-mm-dd", "Ngày không hợp lệ") from None
    if next_day:
        day += timedelta(days=1)
    return datetime.combine(day, time(), settings.tz).astimezone(UTC)


def _entries(session, settings, filters: dict[str, str], limit: int):
    return list_playlog(session, device_id=filters["device"] or None,
                        broadcast_id=filters["broadcast"] or None,
                        since=_day(filters["since"], settings),
                        until=_day(filters["until"], settings, next_day=True), limit=limit)


def _filters(since: str, until: str, device: str, broadcast: str) -> dict[str, str]:
    return {"since": since.strip(), "until": until.strip(), "device": device.strip(),
            "broadcast": broadcast.strip()}


@router.get("/playlog")
def playlog_page(request: Request, session: SessionDep, settings: SettingsDep, _user: PageUser,
                 since: str = "", until: str = "", device: str = "", broadcast: str = ""):
    filters = _filters(since, until, device, broadcast)
    entries = _entries(session, settings, filters, PAGE_ROWS)
    devices = {d.id: d for d in list_devices(session)}
    titles = {m.id: m.title for m in list_media(session, limit=1000)}
    rows: list[dict[str, Any]] = [{"e": e, "device": devices.get(e.device_id),
                                   "title": titles.get(e.item or "", e.item)} for e in entries]
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(request, "playlog.html", {
        "rows": rows, "filters": filters, "devices": list(devices.values()),
        "csv_url": "/playlog.csv" + ("?" + query if query else ""), "limit": PAGE_ROWS})


@router.get("/playlog.csv")
def playlog_download(session: SessionDep, settings: SettingsDep, _user: PageUser,
                     since: str = "", until: str = "", device: str = "", broadcast: str = ""):
    entries = _entries(session, settings, _filters(since, until, device, broadcast), CSV_ROWS)
    name = "nhat-ky-phat-thanh-%s.csv" % datetime.now(settings.tz).strftime("%Y%m%d-%H%M")
    # The byte-order mark makes spreadsheet programs read the UTF-8 (Vietnamese) correctly.
    return Response("\ufeff" + playlog_csv(entries, tz=settings.tz),
                    media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="%s"' % name})
