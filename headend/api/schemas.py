"""Request and response bodies of the API (pydantic). Secrets appear only in
``DeviceProvisioned``, the one answer that shows a receiver's key and password."""

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, computed_field, field_validator

from headend.errors import Invalid
from headend.services.deliveries import reason_text

# The largest command arguments, JSON-encoded: a device command's arguments are a few small
# fields (a volume, a broadcast id); megabytes would be signed, stored in the audit log and
# pushed to a receiver whose heap is a few tens of kilobytes.
MAX_ARGS_BYTES = 1024


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    role: str


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    username: str
    full_name: str | None = None
    role: str
    active: bool


class UserCreate(BaseModel):
    username: str
    password: str
    role: Literal["admin", "operator", "technician", "viewer", "editor", "leader"]
    full_name: str | None = None


class UserUpdate(BaseModel):
    password: str | None = None
    role: Literal["admin", "operator", "technician", "viewer", "editor", "leader"] | None = None
    active: bool | None = None
    full_name: str | None = None


class ZoneArea(BaseModel):
    """Where a zone is, for CAP alerts (headend/cap/area.py checks it)."""

    polygon: list[list[float]] | None = Field(
        None, description="[[lat, lon], ...], WGS 84 degrees; closed if the first is not repeated")
    geocodes: list[dict[str, str]] = Field(
        [], description='[{"valueName": "vn-dvhc", "value": "37"}, ...]')


_VOLUME_LIMIT = ("the loudest a programme or a command may play here, 0-100 (emergencies "
                 "excepted); null: none. Enforced by the receivers too")
_EXERCISE = ("every receiver of the zone takes CAP alerts of status Exercise (besides the "
             "receivers marked one by one)")
_EARLY_LIMIT = ("the loudest in the site's early-morning hours (early_hours_start-_end, "
                "05:00-07:00 by default), 0-100; null: no lower limit then")


class ZonePublic(BaseModel):
    id: str
    name: str
    receivers: int = 0
    online: int = 0
    area: ZoneArea | None = None
    volume_limit: int | None = Field(None, description=_VOLUME_LIMIT)
    early_volume_limit: int | None = Field(None, description=_EARLY_LIMIT)
    exercise: bool = Field(False, description=_EXERCISE)


class ZoneCreate(BaseModel):
    id: str
    name: str
    area: dict[str, Any] | None = Field(None, description="see ZoneArea")
    # Any: the service's own check names the field in both languages (bool, 101, "x").
    volume_limit: Any = Field(None, description=_VOLUME_LIMIT)
    early_volume_limit: Any = Field(None, description=_EARLY_LIMIT)


class ZoneUpdate(BaseModel):
    name: str | None = None
    area: dict[str, Any] | None = Field(None, description="see ZoneArea; null removes it")
    volume_limit: Any = Field(None, description=_VOLUME_LIMIT + "; absent: unchanged")
    early_volume_limit: Any = Field(None, description=_EARLY_LIMIT + "; absent: unchanged")
    exercise: Any = Field(None, description=_EXERCISE + "; absent: unchanged")


class DevicePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    zone: str | None
    zone_name: str | None = None
    online: bool
    last_seen: datetime | None
    offline_reason: str | None = None
    firmware: str | None = None
    link: str | None = None
    codec: str
    lat: float | None = None
    lon: float | None = None
    now_playing: dict[str, Any] | None = None
    exercise: bool = False  # marked for exercises (CAP status Exercise airs here only)


class DeviceDetail(DevicePublic):
    capabilities: dict[str, Any] | None = None
    telemetry: dict[str, Any] | None = None
    counter_reset_suggested: bool = False  # refusing commands as replays: POST .../reset-counter


class DeviceCreate(BaseModel):
    id: str | None = Field(None, description="1-48 characters of A-Z a-z 0-9 _ -; random if empty")
    name: str
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    codec: Literal["mp3", "adpcm"] = "mp3"


class DeviceUpdate(BaseModel):
    name: str | None = None
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    exercise: StrictBool | None = None


class DeviceProvisioned(DevicePublic):
    """Shown once: store the key and password in the receiver's config now."""

    device_key: str
    mqtt_user: str
    mqtt_password: str


