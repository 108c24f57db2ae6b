"""What a programme is made of, checked as it is saved: its title, class, volume, targets
and ordered segments (a recording, a text read aloud, a chime, and last a relay of a stream).
Each refusal names the segment, in English and Vietnamese (Invalid, 422)."""

from typing import Any

from sqlalchemy.orm import Session

from headend.errors import Invalid, NotFound
from headend.models import PROGRAMME_CLASSES, fit_text
from headend.services import broadcasts
from headend.services.media import get_media

CHIMES = ("start", "end")
MAX_SEGMENTS = 50
MAX_TEXT = 5000
MAX_TITLE = 300
# A relay segment's length: long enough to be worth the pull, at most a long broadcast of
# the provincial station (a live session itself lasts at most 24 hours).
RELAY_MIN_S = 5
RELAY_MAX_S = 4 * 3600


def check_segments(session: Session, segments: Any) -> list[dict[str, Any]]:
    """The segments, normalised: [{"media_id"} | {"text", "voice"} | {"chime"} |
    {"relay": {"url", "seconds"}}]. A relay (tiếp sóng) of a stream is the last segment: the
    recorded ones before it air as one broadcast, then the relay as a live session for its
    window (headend/services/programme_relays.py)."""
    if not isinstance(segments, list) or not segments:
        raise Invalid("no-segments", "a programme needs at least one segment",
                      "Chương trình cần ít nhất một phần (bản tin, văn bản hoặc nhạc hiệu)")
    if len(segments) > MAX_SEGMENTS:
        raise Invalid("too-many-segments", "at most %d segments" % MAX_SEGMENTS,
                      "Tối đa %d phần" % MAX_SEGMENTS)
    out = []
    for number, segment in enumerate(segments, 1):
        kinds = [k for k in ("media_id", "text", "chime", "relay")
                 if isinstance(segment, dict) and k in segment]
        if len(kinds) != 1:
            raise _bad_segment(number, 'give one of "media_id", "text", "chime" or "relay"')
        kind = kinds[0]
        if kind == "media_id":
            media_id = segment["media_id"]
            if not isinstance(media_id, str):
                raise _bad_segment(number, "media_id must be text")
            try:
                get_media(session, media_id=media_id)
            except NotFound as exc:
                raise Invalid(exc.code, "segment %d: %s" % (number, exc.message),
                              "Phần %d: %s" % (number, exc.message_vi)) from None
            out.append({"media_id": media_id})
        elif kind == "text":
            text, voice = segment["text"], segment.get("voice", "north")
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
                raise _bad_segment(number, "text must be 1-%d characters" % MAX_TEXT)
            if voice not in _voices():
                raise _bad_segment(number, "voice must be one of %s" % ", ".join(_voices()))
            out.append({"text": text.replace("\x00", ""), "voice": voice})
        elif kind == "chime":
            if segment["chime"] not in CHIMES:
                raise _bad_segment(number, 'chime must be "start" or "end"')
            out.append({"chime": segment["chime"]})
        else:
            if number != len(segments):
                raise Invalid("relay-not-last", "segment %d: a relay must be the programme's "
                              "last segment" % number,
                              "Phần %d: tiếp sóng phải là phần cuối của chương trình" % number)
            out.append({"relay": _check_relay(number, segment["relay"])})
    return out


def _check_relay(number: int, relay: Any) -> dict[str, Any]:
    """{"url", "seconds"} from {"url", "minutes"} or {"url", "seconds"}: the live relay's
    own URL check, a whole number of minutes or seconds within the bounds."""
    from headend.live.relay import relay_url

    if not isinstance(relay, dict) or "url" not in relay:
        raise _bad_relay(number, 'give {"url": "http(s)://...", "minutes": N}',
                         'cần {"url": "http(s)://...", "minutes": N}')
    try:
        url = relay_url(relay["url"])
    except Invalid as exc:
        raise Invalid(exc.code, "segment %d: %s" % (number, exc.message),
                      "Phần %d: %s" % (number, exc.message_vi)) from None
    units = [k for k in ("minutes", "seconds") if k in relay]
    value = relay.get(units[0]) if len(units) == 1 else None
    if type(value) is not int:
        raise _bad_relay(number, 'give its length as a whole number of "minutes" (or '
                         '"seconds")', 'cần thời lượng là số phút nguyên ("minutes")')
    seconds = value * 60 if units[0] == "minutes" else value
    if not RELAY_MIN_S <= seconds <= RELAY_MAX_S:
        raise _bad_relay(number, "a relay lasts %d seconds to %d minutes"
                         % (RELAY_MIN_S, RELAY_MAX_S // 60),
                         "tiếp sóng kéo dài từ %d giây đến %d phút"
                         % (RELAY_MIN_S, RELAY_MAX_S // 60))
    return {"url": url, "seconds": seconds}


def _bad_relay(number: int, why: str, why_vi: str) -> Invalid:
    return Invalid("bad-relay", "segment %d: %s" % (number, why),
                   "Phần %d (tiếp sóng) không hợp lệ: %s" % (number, why_vi))


def _voices() -> tuple[str, ...]:
    from headend.services.programme_media import VOICES

    return VOICES


def _bad_segment(number: int, why: str) -> Invalid:
    return Invalid("bad-segment", "segment %d: %s" % (number, why),
                   "Phần %d không hợp lệ: %s" % (number, why))


def check_title(title: Any) -> str:
    if not isinstance(title, str) or not title.strip():
        raise Invalid("missing-title", "a programme needs a title", "Chương trình cần có tên")
    return fit_text(title.strip(), MAX_TITLE)


def check_priority(priority: Any) -> str:
    if priority not in PROGRAMME_CLASSES:
        raise Invalid("bad-priority", "priority must be normal or priority (an emergency is "
                      "sent at once, not scheduled)",
                      "Loại chương trình phải là thông thường hoặc ưu tiên")
    return priority


def check_volume(volume: Any) -> int | None:
    if volume is None:
        return None
    if type(volume) is not int or not 0 <= volume <= 100:
        raise Invalid("bad-volume", "volume must be a whole number 0-100",
                      "Âm lượng phải là số nguyên từ 0 đến 100")
    return volume


def check_targets(session: Session, targets: Any) -> dict[str, Any]:
    broadcasts.resolve_targets(session, targets)  # the broadcasts' one reading of targets
    return targets
