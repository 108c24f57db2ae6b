"""Phát trực tiếp: pick villages, watch the microphone's level, go live, stop.

The page is a shell around headend/static/live.js: the microphone is captured in the browser
(an AudioWorklet posting 16 kHz PCM), the session is made and stopped through the API
(``POST``/``DELETE /api/v1/live``, with the page's CSRF token) and the audio goes over the
session's WebSocket (authenticated by the session cookie plus the same token).
"""

from fastapi import APIRouter, Request

from headend.api.deps import SessionDep
from headend.live.devices import NO_CODEC, OFFLINE, PLAYING, REFUSED, SENT, WAITING
from headend.live.session import END_REASONS, ENDED, LIVE, STARTING
from headend.services.sites import list_zones
from headend.web.guard import Broadcaster, PageRoute
from headend.web.rendering import render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API

# Receiver states the script shows: the live-only ones and the proof-of-play ones.
DEVICE_STATES = (WAITING, SENT, OFFLINE, NO_CODEC, REFUSED, PLAYING, "played", "preempted",
                 "cancelled", "failed")
_SCRIPT_KEYS = ("live.mic_opening", "live.connecting", "live.on_air", "live.stopping",
                "live.ended", "live.mic_refused", "live.mic_missing", "live.failed",
                "live.pick_zone", "live.playing_count", "live.no_worklet")


def script_strings(request: Request) -> dict[str, str]:
    """Everything live.js says, in the page's language."""
    t = translator_of(request)
    strings = {key: t(key) for key in _SCRIPT_KEYS}
    strings.update({"state." + s: t("live.dstate." + s) for s in DEVICE_STATES})
    strings.update({"reason." + r: t("live.reason." + r) for r in END_REASONS})
    for state in (STARTING, LIVE, ENDED):
        strings["session." + state] = t("live.session." + state)
    return strings


@router.get("/live")
def live_page(request: Request, session: SessionDep, _user: Broadcaster):
    return render(request, "live.html", {
        "form": {"target": "zones", "zones": []}, "zones": list_zones(session),
        "strings": script_strings(request)})
