"""The head-end application: API, media files, and the MQTT service in its lifespan.

``create_app(settings)`` applies the migrations, makes sure the site exists, and (unless
``settings.mqtt_enabled`` is off) starts the MQTT service when the server starts and stops it
when the server stops. The web pages (headend/web/) are mounted when that package exists.
"""

import asyncio
import gc
import importlib
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from headend.api.main import api_router, install_error_handlers
from headend.commands import RecordingPublisher
from headend.db import make_engine, make_session_factory, migrate, session_scope
from headend.keystore import load_kek, seal_plain_keys
from headend.media_http import router as media_router
from headend.metrics import router as metrics_router
from headend.private_files import secure_storage
from headend.services.media_jobs import MediaJobs, fail_interrupted
from headend.services.sites import ensure_site
from headend.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    url = settings.resolved_database_url
    secure_storage(settings)
    migrate(url)
    engine = make_engine(url)
    session_factory = make_session_factory(engine)
    with session_scope(session_factory) as session:
        ensure_site(session, site_id=settings.site_id, name=settings.site_name)
        # Keys stored in plain by an older head-end are sealed once, under the KEK.
        seal_plain_keys(session, load_kek(settings))
        session.commit()
        # Upload jobs a previous run left unfinished cannot finish: failed, files removed.
        fail_interrupted(session, settings)
    settings.resolved_media_dir.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.mqtt_enabled:
            from headend.mqtt.service import MqttService

            service = MqttService(settings=settings, session_factory=session_factory).start()
            app.state.mqtt = service
            app.state.publisher = service
            if settings.programme_scheduler:
                from headend.services.programmes_scheduler import ProgrammeScheduler

                app.state.programmes = ProgrammeScheduler(
                    settings=settings, session_factory=session_factory,
                    publisher=service).start()
            if settings.cap_feed_poller:
                from headend.services.cap_feeds import CapFeedPoller

                app.state.cap_feeds = CapFeedPoller(
                    settings=settings, session_factory=session_factory,
                    publisher=service).start()
        # Live sessions a restart cut: microphones ended, relays in their window resumed
        # (without MQTT, the API-only head-end, their commands are kept as all others).
        from headend.live.service import live_service

        await live_service(app).recover()
        if app.state.programmes is not None:
            # Programmes' relay segments are live sessions made on this loop, at their time.
            from headend.services.programme_relays import ProgrammeRelays
            from headend.services.programmes import CHANGED

            app.state.programmes.relays = ProgrammeRelays(
                loop=asyncio.get_running_loop(), live=live_service(app), settings=settings,
                session_factory=session_factory)
            CHANGED.set()  # a pass now hands over the relays that are due
        _freeze_startup_objects()
        try:
            yield
        finally:
            # Sessions end (stops sent while MQTT is up); relays in their window are kept.
            await app.state.live.shutdown()
            if app.state.programmes is not None:
                app.state.programmes.stop()
            if app.state.cap_feeds is not None:
                app.state.cap_feeds.stop()
            if app.state.mqtt is not None:
                app.state.mqtt.stop()
            app.state.media_jobs.stop()
            engine.dispose()

    app = FastAPI(title="Loaxa head-end", version="1", lifespan=lifespan,
                  description="Commune IP radio: receivers, media, broadcasts, emergency, "
                              "proof of play. Times are UTC (ISO 8601).")
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.mqtt = None
    app.state.programmes = None  # the programme scheduler, started with the MQTT service
    app.state.cap_feeds = None  # the CAP feed poller, likewise
    # Without the MQTT service (API-only tests), commands are kept, not sent.
    app.state.publisher = RecordingPublisher()
    app.state.media_jobs = MediaJobs(settings=settings, session_factory=session_factory)
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(media_router)
    app.include_router(metrics_router)
    _mount_pages(app)
    return app


def _freeze_startup_objects() -> None:
    """Leave what the start made (modules, routes, mappers, templates: a quarter of a million
    objects) out of the garbage collector's full passes. Each pass walked them all, 50-200 ms
    with the interpreter stopped, landing in whatever ran then: an emergency's thousand
    commands included (bench/profile_emergency.py). They live as long as the process anyway."""
    gc.collect()
    gc.freeze()


def _mount_pages(app: FastAPI) -> None:
    """The Vietnamese web pages, if installed: headend.web must expose ``install(app)``."""
    try:
        web = importlib.import_module("headend.web")
    except ModuleNotFoundError as exc:
        if exc.name not in ("headend.web",):
            raise
        return
    install = getattr(web, "install", None)
    if install is not None:
        install(app)
