"""Một cụm loa: one receiver's latest state, its telemetry charts over a day, a week, a
month (server-rendered SVG from the same service as GET /api/v1/devices/{id}/telemetry), and
remote actions (identify, volume, stop, reboot: POST /api/v1/devices/{id}/commands from a
form) with the receiver's confirmation of each, re-fetched until it answers."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse

from headend.api.deps import PublisherDep, SessionDep, SettingsDep
from headend.errors import Invalid, NotFound, ServiceError
from headend.i18n import Translator
from headend.services import telemetry
from headend.services.devices import (
    CMD_WAITING,
    get_device,
    recent_commands,
    send_device_command,
)
from headend.web.charts import Chart, line_chart, number
from headend.web.csrf import CsrfChecked
from headend.web.guard import PageRoute, PageUser, is_fragment
from headend.web.pages.map import device_state
from headend.web.present import signal_text, supply_text
from headend.web.rendering import error_text, render, translator_of
from protocol import messages

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

# How each figure is charted: catalog key, unit key, factor to the shown unit, decimals,
# fixed y range, smallest y range. On/off figures are shown as the share of the time they
# were on.
CHARTS: tuple[tuple[str, str, float, int, tuple[float, float] | None, float], ...] = (
    ("rssi", "dBm", 1, 0, None, 10),
    ("dc", "V", 1, 2, None, 1),
    ("mains", "%", 100, 0, (0, 100), 0),
    ("temp", "°C", 1, 1, None, 5),
    ("heap", "KB", 1 / 1024, 0, None, 8),
    ("off", "ms", 1, 0, None, 10),
    ("amp", "%", 100, 0, (0, 100), 0),
    ("af", "%", 100, 0, (0, 100), 0),
    ("up", "unit.hours", 1 / 3600, 1, None, 1),
    ("err", "unit.count", 1, 0, None, 2),
    ("lost", "unit.count", 1, 0, None, 2),
)


def _unit(t: Translator, unit: str) -> str:
    return t(unit) if unit.startswith("unit.") else unit


def charts_of(t: Translator, session, settings, device_id: str, span: telemetry.Span,
              now: datetime) -> list[Chart]:
    """Every figure's chart over ``span`` up to ``now``, buckets aligned to local time."""
    align = int(now.astimezone(settings.tz).utcoffset().total_seconds())
    start = int((now - span.length).timestamp())
    start -= (start + align) % span.step
    since = datetime.fromtimestamp(start, UTC)
    found = telemetry.series(session, device_id=device_id, since=since, until=now,
                             step=span.step, align_s=align)
    span_text = t("span." + span.name)
    return [line_chart(found[key], key=key, title=t("chart." + key), unit=_unit(t, unit),
                       since=since, until=now, step=span.step, tick_every=span.tick,
                       tz=settings.tz, t=t, span_text=span_text, factor=factor,
                       decimals=decimals, bounds=bounds, min_range=min_range)
            for key, unit, factor, decimals, bounds, min_range in CHARTS]


