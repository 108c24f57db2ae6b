"""What the upload/broadcast and emergency forms mean, in the services' terms.

Only translation from form fields to service arguments lives here (targets, a local time, the
chosen or uploaded recording); every decision is the services'.
"""

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import UploadFile
from sqlalchemy.orm import Session

from headend.api.routes.media import stash_upload
from headend.errors import Forbidden, Invalid
from headend.i18n import Translator
from headend.models import MediaItem, User
from headend.security import has_permission
from headend.services import media
from headend.services.sites import list_zones
from headend.settings import Settings

TARGET_KINDS = ("all", "zones", "devices")
# Text-to-speech voices (audio.tts): northern, central, southern Vietnamese.
VOICES = ("north", "central", "south")


def targets_from_form(target: str, zones: list[str], devices: list[str]) -> dict[str, Any]:
    """``{"all": true} | {"zones": [...]} | {"devices": [...]}``, as the API takes them."""
    if target == "zones":
        return {"zones": [z for z in zones if z]}
    if target == "devices":
        return {"devices": [d for d in devices if d]}
    return {"all": True}


def start_from_form(when: str, start_at: str, tz: ZoneInfo) -> datetime | None:
    """None for "now"; else the local date-time the operator picked, in UTC."""
    if when != "at":
        return None
    if not start_at.strip():
        raise Invalid("missing-time", "choose the time to play", "Hãy chọn giờ phát")
    try:
        picked = datetime.fromisoformat(start_at.strip())
    except ValueError:
        raise Invalid("bad-time", "the time to play is not a valid date and time",
                      "Giờ phát không hợp lệ") from None
    if picked.tzinfo is None:
        picked = picked.replace(tzinfo=tz)  # the operator thinks in the station's time
    return picked.astimezone(UTC)


def media_from_form(session: Session, *, settings: Settings, user: User,
                    upload: UploadFile | None, media_id: str, title: str, text: str = "",
                    voice: str = "north", kind: str = "bulletin") -> MediaItem:
    """The recording just uploaded, else the typed text read aloud, else the one chosen.
    Uploads and speech both go through the media service (conversion, renditions)."""
    making = (upload is not None and upload.filename) or text.strip()
    if making and not has_permission(user.role, "media"):
        raise Forbidden("forbidden", "your role may not add recordings",
                        "Bạn không có quyền tải bản tin lên")
    if upload is not None and upload.filename:
        # Under its own name in a private folder, so a refusal names the operator's file
        # ("Tệp bao-lu.m4a không phải…"), not a temp name.
        named = stash_upload(upload, settings)
        try:
            return media.ingest_media(session, settings=settings, src_path=named,
                                      filename=upload.filename, title=title.strip() or None,
                                      actor=user, screen=True)
        finally:
            shutil.rmtree(named.parent, ignore_errors=True)
    if text.strip():
        return _speech_media(session, settings=settings, user=user, text=text, voice=voice,
                             kind=kind, title=title)
    if media_id:
        return media.get_media(session, media_id=media_id)
    raise Invalid("missing-media", "upload a recording or choose one already uploaded",
                  "Hãy tải tệp ghi âm lên hoặc chọn một bản tin đã có")


def _speech_media(session: Session, *, settings: Settings, user: User, text: str, voice: str,
                  kind: str, title: str) -> MediaItem:
    """Vietnamese speech of ``text`` (audio.tts), with the chime of a bulletin or the alert
    tone of an emergency before it (audio.tones), registered by the media service."""
    from audio.tones import dress
    from audio.tts import TtsError, synthesize_to_file

    if voice not in VOICES:
        voice = VOICES[0]
    incoming = settings.resolved_media_dir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=incoming))
    try:
        try:
            speech = synthesize_to_file(text, folder / "speech.wav", voice=voice)
        except TtsError as exc:
            raise Invalid("tts-failed", "the text could not be read aloud: %s" % exc,
                          "Không đọc được văn bản thành tiếng: %s" % exc) from None
        dressed = dress(speech, folder / "doc-van-ban.wav", kind=kind)
        first_words = " ".join(text.split())[:60]
        return media.ingest_media(session, settings=settings, src_path=dressed,
                                  filename=None, title=title.strip() or first_words, actor=user)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def describe_targets(t: Translator, targets: dict[str, Any], zone_names: dict[str, str]) -> str:
    """"Toàn xã", "Thôn Đông, Thôn Tây" or "3 cụm loa: r01, r02, r03"."""
    if targets.get("all"):
        return t("targets.all")
    if targets.get("zones"):
        return ", ".join(zone_names.get(z, z) for z in targets["zones"])
    devices = targets.get("devices") or []
    return t("targets.devices_list", count=len(devices), ids=", ".join(devices))


def preview_url(item: MediaItem) -> str | None:
    """Where the browser can play the MP3 rendition receivers get (GET /media/{sha}.mp3)."""
    mp3 = next((r for r in item.renditions if r.codec == "mp3"), None)
    return "/media/%s.%s" % (mp3.sha256, mp3.ext) if mp3 is not None else None


def zone_names(session: Session) -> dict[str, str]:
    return {zone.id: zone.name for zone, _total, _online in list_zones(session)}
