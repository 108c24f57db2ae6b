"""The head-end's configuration: one ``Settings()`` object, from ``LOAXA_*`` environment variables.

Everything configurable lives here and nowhere else (no ``os.environ`` reads elsewhere). Outside
development the object refuses to exist with a default or empty secret, so a production
head-end can never run with the key that is printed in this file.
"""

from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol import presence

DEFAULT_SECRET = "development-only-secret-change-me"


def default_client_id(site_id: str) -> str:
    """The head-end's MQTT client id when none is configured (no receiver may take it)."""
    return "loaxa-headend-%s" % site_id


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOAXA_", env_file=None, extra="ignore")

    environment: Literal["development", "production"] = "development"

    # Storage. ``data_dir`` holds the SQLite file and the media cache unless both are given.
    data_dir: Path = Path("var")
    database_url: str = ""  # default: sqlite:///{data_dir}/headend.sqlite3; PostgreSQL by URL
    media_dir: Path | None = None  # default: {data_dir}/media

    # What receivers fetch media from: this head-end's address as seen from the poles.
    public_base_url: str = "http://127.0.0.1:8080"

    # MQTT broker (the embedded one for a single commune, Mosquitto/EMQX in production).
    site_id: str = "xa-demo"
    site_name: str = "Xã mẫu"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_client_id: str = ""  # default: the username, else loaxa-headend-{site_id}; fixed, for a persistent session
    # Receivers over TLS (headend/services/tls.py): provisioning gives every receiver the
    # site's CA and "tls": true on ``broker_tls_port``; the broker gets a certificate from that
    # CA naming ``broker_tls_names`` (host names and/or IPs; the receivers' broker host is
    # added) and receivers check the first of them (else that host). The CA's key and the
    # broker's live in ``tls_dir`` (default {data_dir}/tls, mode 0700, keys 0600).
    broker_tls: bool = False
    broker_tls_port: int = 8883
    broker_tls_names: list[str] = []
    tls_dir: Path | None = None
    # When set, the broker's ``passwd`` and ``acl`` files are rewritten here after every
    # provisioning, so a new receiver can log in at once: the embedded broker rereads them on
    # connect; Mosquitto needs a SIGHUP (``loaxa headend export-mosquitto`` writes the same).
    broker_accounts_dir: Path | None = None
    # "auto" tries MQTT 5 (no in-flight window limit from the broker) then falls back to 3.1.1
    # for brokers without it (the embedded amqtt broker).
    mqtt_protocol: Literal["auto", "5", "3.1.1"] = "auto"
    mqtt_keepalive_s: int = 30
    mqtt_enabled: bool = True  # tests of the API alone switch the MQTT side off

    # Security.
    secret_key: str = DEFAULT_SECRET
    token_ttl_min: int = 12 * 60
    # Receivers' keys are sealed under this key-encryption key (headend/keystore.py): 64 hex
    # chars from a secret manager, else the file ``kek_file`` (default
    # {data_dir}/key-encryption-key, 0600, made if missing), kept apart from the database.
    key_encryption_key: str = ""
    kek_file: Path | None = None
    # Bearer token Prometheus scrapes /metrics with (users' "read" tokens work too); empty:
    # users' tokens only.
    metrics_token: str = ""

    # Presence (the rules: protocol/presence.py): receivers send a heartbeat every
    # ``heartbeat_s``; one silent for ``offline_after_s`` (1.4 periods: 42 s) is marked offline,
    # checked every ``presence_sweep_s``, so an outage is noticed within 44 s <= 45 s. A
    # receiver declaring a longer period in its birth gets 1.4 of its own.
    heartbeat_s: int = presence.DEFAULT_PERIOD_S
    offline_after_s: int = presence.offline_allowance_s(presence.DEFAULT_PERIOD_S)
    presence_sweep_s: float = presence.SWEEP_S

    # Commands and broadcasts.
    command_ttl_s: int = 60  # a command not delivered within this is refused by the receiver
    # A receiver of a firmware wave that stays offline this long after its update first went
    # out is "no answer" (headend/services/firmware.py): the wave goes on without it, unless
    # nobody of the wave has updated (then it pauses).
    ota_no_answer_min: int = 30
    emergency_volume: int = 100
    # A programme sent "now" starts this much later, so every receiver of a village can fetch
    # the media first and all start together (raise it for hundreds of receivers on one link).
    now_lead_ms: int = 3000
    # Emergency start lead when every target already holds the media: all poles start together
    # at call + lead (no echo between neighbours). Without the media they play once fetched.
    emergency_lead_ms: int = 150
    # A receiver that comes back while an emergency is current plays it from the start; an
    # emergency stays current this long after it started, unless cancelled.
    emergency_window_s: int = 15 * 60
    # Escalation (headend/services/escalation.py): a receiver online that has not acked an
    # emergency's play within ``emergency_confirm_s`` is listed on its page and sent the play
    # again, at most ``emergency_resends`` times (then an operator's "re-send" button).
    emergency_confirm_s: int = 10
    emergency_resends: int = 3
    media_codecs: tuple[str, ...] = ("mp3", "adpcm")
    max_upload_mb: int = 200

    # Live from the microphone (headend/live/, docs/live.md). A frame's play-at time is its
    # capture time + the largest, among the session's codecs, of frame length +
    # ``live_encoder_ms`` (ffmpeg's lag past the frame's last sample, measured by
    # bench/bench_live.py: MP3 105-150 ms, LAME's priming and look-ahead and ffmpeg's 64 ms
    # PCM packets; ADPCM up to 90 ms, the packets) + the jitter allowance of the slowest link
    # among the targets (one timeline per session, so every pole of a village plays the same
    # sample together). MP3 frames are 5 MPEG frames: with 3, the header and MQTT bytes were
    # 19 % on top of the payload, with 5 under 10 % (docs/benchmarks.md).
    live_frame_ms: dict[str, int] = {"mp3": 180, "adpcm": 120}
    live_encoder_ms: dict[str, int] = {"mp3": 160, "adpcm": 100}
    # eth: a LAN's transit is ~1 ms, 80 covers a busy switch and the broker's fan-out; sim:
    # the simulator's loopback (a few ms measured at 50 receivers in one process).
    live_jitter_ms: dict[str, int] = {"eth": 80, "wifi": 250, "ppp": 600, "sim": 50}
    # The receivers' amplifier settling (firmware/config.py ``amp_settle_ms``): a stream plays
    # from then after its command came in; earlier frames are not sent (headend/live/).
    live_amp_settle_ms: int = 300
    live_jitter_default_ms: int = 600  # a link type not in the table, or none reported yet
    live_silence_s: float = 3.0  # no audio from the source this long ends the session
    live_connect_s: float = 30.0  # a session whose audio never starts ends after this
    live_keep_ended: int = 50  # ended sessions still listed by GET /api/v1/live
    # Relays of a stream URL (headend/live/relay.py) and their dead air (headend/live/deadair.py):
    # no bytes, or audio below ``relay_silence_dbfs``, for ``relay_dead_air_s`` plays the
    # fallback (the media item ``relay_fallback_media``, else a spoken notice) until the source
    # has given sound again for ``relay_resume_s``.
    relay_dead_air_s: float = 5.0
    relay_silence_dbfs: float = -50.0
    relay_resume_s: float = 1.0
    # A source gone (connection refused or closed, ffmpeg ended) plays the fallback once its
    # buffered audio has played and this has passed (a reconnect that works at once): well
    # inside ``relay_dead_air_s``, which is for a source still connected but stalled or silent.
    relay_lost_grace_s: float = 1.0
    relay_fallback_media: str | None = None
    relay_read_timeout_s: float = 10.0  # ffmpeg's and ours: a source this quiet is reopened
    relay_prebuffer_ms: int = 1000  # the source's jitter the relay absorbs
    relay_max_buffer_s: float = 10.0  # read ahead of real time (an HLS playlist's burst)

    # Ingestion: a batch is written in one transaction; at most this many messages per batch.
    ingest_max_batch: int = 5000

    # Telemetry history (headend/services/telemetry.py): every heartbeat kept this many days,
    # hourly min/mean/max this many.
    telemetry_raw_days: int = 7
    telemetry_hourly_days: int = 400
    # The map page's background tiles, e.g. "http://tiles.lan/{z}/{x}/{y}.png" on a local tile
    # server; empty (the default): no tiles, receivers and villages on a plain background.
    map_tile_url: str = ""
    map_tile_attribution: str = ""

    # CAP alerts (docs/cap.md): what airs without an operator (headend/cap/policy.py
    # SitePolicy.from_dict; {} keeps its default: Extreme/Severe, Immediate, Observed/Likely),
    # as JSON in LOAXA_CAP_POLICY; the voice that reads them; how far an HMAC-signed post's
    # timestamp may be from the head-end's clock (a replay later than that is refused).
    cap_policy: dict[str, Any] = {}
    cap_voice: Literal["north", "central", "south"] = "north"
    cap_signature_window_s: int = 300
    # CAP feeds (headend/services/cap_feeds.py): the poller looks for feeds due every
    # ``cap_feed_check_s`` (each feed has its own interval); every fetch (a feed, a CAP
    # document, an audio resource) is bounded by ``cap_fetch_timeout_s`` in all; an attached
    # audio resource by ``cap_resource_max_bytes``. ``cap_feed_poller`` off: no polling.
    cap_feed_poller: bool = True
    cap_feed_check_s: float = 5.0
    cap_fetch_timeout_s: float = 10.0
    cap_resource_max_bytes: int = 16 * 1024 * 1024

    timezone: str = "Asia/Ho_Chi_Minh"  # shown, and programmes' recurrence; stored in UTC

    # Programmes (headend/services/programmes.py). A normal programme may not air in the
    # quiet hours (local time, "HH:MM"; start after end: across midnight; start = end: none)
    # unless a leader confirms it. Each approved occurrence becomes a broadcast
    # ``programme_lead_s`` ahead, so receivers fetch its media first; the scheduler looks
    # every ``programme_check_s``.
    # Guard rails look at the occurrences of the next ``programme_horizon_days``.
    quiet_hours_start: str = "22:00"
    quiet_hours_end: str = "05:00"
    # The early-morning hours (local "HH:MM"; start = end: none), when a zone's
    # ``early_volume_limit`` holds: the morning programme airs, the commune half asleep.
    early_hours_start: str = "05:00"
    early_hours_end: str = "07:00"
    programme_lead_s: int = 600
    programme_check_s: float = 30.0
    programme_horizon_days: int = 60
    programme_scheduler: bool = True  # off: nothing airs programmes (tests drive it by hand)
    # Each receiver holds the approved occurrences of the next ``programme_window_h`` hours
    # (and their media, within its cache budget), so it plays them with its link down: a
    # signed ``schedule`` command (headend/services/programme_windows.py), sent again when
    # its content changes, when the receiver comes back, and every
    # ``programme_window_refresh_s`` anyway.
    programme_window_h: int = 48
    programme_window_refresh_s: int = 21600

    # Alerts (headend/services/alerts.py, docs/alerts.md). Thresholds of the rules; the quiet
    # hours ("HH:MM", local; start = end: none) hold e-mail and webhook notices of kinds not in
    # ``alert_urgent_kinds`` until they end (the pages show every alert at once); an alert
    # still open is notified again every ``alert_repeat_h`` hours (0: never); an offline alert
    # of a receiver told to reboot is notified only if it is not back within
    # ``alert_reboot_grace_s``.
    alert_low_rssi_dbm: int = -85  # low signal below this, over again 5 dB above it
    alert_flash_full_pct: int = 90  # media cache used / its budget
    alert_unsynced_after_s: int = 300  # clock unsynced this long after a boot
    alert_battery_low_v: float = 11.5  # on battery at or below this: drained (12 V systems)
    alert_quiet_start: str = "22:00"
    alert_quiet_end: str = "05:00"
    alert_urgent_kinds: list[str] = ["offline"]
    alert_repeat_h: float = 12.0
    alert_reboot_grace_s: int = 180
    alert_check_s: float = 5.0  # the delivery thread's look for due notices and repeats
    # E-mail (SMTP): no host, no e-mail. The password is never logged nor shown.
    alert_smtp_host: str = ""
    alert_smtp_port: int = 587
    alert_smtp_starttls: bool = True
    alert_smtp_user: str = ""
    alert_smtp_password: SecretStr = SecretStr("")
    alert_smtp_from: str = "loaxa-headend@localhost"
    alert_email_to: list[str] = []
    # Webhook: a JSON POST per notice (docs/alerts.md); with a secret, signed like CAP posts
    # (X-Loaxa-Timestamp, X-Loaxa-Signature: sha256=HMAC(secret, timestamp "." body)).
    alert_webhook_url: str = ""
    alert_webhook_secret: SecretStr = SecretStr("")
    alert_delivery_timeout_s: float = 10.0

    # The periodic test (headend/services/selftests.py): when it runs, "DAY HH:MM" local time
    # (DAY: mon..sun, or "daily"; empty: never, by hand only), run by the programme
    # scheduler's pass; a slot the head-end missed by more than ``selftest_late_s`` is not run
    # late. A receiver waits up to 10 min for a quiet moment, so an answer counts until
    # ``selftest_answer_s`` after the send; later it is "no answer".
    selftest_schedule: str = "sun 10:00"
    selftest_late_s: int = 3600
    selftest_answer_s: int = 900

    # The content library's upload jobs (headend/services/media_jobs.py): converted by
    # ``media_job_workers`` threads (ffmpeg uses a core each), at most ``media_job_queue``
    # more waiting (then 503); a recording longer than ``max_media_duration_min`` is refused.
    media_job_workers: int = 1
    media_job_queue: int = 4
    max_media_duration_min: int = 240

    @model_validator(mode="after")
    def _refuse_default_secrets(self):
        if self.environment != "development":
            if not self.secret_key or self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 24:
                raise ValueError("LOAXA_SECRET_KEY must be set to a random value of at least 24 "
                                 "characters outside development")
            if not self.mqtt_password:
                raise ValueError("LOAXA_MQTT_PASSWORD must be set outside development (the "
                                 "broker must not accept anonymous clients)")
            if not self.key_encryption_key and (
                    self.kek_file is None
                    or self.resolved_kek_file.resolve().is_relative_to(
                        Path(self.data_dir).resolve())):
                # Beside the database, every copy of the data folder (a backup, a stolen disk)
                # carries the key that opens every receiver's key.
                raise ValueError("LOAXA_KEY_ENCRYPTION_KEY (from a secret manager) or "
                                 "LOAXA_KEK_FILE outside the data folder must be set outside "
                                 "development")
        return self

    @model_validator(mode="after")
    def _check_cap_policy(self):
        from headend.cap.policy import SitePolicy
        from headend.errors import ServiceError

        try:
            SitePolicy.from_dict(self.cap_policy)
        except ServiceError as exc:
            raise ValueError("LOAXA_CAP_POLICY: %s" % exc.message) from None
        return self

    @model_validator(mode="after")
    def _check_alerts(self):
        from headend.services.programmes_time import quiet_hours

        try:
            quiet_hours(self.alert_quiet_start, self.alert_quiet_end)
        except ValueError:
            raise ValueError("LOAXA_ALERT_QUIET_START/END must be HH:MM times") from None
        from headend.services.alert_rules import KINDS

        unknown = [k for k in self.alert_urgent_kinds if k not in KINDS]
        if unknown:
            raise ValueError("LOAXA_ALERT_URGENT_KINDS: unknown kind %s (known: %s)"
                             % (", ".join(unknown), ", ".join(KINDS)))
        if self.alert_webhook_url and not self.alert_webhook_url.startswith(
                ("http://", "https://")):
            raise ValueError("LOAXA_ALERT_WEBHOOK_URL must be an http:// or https:// URL")
        if self.alert_smtp_host and not self.alert_email_to:
            raise ValueError("LOAXA_ALERT_EMAIL_TO must name at least one recipient when "
                             "LOAXA_ALERT_SMTP_HOST is set")
        return self

    @model_validator(mode="after")
    def _check_hours(self):
        from headend.services.programmes_time import quiet_hours

        for name in ("quiet_hours", "early_hours"):
            try:
                quiet_hours(getattr(self, name + "_start"), getattr(self, name + "_end"))
            except ValueError:
                raise ValueError("LOAXA_%s_START/END must be HH:MM times" % name.upper()) \
                    from None
        return self

    @model_validator(mode="after")
    def _check_selftest_schedule(self):
        from headend.services.selftests import parse_schedule

        parse_schedule(self.selftest_schedule)  # ValueError names what is wrong
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or "sqlite:///%s" % (Path(self.data_dir) / "headend.sqlite3")

    @property
    def resolved_tls_dir(self) -> Path:
        return Path(self.tls_dir) if self.tls_dir else Path(self.data_dir) / "tls"

    @property
    def resolved_kek_file(self) -> Path:
        return Path(self.kek_file) if self.kek_file else Path(self.data_dir) / "key-encryption-key"

    @property
    def resolved_media_dir(self) -> Path:
        return Path(self.media_dir) if self.media_dir else Path(self.data_dir) / "media"

    @property
    def resolved_client_id(self) -> str:
        # With accounts, the broker binds the client id to the username (one session each).
        return self.mqtt_client_id or self.mqtt_username or default_client_id(self.site_id)

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def media_url(self, sha: str, ext: str) -> str:
        return "%s/media/%s.%s" % (self.public_base_url.rstrip("/"), sha, ext)
