"""Live sessions of one head-end: made by the API, fed by a PCM source, always ended cleanly.

    service = live_service(app)                       # one per app, made on first use
    live = await service.create(actor=user, source={"microphone": True},
                                targets={"zones": ["thon-1"]}, until=None)
    reason = await service.run_audio(live.id, pcm_chunks(), rate=16000)   # the WebSocket
    await service.end(live.id, END_STOPPED)                                # DELETE

A PCM source is any async iterator of 16-bit mono little-endian chunks at ``rate``: the
page's microphone over the WebSocket, or a relay's paced feed (``source={"url": ...}``: the
service runs it itself, headend/live/relay.py, with the fallback during dead air). The first
chunk anchors the session's timeline and sends each receiver its signed ``stream`` command
(prio live: it preempts normal and priority programmes there, an emergency preempts it);
every chunk then goes to one encoder per rendition the targets need, whose frames are
published on the stream topics at QoS 0.

Ending, whatever the cause (``END_REASONS``: stop, ``until``, the socket closing, silence,
audio that never came, a failed encoder), marks the session ended first and then sends
``stop`` for its bid to every receiver that was sent the stream.

Sessions are kept in the database too (headend/live/store.py, with each change). A head-end
that restarts (``recover``, at start-up) ends a microphone session it finds live ("headend-
restarted": its socket died with the old process), sends its receivers ``stop`` and closes
their play-log rows with that reason; a relay still inside its window is resumed: its old
stream is stopped and closed the same, and it is pulled again and sent to its targets as a
new stream (a new bid: receivers refuse a bid they ended). A receiver that reboots while a
session is live (a birth of a new boot) is sent the stream again.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio.live import LiveSourceError
from audio.settings import DEFAULT_SETTINGS as AUDIO_SETTINGS
from headend.clock_guard import CLOCK, ClockUntrusted
from headend.commands import Command, Outgoing, Publisher, chunks, prepare
from headend.errors import Conflict, Forbidden, Invalid, NotFound
from headend.live import planning, store
from headend.live.dead_air_alerts import DeadAirAlerts
from headend.live.deadair import (
    LOST,
    SILENT,
    DeadAirChange,
    DeadAirDetector,
    DeadAirEvent,
    FallbackLoop,
    dead_air_event,
    notice_pcm,
)
from headend.live.encoder import CodecEncoder
from headend.live.relay import RelayHub, relay_feed, relay_url
from headend.live.session import (
    END_CLOCK,
    END_ENCODER_FAILED,
    END_NO_AUDIO,
    END_RELAY_FAILED,
    END_RESTARTED,
    END_SHUTDOWN,
    END_SILENT,
    END_SOCKET_CLOSED,
    END_UNTIL,
    LIVE,
    STARTING,
    LiveSession,
    LiveTarget,
    new_session_id,
    new_stream,
)
from headend.live.timeline import PcmTimeline
from headend.models import DELIVERY_INTERRUPTED, LiveSessionRecord, Receiver, User
from headend.security import has_permission
from headend.services import audit, playlog
from headend.services.broadcasts import receiver_codecs, resolve_targets
from headend.services.playlog import close_open_plays
from headend.services.programme_media import _recording
from headend.settings import Settings
from protocol import messages, topics

log = logging.getLogger(__name__)

PCM_RATES = (16000, 48000)  # what a source may send; ffmpeg resamples to the renditions' rate
MAX_AHEAD = timedelta(hours=24)
_WATCH_S = 0.2
_PUSH_S = 2.0  # an encoder that takes no audio for this long has failed
_JOIN_CHECK_S = 1.0  # how often targets that were offline are looked at again
_SLOW_COMMANDS_S = 0.1  # the stream commands' send logged as a warning past this


def _failure(task: asyncio.Task | None) -> BaseException | None:
    """What a finished task raised (None: not finished, cancelled or fine)."""
    if task is None or not task.done() or task.cancelled():
        return None
    return task.exception()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LiveService:
    def __init__(self, *, settings: Settings, session_factory: sessionmaker[Session],
                 publisher: Publisher):
        self.settings = settings
        self.session_factory = session_factory
        self.publisher = publisher
        self.sessions: dict[str, LiveSession] = {}
        self._attached: set[str] = set()
        self._ended: dict[str, asyncio.Event] = {}
        self._stopping: dict[str, asyncio.Task] = {}
        self._sending: dict[str, asyncio.Lock] = {}
        self._watchers: dict[str, asyncio.Task] = {}
        self._relays: dict[str, asyncio.Task] = {}
        self.hub = RelayHub(settings)
        self._fallbacks: dict[str, FallbackLoop] = {}  # by relay_fallback_media ("" none)
        self.alerts: DeadAirAlerts | None = None  # the operator's alert of dead air: start_alerts()

    def start_alerts(self, wake: Callable[[], None] = lambda: None) -> DeadAirAlerts:
        """Raise and clear an alert of each dead-air episode of this service's relays."""
        if self.alerts is None:
            self.alerts = DeadAirAlerts(settings=self.settings,
                                        session_factory=self.session_factory,
                                        owns=self.sessions.__contains__, wake=wake)
        return self.alerts

    # -- making a session ------------------------------------------------------------------

    async def create(self, *, actor: User | str, source: Any, targets: Any,
                     until: datetime | None, now: datetime | None = None,
                     prio: int = messages.PRIO_LIVE,
                     live_id: str | None = None) -> LiveSession:
        """Check the request and make a ``starting`` session; nothing is sent to receivers
        until its audio starts. Raises Invalid, Forbidden or ClockUntrusted. ``actor``: a
        user, or a system actor (a string, e.g. a programme's relay: authorised where it
        came in); ``prio`` the class of its stream; ``live_id`` an id chosen by the caller
        (a programme's occurrence: one session, found again), Conflict if it is taken."""
        if live_id is not None and live_id in self.sessions:
            raise Conflict("live-exists", "live session %s exists" % live_id,
                           "Phiên phát trực tiếp %s đã có" % live_id)
        live = await asyncio.to_thread(self._create, actor, source, targets, until,
                                       now or datetime.now(UTC), prio, live_id)
        self._register(live)
        self._start(live)
        self._forget_old()
        return live

    def _register(self, live: LiveSession) -> None:
        self.sessions[live.id] = live
        self._ended[live.id] = asyncio.Event()
        if live.over:
            self._ended[live.id].set()
        # Held while its commands go out: a stop is never published before a stream it stops.
        self._sending[live.id] = asyncio.Lock()

    def _start(self, live: LiveSession) -> None:
        self._watchers[live.id] = asyncio.create_task(self._watch(live))
        if live.url is not None:
            self.attach(live.id)  # its audio is the relay's, never a socket's
            self._relays[live.id] = asyncio.create_task(self._run_relay(live))

    def _create(self, actor, source, targets, until, now, prio, live_id) -> LiveSession:
        if isinstance(actor, User) and not has_permission(actor.role, "broadcast"):
            raise Forbidden("forbidden", "role %s may not go live" % actor.role,
                            "Bạn không có quyền phát trực tiếp")
        url = None
        if isinstance(source, dict) and set(source) == {"url"}:
            url = relay_url(source["url"])
        elif source != {"microphone": True}:
            raise Invalid("bad-source", 'source must be {"microphone": true} or {"url": '
                          '"http(s)://..."}', "Nguồn phát không hợp lệ")
        if until is not None:
            if until.tzinfo is None:
                raise Invalid("naive-time", "until needs a time zone (e.g. +07:00 or Z)",
                              "Thời điểm kết thúc cần có múi giờ")
            if until <= now:
                raise Invalid("until-in-past", "until is in the past",
                              "Thời điểm kết thúc đã qua")
            if until > now + MAX_AHEAD:
                raise Invalid("until-too-far", "a live session lasts at most 24 hours",
                              "Phát trực tiếp tối đa 24 giờ")
        CLOCK.now_ms()  # raises ClockUntrusted now rather than when the audio starts
        with self.session_factory() as db:
            receivers = resolve_targets(db, targets)
            found = []
            for receiver in receivers:
                codec = next((c for c in receiver_codecs(receiver)
                              if c in self.settings.media_codecs), None)
                found.append(LiveTarget(receiver.id, codec, bool(receiver.online),
                                        receiver.link, receiver.name, receiver.zone_id,
                                        receiver.session_boot))
            reachable = [t for t in found if t.online and t.codec]
            if not reachable:
                raise Invalid("none-online", "no receiver of the chosen targets is online",
                              "Không có cụm loa nào ở nơi đã chọn đang trực tuyến")
            live = LiveSession(
                id=live_id or new_session_id(), targets=targets, receivers=found,
                created_at=now, url=url, prio=prio,
                created_by=actor.username if isinstance(actor, User) else actor,
                until_ms=None if until is None else int(until.timestamp() * 1000),
                jitter_ms=planning.jitter_allowance_ms(self.settings,
                                                       [t.link for t in reachable]))
            for codec in live.codecs_needed():
                live.streams[codec] = new_stream(live.id, codec, AUDIO_SETTINGS.rate_for(codec))
            audit.record(db, actor=actor, action="live.create", target=live.id,
                         detail={"targets": targets, "receivers": len(found), "url": url,
                                 "online": len(reachable), "until": live.until_ms})
            store.save(db, live)
            db.commit()
        return live

    def get(self, live_id: str) -> LiveSession:
        live = self.sessions.get(live_id)
        if live is None:
            raise NotFound("unknown-live", "unknown live session %r" % live_id,
                           "Không có phiên phát trực tiếp %r" % live_id)
        return live

    def newest_first(self) -> list[LiveSession]:
        return sorted(self.sessions.values(), key=lambda s: s.created_at, reverse=True)

    def _forget_old(self) -> None:
        ended = [s for s in self.newest_first() if s.over]
        for old in ended[self.settings.live_keep_ended:]:
            for table in (self.sessions, self._ended, self._stopping, self._watchers,
                          self._sending, self._relays):
                table.pop(old.id, None)

    # -- the audio -------------------------------------------------------------------------

    def delay_ms(self, live: LiveSession) -> int:
        return planning.play_delay_ms(self.settings, live.jitter_ms, list(live.streams))

    def attach(self, live_id: str) -> LiveSession:
        """Claim the session's one audio source; Conflict if it has one or is over."""
        live = self.get(live_id)
        if live.state != STARTING or live.id in self._attached:
            raise Conflict("live-busy", "live session %s already has its audio or is over"
                           % live.id, "Phiên phát trực tiếp này đã có nguồn hoặc đã kết thúc")
        self._attached.add(live.id)
        return live

    async def run_audio(self, live_id: str, source: AsyncIterator[bytes], *,
                        rate: int = 16000, idle_s: float | None = None) -> str:
        """Feed the session from ``source`` until it ends; returns why it ended. Call
        ``attach`` first. The session is always ended (and stops sent) on return. A source
        quiet for ``idle_s`` (default ``live_silence_s``) ends it as silent."""
        if rate not in PCM_RATES:
            raise Invalid("bad-rate", "PCM rate must be one of %s" % (PCM_RATES,),
                          "Tần số lấy mẫu không hợp lệ")
        live = self.get(live_id)
        ended = self._ended[live.id]
        idle_s = self.settings.live_silence_s if idle_s is None else idle_s
        timeline = PcmTimeline(rate)
        # Started now, before the first audio: ffmpeg takes a while to start on a busy
        # machine, and the first frame must not wait for it. An encoder that stays silent
        # longer than the source may is broken (the source's own silence ends the session).
        encoders = [CodecEncoder(s, pcm_rate=rate,
                                 frame_ms=planning.frame_ms(self.settings, s.codec),
                                 stall_timeout_s=idle_s + _PUSH_S)
                    for s in live.streams.values()]
        # The first chunk goes into the encoders while the `stream` commands go out (signed,
        # committed, published: tens of ms at 50 receivers), not after: waiting for them would
        # make the first frame that much later and move the whole session's timeline forward
        # (timeline.py). No frame is stamped or published before the commands are out.
        sent = asyncio.Event()
        if live.state != STARTING:
            sent.set()
        going_live: asyncio.Task | None = None
        pumps = [asyncio.create_task(self._pump(live, e, timeline, sent)) for e in encoders]
        reason = END_SOCKET_CLOSED
        chunks = aiter(source)
        stop_wait = asyncio.ensure_future(ended.wait())
        try:
            while not live.over:
                next_chunk = asyncio.ensure_future(anext(chunks))
                done, _ = await asyncio.wait({next_chunk, stop_wait},
                                             timeout=idle_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if next_chunk not in done:
                    next_chunk.cancel()
                    reason = END_SILENT if not done else reason
                    break
                try:
                    chunk = next_chunk.result()
                except StopAsyncIteration:
                    reason = END_SOCKET_CLOSED
                    break
                samples = len(chunk) // 2
                if not samples:
                    continue
                silence, keep = timeline.admit(samples, now_ms())
                if going_live is None and live.state == STARTING:
                    going_live = asyncio.create_task(self._go_live(live, sent))
                failed = _failure(going_live)
                if isinstance(failed, ClockUntrusted):
                    reason = END_CLOCK
                    break
                if failed is not None:
                    raise failed
                try:
                    for encoder in encoders:
                        if silence:
                            await asyncio.wait_for(encoder.push(bytes(2 * silence)), _PUSH_S)
                        if keep:
                            await asyncio.wait_for(encoder.push(chunk[:2 * samples]), _PUSH_S)
                except TimeoutError:  # ffmpeg stopped taking audio
                    reason = END_ENCODER_FAILED
                    break
                if any(p.done() for p in pumps):
                    reason = END_ENCODER_FAILED
                    break
        finally:
            stop_wait.cancel()
            if going_live is not None and not going_live.done():
                # Its commands out (or refused) first: the ending stops what it sent.
                await asyncio.gather(going_live, return_exceptions=True)
                if isinstance(_failure(going_live), ClockUntrusted):
                    reason = END_CLOCK
            await self.end(live.id, reason)
            for task in pumps:
                task.cancel()
            for encoder in encoders:
                await encoder.aclose()
            await asyncio.gather(*pumps, return_exceptions=True)
        return live.reason or reason

    async def _go_live(self, live: LiveSession, sent: asyncio.Event | None = None) -> None:
        live.move("go_live")
        live.started_at = live.started_at or datetime.now(UTC)  # a resumed relay keeps its own
        commands = planning.stream_commands(live)
        # Recorded before they go out: a late joiner's check (``_join_late``) must not send
        # them again, and an ending while they go out stops them.
        live.sent = {c.device_id: c.cmd_id for c in commands}
        began = time.monotonic()
        async with self._sending[live.id]:
            try:
                await asyncio.to_thread(self._send, commands, "live.start", live)
            except ClockUntrusted:
                live.sent = {}  # nothing was signed, so nothing went out
                raise
        # A receiver plays a stream from its amplifier's settling after the command came in
        # (firmware/core.py ``_start``): no frame is sent that would play before that.
        live.playable_ms = now_ms() + self.settings.live_amp_settle_ms + live.jitter_ms
        if sent is not None:
            sent.set()
        took_s = time.monotonic() - began
        # A warning when slow: the first frames wait for the commands (see run_audio).
        log.log(logging.WARNING if took_s > _SLOW_COMMANDS_S else logging.INFO,
                "live %s: %d receivers, %s, play delay %d ms, commands out in %.0f ms",
                live.id, len(commands), "+".join(live.streams), self.delay_ms(live),
                1000 * took_s)

    async def _pump(self, live: LiveSession, encoder: CodecEncoder, timeline: PcmTimeline,
                    sent: asyncio.Event):
        topic = topics.stream_topic(self.settings.site_id, encoder.stream.sid)
        await sent.wait()  # ffmpeg's output waits in its pipe meanwhile
        try:
            async for frame in encoder.frames(timeline, self.delay_ms(live), live.jitter_ms,
                                              live.until_ms, lambda: live.playable_ms):
                if live.over:
                    return
                self._publish_frame(topic, frame)
                if live.frames == 0 and timeline.late_start_ms:
                    log.warning("live %s: the first frame came %.0f ms late; the session plays "
                                "that much later", live.id, timeline.late_start_ms)
                live.frames += 1
        except LiveSourceError as exc:
            log.error("live %s: %s encoder failed: %s", live.id, encoder.stream.codec, exc)
            raise

    def _publish_frame(self, topic: str, frame: bytes) -> None:
        publish = getattr(self.publisher, "publish_frame", None)
        if publish is not None:
            publish(topic, frame)
        else:  # a publisher without a stream method (the API-only RecordingPublisher)
            self.publisher.publish_many([Outgoing("", topic, frame, 0)])

    # -- relays ----------------------------------------------------------------------------

    async def _run_relay(self, live: LiveSession) -> None:
        """A relay's audio: its URL pulled (one pull per URL, shared by the sessions relaying
        it), paced, the fallback during dead air; until the session ends."""
        settings = self.settings
        made: list[FallbackLoop] = []
        building = asyncio.ensure_future(self._fallback_pcm())  # ready before it is needed

        async def fallback() -> FallbackLoop:
            if not made:
                pcm, name = await building
                made.append(FallbackLoop(pcm, name=name))
            return made[0]

        async def on_change(change: DeadAirChange) -> None:
            await self._dead_air_changed(live, sub, change, made[0].name if made else "")

        sub = self.hub.subscribe(live.url or "")
        detector = DeadAirDetector(after_s=settings.relay_dead_air_s,
                                   threshold_dbfs=settings.relay_silence_dbfs,
                                   resume_s=settings.relay_resume_s,
                                   lost_grace_s=settings.relay_lost_grace_s)
        feed = relay_feed(sub, detector, fallback, prebuffer_ms=settings.relay_prebuffer_ms,
                          on_change=on_change)
        try:
            await self.run_audio(live.id, feed, idle_s=settings.relay_dead_air_s
                                 + settings.live_silence_s)
        except Exception:
            log.exception("relay %s failed", live.id)
            await self.end(live.id, END_RELAY_FAILED)
        finally:
            building.cancel()
            await feed.aclose()
            await self.hub.unsubscribe(sub)
            if live.dead_air is not None:
                dead, live.dead_air = live.dead_air, None
                at = datetime.now(UTC)
                await asyncio.to_thread(self._close_fallback, live, at)
                # The session ended in dead air: its alert is over too.
                dead_air_event(DeadAirEvent(
                    live.id, live.url or "", False, dead["reason"], dead["detail"],
                    dead["fallback"], int(at.timestamp() * 1000), self._heard_by(live),
                    targets=dict(live.targets), since_ms=int(dead["since"].timestamp() * 1000),
                    ended=True))

    async def _fallback_pcm(self) -> tuple[bytes, str]:
        key = self.settings.relay_fallback_media or ""
        if key not in self._fallbacks:
            self._fallbacks[key] = await asyncio.to_thread(self._make_fallback, key)
        return self._fallbacks[key]

    def _make_fallback(self, media_id: str) -> tuple[bytes, str]:
        """(PCM at 16 kHz, name): the site's filler recording, else the spoken notice."""
        if media_id:
            try:
                with self.session_factory() as db:
                    return _recording(db, media_id).astype("<i2").tobytes(), media_id
            except Exception as exc:  # unknown id, no mp3 rendition, unreadable file
                log.error("relay fallback media %r cannot be played (%s); the notice plays "
                          "instead", media_id, exc)
        return notice_pcm()

    def relay_source(self, live: LiveSession) -> dict[str, Any] | None:
        """The relay's source as the operator sees it: URL, pull state, last error."""
        if live.url is None:
            return None
        pull = self.hub.pulls.get(live.url)
        if pull is None or live.over:
            return {"url": live.url, "state": "closed", "error": None, "listeners": 0}
        return pull.summary()

    async def _dead_air_changed(self, live: LiveSession, sub, change: DeadAirChange,
                                fallback: str) -> None:
        # Stamped when the receivers hear it: the decision plus the session's play delay.
        heard = datetime.now(UTC) + timedelta(milliseconds=self.delay_ms(live))
        settings = self.settings
        if change.dead:
            if change.reason == SILENT:
                detail = "below %.0f dBFS for %.0f s" % (settings.relay_silence_dbfs,
                                                          settings.relay_dead_air_s)
            elif change.reason == LOST:
                detail = sub.pull.error or "source lost"
            else:
                detail = sub.pull.error or "no audio for %.0f s" % settings.relay_dead_air_s
            live.dead_air = {"reason": change.reason, "detail": detail, "since": heard,
                             "fallback": fallback}
            live.fallbacks += 1
            await asyncio.to_thread(self._open_fallback, live, fallback, change.reason,
                                    detail, heard)
            since = heard
        else:
            detail = (live.dead_air or {}).get("detail") or ""
            since = (live.dead_air or {}).get("since") or heard
            live.dead_air = None
            await asyncio.to_thread(self._close_fallback, live, heard)
        dead_air_event(DeadAirEvent(live.id, live.url or "", change.dead, change.reason, detail,
                                    fallback, int(heard.timestamp() * 1000),
                                    self._heard_by(live), targets=dict(live.targets),
                                    since_ms=int(since.timestamp() * 1000)))

    def _heard_by(self, live: LiveSession) -> list[str]:
        """The receivers a change on the stream reaches: those sent it, and those about to be."""
        return sorted(set(live.sent) | {t.device_id for t in live.receivers
                                        if t.online and t.codec in live.streams})

    def _open_fallback(self, live: LiveSession, item: str, reason: str, detail: str,
                       at: datetime) -> None:
        with self.session_factory() as db:
            playlog.open_fallback(db, device_ids=self._heard_by(live), broadcast_id=live.bid,
                                  item=item, reason=reason, detail=detail, at=at)
            audit.record(db, actor=live.created_by, action="live.dead-air", target=live.id,
                         detail={"reason": reason, "detail": detail, "fallback": item})
            store.save(db, live)
            db.commit()

    def _close_fallback(self, live: LiveSession, at: datetime) -> None:
        with self.session_factory() as db:
            playlog.close_fallback(db, broadcast_id=live.bid, at=at)
            audit.record(db, actor=live.created_by, action="live.on-air", target=live.id,
                         detail={"ended": live.over})
            db.commit()

    # -- ending ----------------------------------------------------------------------------

    async def end(self, live_id: str, reason: str) -> LiveSession:
        """End the session (if not already) and send ``stop`` to every receiver that was
        sent its stream; returns once the stops are published."""
        live = self.get(live_id)
        if not live.over:
            live.move("end")
            live.reason = reason
            live.ended_at = datetime.now(UTC)
            self._ended[live.id].set()
            self._stopping[live.id] = asyncio.create_task(self._send_stops(live))
            log.info("live %s ended: %s", live.id, reason)
        stopping = self._stopping.get(live.id)
        if stopping is not None:
            await asyncio.shield(stopping)
        return live

    async def _send_stops(self, live: LiveSession) -> None:
        try:
            async with self._sending[live.id]:
                await asyncio.to_thread(self._send, planning.stop_commands(live), "live.end",
                                        live)
            live.stop_sent = True
        except ClockUntrusted:
            # Nothing can be signed: the receivers end it themselves once frames stop.
            log.error("live %s: stop not signed (clock untrusted); receivers time out", live.id)
            await asyncio.to_thread(self._save, live)
        except Exception:
            log.exception("live %s: sending stop failed", live.id)
            await asyncio.to_thread(self._save, live)

    def _save(self, live: LiveSession) -> None:
        with self.session_factory() as db:
            store.save(db, live)
            db.commit()

    def _send(self, commands: list[Command], action: str, live: LiveSession) -> None:
        with self.session_factory() as db:
            outgoing = prepare(db, site_id=self.settings.site_id, commands=commands,
                               ttl_s=self.settings.command_ttl_s)
            audit.record(db, actor=live.created_by, action=action, target=live.id,
                         detail={"receivers": len(commands), "reason": live.reason})
            store.save(db, live)  # who was sent what, before it goes out
            db.commit()
        self.publisher.publish_many(outgoing)

    async def _watch(self, live: LiveSession) -> None:
        """Ends a session whose audio never came, or whose ``until`` has come; sends the
        stream to targets that come online while it is live."""
        deadline = time.monotonic() + self.settings.live_connect_s
        next_join = 0.0
        while not live.over:
            if live.until_ms is not None and now_ms() >= live.until_ms:
                await self.end(live.id, END_UNTIL)
            elif live.state == STARTING and time.monotonic() >= deadline:
                await self.end(live.id, END_NO_AUDIO)
            elif live.state == LIVE and time.monotonic() >= next_join:
                next_join = time.monotonic() + _JOIN_CHECK_S
                try:
                    await self._join_late(live)
                except Exception:  # a failed check must not stop the watch (until, ...)
                    log.exception("live %s: late-joiner check failed", live.id)
            await asyncio.sleep(_WATCH_S)

    async def _join_late(self, live: LiveSession) -> None:
        """Targets offline when the session went live and online now get its stream; so do
        targets sent it that rebooted since (their boot counter moved: the stream is gone
        from their memory, and its bid is not among those they ended)."""
        ids = [t.device_id for t in live.receivers if t.codec in live.streams]
        if not ids:
            return
        online = await asyncio.to_thread(self._online, ids)
        for target in live.receivers:
            if target.device_id not in online:
                continue
            codecs, boot = online[target.device_id]
            if target.device_id in live.sent:
                if target.boot is None or boot is None or boot == target.boot:
                    continue
                log.info("live %s: %s rebooted (boot %s, was %s); its stream is sent again",
                         live.id, target.device_id, boot, target.boot)
                live.sent.pop(target.device_id)
            # What it declared on coming back; the streams are those made at creation.
            target.codec = next((c for c in codecs if c in live.streams), None)
            target.online = True
            target.boot = boot
        online = {d: v for d, v in online.items() if d not in live.sent}
        if not online:
            return
        async with self._sending[live.id]:
            commands = planning.stream_commands(live, set(online))
            if not commands or live.over:
                return
            live.sent.update({c.device_id: c.cmd_id for c in commands})
            await asyncio.to_thread(self._send, commands, "live.join", live)
        log.info("live %s: %d receivers joined late", live.id, len(commands))

    def _online(self, device_ids: list[str]) -> dict[str, tuple[list[str], int | None]]:
        """Which of these receivers are online now, with the codecs each decodes and its boot
        counter."""
        with self.session_factory() as db:
            return {r.id: (receiver_codecs(r), r.session_boot)
                    for part in chunks(device_ids) for r in db.scalars(
                        select(Receiver).where(Receiver.id.in_(part),
                                               Receiver.online.is_(True)))}

    # -- a head-end restart ----------------------------------------------------------------

    async def recover(self) -> None:
        """At start-up: the sessions the database has, listed again; those a restart left
        live ended ("headend-restarted", stops sent) or, a relay inside its window, resumed."""
        try:
            found = await asyncio.to_thread(self._load)
        except Exception:  # the head-end starts anyway; the sessions stay as they were kept
            log.exception("live sessions could not be read back after the restart")
            return
        for live in found:
            if live.id in self.sessions:
                continue
            self._register(live)
            if live.over:
                continue
            try:
                if live.url is None or (live.until_ms is not None
                                        and now_ms() >= live.until_ms):
                    await self.end(live.id, END_RESTARTED)
                    await asyncio.to_thread(self._close_restarted, live, live.bid, live.sent)
                else:
                    await self._resume(live)
            except Exception:  # one session's failure must not stop the head-end's start
                log.exception("live %s: recovery after the restart failed", live.id)
                if not live.over:
                    await self.end(live.id, END_RESTARTED)

    def _load(self) -> list[LiveSession]:
        with self.session_factory() as db:
            return store.load(db, keep_ended=self.settings.live_keep_ended)

    async def _resume(self, live: LiveSession) -> None:
        """A relay the restart cut: its old stream stopped on the receivers still on it, then
        the source pulled again and sent as a new stream (a new bid)."""
        old_bid, old_sent = live.bid, dict(live.sent)
        async with self._sending[live.id]:
            await asyncio.to_thread(self._send, planning.stop_commands(live), "live.restart",
                                    live)
        await asyncio.to_thread(self._close_restarted, live, old_bid, old_sent)
        await asyncio.to_thread(self._refresh_targets, live)
        live.resumes += 1
        live.state, live.sent, live.dead_air = STARTING, {}, None
        live.streams = {codec: new_stream(live.bid, codec, AUDIO_SETTINGS.rate_for(codec))
                        for codec in live.codecs_needed()}
        await asyncio.to_thread(self._save, live)
        log.warning("live %s: relay of %s resumed after the restart as %s", live.id, live.url,
                    live.bid)
        self._start(live)

    def _refresh_targets(self, live: LiveSession) -> None:
        """The targets as they are now (online, codec, link, boot), for the resumed stream."""
        with self.session_factory() as db:
            for target in live.receivers:
                receiver = db.get(Receiver, target.device_id)
                if receiver is None:
                    target.online, target.codec = False, None
                    continue
                target.codec = next((c for c in receiver_codecs(receiver)
                                     if c in self.settings.media_codecs), None)
                target.online, target.link = bool(receiver.online), receiver.link
                target.boot = receiver.session_boot

    def _close_restarted(self, live: LiveSession, bid: str, sent: dict[str, str]) -> None:
        """The play-log rows of ``bid`` still open: interrupted by the restart."""
        at = datetime.now(UTC)
        with self.session_factory() as db:
            for device_id in sorted(sent):
                close_open_plays(db, device_id=device_id, broadcast_id=bid,
                                 outcome=DELIVERY_INTERRUPTED, reason=END_RESTARTED, at=at)
            playlog.close_fallback(db, broadcast_id=bid, at=at)
            audit.record(db, actor=live.created_by, action="live.restart", target=live.id,
                         detail={"bid": bid, "receivers": len(sent),
                                 "resumed": not live.over})
            db.commit()

    async def shutdown(self, *, keep_relays: bool = True) -> None:
        """The head-end stops (the app's lifespan): every session ends "shutdown" and its
        receivers are sent ``stop`` while MQTT is still up. A relay inside its window is kept
        (``keep_relays``): its row says live again, with no one sent it, so the next start
        resumes it as after a kill."""
        kept = []
        for live in list(self.sessions.values()):
            if not live.over:
                if keep_relays and live.url is not None and (live.until_ms is None
                                                             or now_ms() < live.until_ms):
                    kept.append(live)
                await self.end(live.id, END_SHUTDOWN)
        # The relays close their pulls (no ffmpeg is left behind).
        relays = [t for t in self._relays.values() if not t.done()]
        if relays:
            await asyncio.wait(relays, timeout=10)
        for live in kept:
            await asyncio.to_thread(self._keep_for_resume, live)
        if self.alerts is not None:
            await asyncio.to_thread(self.alerts.close)
            self.alerts = None

    def _keep_for_resume(self, live: LiveSession) -> None:
        with self.session_factory() as db:
            row = db.get(LiveSessionRecord, live.id)
            if row is not None:
                row.state, row.reason, row.ended_at, row.sent = LIVE, None, None, {}
                db.commit()
        log.info("live %s: relay kept, to be resumed by the next start", live.id)


class _AppPublisher:
    """The app's publisher as it is when a message goes out: the MQTT service replaces the
    recording one at start-up (headend/app.py), after routes may have made this service."""

    def __init__(self, state):
        self._state = state

    def publish_many(self, outgoing: list[Outgoing]) -> None:
        self._state.publisher.publish_many(outgoing)

    def __getattr__(self, name):
        return getattr(self._state.publisher, name)


def live_service(app) -> LiveService:
    """The app's live service, made on first use."""
    service = getattr(app.state, "live", None)
    if service is None:
        service = app.state.live = LiveService(settings=app.state.settings,
                                               session_factory=app.state.session_factory,
                                               publisher=_AppPublisher(app.state))

        def wake() -> None:  # the MQTT service's delivery thread, when there is one
            delivery = getattr(app.state.mqtt, "alert_delivery", None)
            if delivery is not None:
                delivery.wake()

        service.start_alerts(wake)
    return service