def _uptime(t: Translator, seconds: Any) -> str:
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return "—"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return t("uptime.days", days=days, hours=hours) if days else t(
        "uptime.hours", hours=hours, minutes=rest // 60)


def facts_of(t: Translator, device) -> list[tuple[str, str]]:
    """The latest heartbeat's figures in words, for the facts list."""
    hb = device.telemetry if isinstance(device.telemetry, dict) else {}
    lang = t.language

    def figure(key: str, unit: str, decimals: int = 0, factor: float = 1) -> str:
        value = hb.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "—"
        return "%s %s" % (number(value * factor, decimals, lang), unit)

    synced = hb.get("sy")
    return [
        (t("receivers.col.signal"), signal_text(t, device)),
        (t("receivers.col.supply"), supply_text(t, device)[0]),
        (t("receiver.amp"), t("receiver.amp_on") if hb.get("amp") == 1 else
         t("receiver.amp_off") if hb.get("amp") == 0 else "—"),
        (t("chart.temp"), figure("temp", "°C", 1)),
        (t("chart.heap"), figure("heap", "KB", 0, 1 / 1024)),
        (t("chart.up"), _uptime(t, hb.get("up"))),
        (t("chart.off"), figure("off", "ms") + (" · " + t("receiver.synced") if synced else "")),
        (t("chart.err"), figure("err", "")),
        (t("receivers.col.firmware"), device.firmware or "—"),
    ]


def _page_context(request: Request, session, settings, device_id: str, span: str) -> dict:
    t = translator_of(request)
    device = get_device(session, device_id=device_id)
    now = datetime.now(UTC)
    charts = charts_of(t, session, settings, device_id, telemetry.SPANS[span], now)
    return dict(_actions_context(session, settings, device_id), **{
        "d": device, "state": device_state(t, device), "facts": facts_of(t, device),
        "span": span, "spans": list(telemetry.SPANS),
        "charts": [c for c in charts if not c.empty],
        "no_data": [c.title for c in charts if c.empty],
        "since": now - telemetry.SPANS[span].length,
        "volume": _volume_of(device),
        "api_url": "/api/v1/devices/%s/telemetry?since=%s&step=%d" % (
            device_id, (now - telemetry.SPANS[span].length).strftime("%Y-%m-%dT%H:%M:%SZ"),
            telemetry.SPANS[span].step)})


def _volume_of(device) -> int | None:
    hb = device.telemetry if isinstance(device.telemetry, dict) else {}
    vol = hb.get("vol")
    return vol if isinstance(vol, int) and not isinstance(vol, bool) else None


def _actions_context(session, settings, device_id: str) -> dict:
    commands = recent_commands(session, settings=settings, device_id=device_id)
    return {"commands": commands, "device_id": device_id,
            "waiting": any(c.state == CMD_WAITING for c in commands),
            "ttl_s": settings.command_ttl_s}


@router.get("/receivers/{device_id}")
def receiver_page(request: Request, device_id: str, session: SessionDep,
                  settings: SettingsDep, _user: PageUser, span: str = "day"):
    if span not in telemetry.SPANS:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return render(request, "receiver.html",
                  _page_context(request, session, settings, device_id, span))


# -- remote actions (identify, volume, stop, reboot) -------------------------------------------

def action_args(kind: str, vol: str, confirm: str) -> dict[str, Any]:
    """A remote action's form fields as the command's arguments (checked again, with the
    permission, by services/devices.send_device_command)."""
    if kind == messages.VOLUME:
        try:
            return {"vol": int(vol.strip())}
        except ValueError:
            raise Invalid("bad-volume", "the volume must be a whole number from 0 to 100",
                          "Âm lượng phải là số nguyên từ 0 đến 100") from None
    if kind == messages.REBOOT and confirm != "yes":
        raise Invalid("reboot-unconfirmed", "tick the box to confirm the reboot",
                      "Hãy đánh dấu ô xác nhận để khởi động lại")
    if kind == messages.IDENTIFY:
        return {"secs": IDENTIFY_S}
    return {}


IDENTIFY_S = 30  # long enough to walk to the pole and look


@router.post("/receivers/{device_id}/actions")
def receiver_action(device_id: str, request: Request, session: SessionDep,
                    settings: SettingsDep, publisher: PublisherDep, user: PageUser,
                    _: CsrfChecked, kind: Annotated[str, Form()] = "",
                    vol: Annotated[str, Form()] = "", confirm: Annotated[str, Form()] = ""):
    try:
        send_device_command(session, settings=settings, publisher=publisher,
                            device_id=device_id, kind=kind,
                            args=action_args(kind, vol, confirm), actor=user)
    except ServiceError as exc:
        session.rollback()
        if isinstance(exc, NotFound):
            raise
        context = _page_context(request, session, settings, device_id, "day")
        context["action_error"] = error_text(translator_of(request), exc)
        return render(request, "receiver.html", context, status_code=exc.status)
    return RedirectResponse("/receivers/%s#actions" % device_id, status.HTTP_303_SEE_OTHER)


@router.get("/receivers/{device_id}/actions")
def receiver_actions(request: Request, device_id: str, session: SessionDep,
                     settings: SettingsDep, _user: PageUser):
    """The commands list alone: the page's script re-fetches it until each is answered."""
    if not is_fragment(request):
        return RedirectResponse("/receivers/%s#actions" % device_id, status.HTTP_303_SEE_OTHER)
    return render(request, "_receiver_actions.html",
                  _actions_context(session, settings, device_id))