class DeviceCommand(BaseModel):
    kind: Literal["identify", "volume", "reboot", "stop"]
    args: dict[str, Any] = {}

    @field_validator("args")
    @classmethod
    def _small_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        # Raised as the service errors are, so the answer carries its own code.
        size = len(json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_ARGS_BYTES:
            raise Invalid("args-too-large", "command arguments may be at most %d bytes of JSON"
                          % MAX_ARGS_BYTES,
                          "Tham số lệnh dài tối đa %d byte (JSON)" % MAX_ARGS_BYTES)
        return args


class CommandSent(BaseModel):
    command_id: str


class RenditionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    codec: str
    sha256: str
    size: int
    duration_ms: int
    rate: int


class MediaPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    title: str
    filename: str | None
    duration_s: float
    created_at: datetime
    created_by: str | None
    loudness_lufs: float | None = None
    warnings: list[str] | None = None
    warnings_vi: list[str] | None = None  # the same, for the operator's page
    expires_at: datetime | None = None  # not aired from then on
    renditions: list[RenditionPublic]
    pinned: bool = False


class PinRequest(BaseModel):
    pinned: StrictBool = Field(description="true: kept on every receiver ahead of need, never "
                         "evicted (alert tone, standard emergency messages); false: not")


class PrefetchRequest(BaseModel):
    targets: dict[str, Any] | None = Field(None, description="default: every receiver")


class Prefetched(BaseModel):
    receivers: int


class BroadcastCreate(BaseModel):
    media_id: str
    targets: dict[str, Any] = Field(
        description='{"all": true} | {"zones": ["thon-1", ...]} | {"devices": ["r01", ...]}')
    start_at: datetime | None = Field(None, description="ISO 8601 with a zone; null = now")
    priority: Literal["normal", "priority", "emergency"] = "normal"


class EmergencyCreate(BaseModel):
    media_id: str
    targets: dict[str, Any] | None = Field(None, description="default: every receiver")


class BroadcastCreated(BaseModel):
    id: str
    state: str
    start_at: datetime
    receivers: int


class Reasoned(BaseModel):
    """Why a delivery or a play ended as it did: a code (headend/services/deliveries.py
    REASONS), the receiver's own detail ("http 404") and both in words, per language."""

    reason: str | None = Field(None, description="a code of the fixed list, e.g. not-cached")
    reason_detail: str | None = Field(None, description="the receiver's own words, if any")

    @computed_field(description='{"vi": ..., "en": ...}; null without a reason')
    @property
    def reason_text(self) -> dict[str, str] | None:
        return reason_text(self.reason, self.reason_detail)


class BroadcastDevice(Reasoned):
    id: str
    name: str | None = None
    zone: str | None = None
    state: str
    sent_at: datetime | None = None
    acked_at: datetime | None = None
    fetched_at: datetime | None = None
    started_at: datetime | None
    ended_at: datetime | None
    resends: int = Field(0, description="plays sent again for want of an ack (emergencies)")


class BroadcastDetail(BaseModel):
    id: str
    media_id: str
    title: str
    duration_s: float
    targets: dict[str, Any]
    priority: str
    start_at: datetime
    state: str
    created_by: str | None
    created_at: datetime
    cancelled_at: datetime | None
    cancelled_by: str | None = None
    valid_until: datetime | None = None
    counts: dict[str, int]
    devices: list[BroadcastDevice]


class BroadcastSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    media_id: str
    priority: str
    start_at: datetime
    state: str
    targets: dict[str, Any]
    created_by: str | None
    created_at: datetime
    cancelled_at: datetime | None


class PlayLogEntry(Reasoned):
    model_config = ConfigDict(from_attributes=True)
    device_id: str
    broadcast_id: str | None
    item: str | None
    scheduled_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    outcome: str | None = Field(description="None while playing; played, preempted, "
                                            "cancelled, failed or interrupted")
    played_ms: int | None


class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: datetime
    username: str | None
    action: str
    target: str | None
    detail: dict[str, Any] | None


class Health(BaseModel):
    status: str
    site: str
    mqtt_connected: bool
    receivers: int
    online: int
    stats: dict[str, int]
    clock_trusted: bool = True
    clock_problem: str | None = None  # why nothing is signed (headend/clock_guard.py)


# -- programmes (headend/services/programmes.py) ----------------------------------------------

SEGMENTS_DOC = ('in order: {"media_id": "m..."} (a recording) | {"text": "...", "voice": '
                '"north"|"central"|"south"} (read aloud) | {"chime": "start"|"end"} | '
                '{"relay": {"url": "http(s)://... (MP3, AAC, HLS m3u8)", "minutes": 1-240}} '
                '(tiếp sóng; or "seconds": 5-14400; the last segment only: relayed live to '
                'the targets after the segments before it, for that long, in the '
                "programme's class)")


class ProgrammeCreate(BaseModel):
    title: str
    segments: list[dict[str, Any]] = Field(description=SEGMENTS_DOC)
    targets: dict[str, Any] = Field(
        description='{"all": true} | {"zones": ["thon-1", ...]} | {"devices": ["r01", ...]}')
    priority: Literal["normal", "priority"] = "normal"
    start: datetime = Field(description="the first (or only) occurrence, ISO 8601 with a zone")
    rrule: str | None = Field(None, description="RFC 5545 RRULE read in the site's zone "
                              "(Asia/Ho_Chi_Minh), e.g. FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;"
                              "BYHOUR=5;BYMINUTE=30;UNTIL=20271231T000000Z; null: once")
    exdates: list[datetime] = Field([], description="occurrences left out (their times)")
    volume: int | None = Field(None, ge=0, le=100, description="null: the receiver's own")
    confirm_quiet: bool = Field(False, description="air inside the quiet hours: a leader's "
                                "confirmation, an editor's request for one")


class ProgrammeUpdate(BaseModel):
    title: str | None = None
    segments: list[dict[str, Any]] | None = Field(None, description=SEGMENTS_DOC)
    targets: dict[str, Any] | None = None
    priority: Literal["normal", "priority"] | None = None
    start: datetime | None = None
    rrule: str | None = None
    exdates: list[datetime] | None = None
    volume: int | None = Field(None, ge=0, le=100)
    confirm_quiet: bool = False


class ProgrammeApproval(BaseModel):
    confirm_quiet: bool = False
    comment: str | None = None


class ProgrammeRejection(BaseModel):
    comment: str = Field(description="why (shown to the editor)")


class ProgrammePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    title: str
    segments: list[dict[str, Any]]
    targets: dict[str, Any]
    priority: str
    start: datetime = Field(validation_alias="start_at")
    rrule: str | None
    exdates: list[datetime]
    volume: int | None
    state: str = Field(description="draft, submitted, approved or rejected")
    revision: int
    approved_revision: int | None
    quiet_requested_by: str | None
    quiet_confirmed_by: str | None
    review_comment: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class OccurrenceDevice(BaseModel):
    id: str
    state: str
    reason: str | None


class OccurrenceRelayDevice(BaseModel):
    id: str
    state: str = Field(description="waiting, sent, playing, played, preempted, offline, "
                                   "refused, ... (as GET /live/{id})")
    reason: str | None


class OccurrenceRelay(BaseModel):
    id: str
    state: str = Field(description="starting, live or ended")
    reason: str | None = Field(None, description='why it ended: "until" at its window\'s end')
    devices: list[OccurrenceRelayDevice]


class OccurrencePublic(BaseModel):
    start: datetime
    slot: datetime = Field(description="its time by the rule: its id in .../occurrences/{slot}")
    state: str = Field(description="planned, missed, unapproved, skipped, or its broadcast's "
                                   "state once aired (scheduled, playing, played, ...)")
    moved: bool
    broadcast_id: str | None
    devices: list[OccurrenceDevice]
    live_id: str | None = Field(None, description="the relay segment's live session, once "
                                "started (GET /live/{id})")
    relay: OccurrenceRelay | None = Field(None, description="the relay's proof of play")


class OccurrenceMove(BaseModel):
    to: datetime
    confirm_quiet: bool = False


class AlertPublic(BaseModel):
    """An alert (headend/services/alerts.py): open while ``cleared_at`` is null."""

    id: int
    device_id: str | None = Field(description="the receiver; null: an alert of ``subject``")
    subject: str | None = Field(None, description='"live:<session id>": dead air on a relay')
    device_name: str | None
    zone: str | None
    kind: str = Field(description="offline, on-battery, amp-fault, low-signal, flash-full, "
                                  "clock-unsynced, or dead-air (a relay's)")
    reason: str | None = Field(description="offline: power-lost, link-lost or rebooting; "
                                           "dead-air: source-lost, source-stalled or "
                                           "source-silent")
    severity: str = Field(description="critical, warning or info")
    open: bool
    raised_at: datetime
    cleared_at: datetime | None
    detail: dict[str, Any]
    repeats: int
    title_vi: str
    title_en: str


class MediaJobPublic(BaseModel):
    """An upload being converted (``POST /api/v1/media/uploads``): poll it until ``done``
    (``media_id``; ``duplicate``: the same sound was already there) or ``failed``
    (``reason``, ``detail`` in English, ``message_vi``)."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    state: Literal["queued", "running", "done", "failed"]
    progress: int = Field(description="0-100")
    stage: str | None = None
    filename: str | None
    title: str | None = None
    media_id: str | None = None
    duplicate: bool = False
    reason: str | None = None
    detail: str | None = Field(None, validation_alias="message")
    message_vi: str | None = None
    created_by: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    expires_at: datetime | None = None
