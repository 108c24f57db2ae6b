"""`loaxa demo`: a whole commune on this PC: the embedded broker, the head-end and its web
pages, and simulated receivers in three villages, with a sample bulletin scheduled.

    loaxa demo [--port 8080] [--receivers 12] [--dir var/demo] [--runtime cpython|micropython]
    (LOAXA_PORT, LOAXA_RECEIVERS, LOAXA_RUNTIME and LOAXA_ADMIN_PASSWORD set the same from the
    environment; with micropython every receiver is its own process of the MicroPython that
    computes like an ESP32, see simulator/mp_runtime.py)

Everything it makes lives under ``--dir`` and is reused by the next run: the head-end's
database and media, the fleet file (receivers' ids, keys and broker passwords), the simulated
boards' flash, the admin password, the head-end's secret key and broker password. The broker
accepts no anonymous client: it reads the accounts the head-end exports for Mosquitto
(``broker/passwd`` and ``broker/acl``), so each receiver logs in as itself and may touch only
its own topics, and the head-end's persistent session keeps reports across its restarts. Ctrl-C stops the receivers,
then the head-end, then the broker, and waits for each, so no process is left behind.

While it runs, a head-end or broker that dies is started again (simulator/supervise.py, at most
5 times a minute) and the receivers keep running; an API error while polling is logged, not
fatal. An admin password given in LOAXA_ADMIN_PASSWORD is never printed nor stored, and is
taken out of the environment before any child process starts.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

SITE = "xa-mau"
RUNTIME_NAMES = {"cpython": "simulated in this process",
                 "micropython": "each an ESP32-model MicroPython process"}
SITE_NAME = "Xã Mẫu"
VILLAGES = [("thon-dong", "Thôn Đông"), ("thon-doai", "Thôn Đoài"), ("xom-chua", "Xóm Chùa")]
# Each village takes the outline and geocodes of a village of Ninh Hải, Ninh Bình (west to
# east, as Đoài and Đông say; headend/cap/ninh_binh_demo_zones.json), so CAP alerts drawn
# over that commune reach the demo's receivers.
VILLAGE_OUTLINES = {"thon-doai": "xuan-ang", "xom-chua": "van-lam", "thon-dong": "hai-nham"}
HEADEND_MQTT_USER = "headend"
HEARTBEAT_S = 10  # livelier than the 30 s default, so the pages fill in quickly
BULLETIN_TITLE = "Bản tin mẫu của xã"
BULLETIN_TEXT = (
    "Đài truyền thanh xã Mẫu xin kính chào bà con. "
    "Ủy ban nhân dân xã thông báo: từ 7h00 đến 11h00 sáng mai, điện lực tạm ngừng cấp điện "
    "để bảo dưỡng đường dây tại thôn Đông. Đề nghị bà con chủ động sắp xếp công việc. "
    "Trạm y tế xã tổ chức tiêm chủng cho trẻ em vào sáng thứ Bảy tại nhà văn hóa thôn Đoài. "
    "Xin cảm ơn bà con đã lắng nghe.")
# The standard emergency message kept on every receiver (pinned, with the alert tone), so an
# evacuation call starts from the receivers' own flash at once.
STANDARD_EMERGENCY_TITLE = "Tin khẩn cấp mẫu: sơ tán"
STANDARD_EMERGENCY_TEXT = (
    "Thông báo khẩn cấp. Đề nghị bà con khẩn trương di chuyển đến nơi an toàn theo hướng dẫn "
    "của chính quyền xã, và tiếp tục theo dõi loa truyền thanh.")
BULLETIN_LEAD_S = 45  # the sample bulletin plays this long after the demo is up
STATUS_EVERY_S = 60
SUPERVISE_EVERY_S = 1.0  # how soon a dead head-end or broker is noticed
ADMIN_PASSWORD_ENV = "LOAXA_ADMIN_PASSWORD"


def say(text=""):
    print(text, flush=True)


def write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n")
    path.chmod(0o600)


def read_or_make_secret(path: Path, make) -> str:
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    value = make()
    write_secret(path, value)
    return value


def port_is_free(port: int) -> bool:
    """Whether the head-end can listen on ``port``: bound as uvicorn binds it, with
    SO_REUSEADDR, so the TIME_WAIT sockets a demo stopped a moment ago leaves behind do not
    count (only a process listening there does)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def give_villages_outlines(session) -> None:
    """The demo villages' areas (VILLAGE_OUTLINES), where they have none yet."""
    from headend.cap.demo_zones import demo_zones_document
    from headend.models import Zone
    from headend.services.sites import update_zone

    outlines = {zone["id"]: zone["area"] for zone in demo_zones_document()["zones"]}
    for village, real in VILLAGE_OUTLINES.items():
        zone = session.get(Zone, village)
        if zone is not None and zone.area is None:
            update_zone(session, zone_id=village, area=outlines[real], actor="demo")


def pin_standard_media(session, settings):
    """The alert tone and the standard emergency message in the site's pinned set (made once;
    headend/services/pinned.py): every receiver gets them at its birth. Without the TTS, the
    alert tone alone."""
    import tempfile

    from headend.commands import RecordingPublisher
    from headend.models import MediaItem
    from headend.services.media import ingest_media
    from headend.services.pinned import ensure_alert_tone, set_pinned

    publisher = RecordingPublisher()  # nobody is online yet: they get it at their birth
    ensure_alert_tone(session, settings=settings, publisher=publisher, actor="demo")
    if session.query(MediaItem).filter_by(title=STANDARD_EMERGENCY_TITLE).first() is not None:
        return
    try:
        from audio.tones import dress
        from audio.tts import synthesize_to_file

        with tempfile.TemporaryDirectory() as folder:
            speech = synthesize_to_file(STANDARD_EMERGENCY_TEXT, Path(folder) / "speech.wav",
                                        voice="north")
            dressed = dress(speech, Path(folder) / "so-tan.wav", kind="emergency")
            media = ingest_media(session, settings=settings, src_path=dressed, filename=None,
                                 title=STANDARD_EMERGENCY_TITLE, actor="demo")
    except Exception as exc:  # no espeak-ng here: the tone alone is pinned
        say("Standard emergency message not made (text-to-speech unavailable: %s)" % exc)
        return
    set_pinned(session, settings=settings, publisher=publisher, media_id=media.id,
               pinned=True, actor="demo")
    say("Pinned on every receiver: the alert tone and %r" % STANDARD_EMERGENCY_TITLE)


class Demo:
    def __init__(self, directory: Path, port: int, receivers: int, admin_password: str | None,
                 runtime: str = "cpython"):
        self.runtime = runtime
        self.dir = directory
        self.port = port
        self.count = receivers
        self.given_password = admin_password
        self.url = "http://127.0.0.1:%d" % port
        self.broker_dir = directory / "broker"
        self.broker = None
        self.headend = None
        self.fleet = None
        self.http = None

    # -- setting up (what a second run reuses) ---------------------------------------------

    def settings(self, broker):
        from headend.settings import Settings

        return Settings(data_dir=self.dir / "headend", site_id=SITE, site_name=SITE_NAME,
                        mqtt_host=broker[0], mqtt_port=broker[1], public_base_url=self.url,
                        secret_key=self.secret_key, mqtt_username=HEADEND_MQTT_USER,
                        mqtt_password=self.mqtt_password, broker_accounts_dir=self.broker_dir)

    def prepare_database(self, broker):
        """Receivers (the head-end's provisioning service), the admin account, and the
        broker's account files exported from them."""
        from headend.db import make_engine, make_session_factory, migrate
        from headend.private_files import secure_storage
        from headend.security import random_password, verify_password
        from headend.services.provisioning import export_mosquitto, provision_fleet
        from headend.services.users import create_user, get_user, update_user
        from simulator.fleet import DeviceSpec

        settings = self.settings(broker)
        secure_storage(settings)
        migrate(settings.resolved_database_url)
        engine = make_engine(settings.resolved_database_url)
        fleet_path = self.dir / "fleet.json"
        fleet = (json.loads(fleet_path.read_text()) if fleet_path.exists()
                 else {"site": SITE, "devices": []})
        password_path = self.dir / "admin-password"
        try:
            with make_session_factory(engine)() as session:
                missing = self.count - len(fleet["devices"])
                if missing > 0:
                    made = provision_fleet(session, settings=settings, receivers=missing,
                                           zones=VILLAGES, broker=broker, actor="demo")
                    fleet["devices"] += made["devices"]
                    say("Provisioned %d receivers in %d villages" % (missing, len(VILLAGES)))
                else:
                    say("Reusing %d receivers from %s" % (self.count, fleet_path))
                give_villages_outlines(session)
                fleet["broker"] = {"host": broker[0], "port": broker[1]}
                write_secret(fleet_path, json.dumps(fleet, ensure_ascii=False, indent=1))
                # The operator knows a password they chose: it is not written to disk.
                password = (self.given_password
                            or read_or_make_secret(password_path, lambda: random_password(9)))
                admin = get_user(session, username="admin")
                if admin is None:
                    create_user(session, username="admin", password=password, role="admin",
                                full_name="Quản trị đài", actor="demo")
                elif not admin.active or not verify_password(password, admin.password_hash):
                    update_user(session, username="admin", password=password, active=True,
                                actor="demo")
                export_mosquitto(session, settings=settings, directory=self.broker_dir)
                pin_standard_media(session, settings)
        finally:
            engine.dispose()
        self.admin_password = password
        return [DeviceSpec.from_json(d) for d in fleet["devices"][:self.count]]

    # -- the parts -----------------------------------------------------------------------------

    def start_services(self):
        from headend.process import HeadendProcess
        from tools.testbrokers import free_port, start_embedded_broker

        self.secret_key = read_or_make_secret(self.dir / "secret-key",
                                              lambda: os.urandom(32).hex())
        self.mqtt_password = read_or_make_secret(self.dir / "headend-mqtt-password",
                                                 lambda: os.urandom(16).hex())
        address = ("127.0.0.1", free_port())
        specs = self.prepare_database(address)
        self.broker = start_embedded_broker(self.broker_dir, port=address[1],
                                            config_dir=self.broker_dir)
        say("Embedded MQTT broker on %s:%d (accounts: %s)"
            % (self.broker.host, self.broker.port, self.broker_dir / "passwd"))
        self.headend = HeadendProcess(
            self.dir / "headend", mqtt=self.broker.address, port=self.port,
            env={"LOAXA_SITE_ID": SITE, "LOAXA_SITE_NAME": SITE_NAME,
                 "LOAXA_SECRET_KEY": self.secret_key, "LOAXA_MQTT_USERNAME": HEADEND_MQTT_USER,
                 "LOAXA_MQTT_PASSWORD": self.mqtt_password,
                 "LOAXA_BROKER_ACCOUNTS_DIR": str(self.broker_dir)})
        self.headend.start(timeout=60)
        say("Head-end on %s (log: %s)" % (self.url, self.headend.log_path))
        return specs

    async def start_receivers(self, specs):
        from simulator.fleet import Fleet

        self.fleet = Fleet(specs, site=SITE, broker=self.broker.address,
                           workdir=str(self.dir / "boards"),
                           config_overrides={"heartbeat_s": HEARTBEAT_S}, runtime=self.runtime)
        rng = random.Random(SITE)
        for sim in self.fleet:  # poles differ: signal strength, one on its backup battery
            sim.platform.rssi = rng.randint(-84, -55)
        if len(specs) > 2:
            self.fleet[specs[-1].id].platform.mains = 0
            self.fleet[specs[-1].id].platform.dc_volts = 12.4
        await self.fleet.start()

    async def login(self):
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30)
        await self.authenticate()

    async def authenticate(self):
        r = await self.http.post("/api/v1/auth/token",
                                 data={"username": "admin", "password": self.admin_password})
        r.raise_for_status()
        self.http.headers["Authorization"] = "Bearer " + r.json()["access_token"]

    async def online(self) -> tuple[int, int, int]:
        r = await self.http.get("/api/v1/devices")
        if r.status_code == 401:  # the token expired while the demo ran for hours
            await self.authenticate()
            r = await self.http.get("/api/v1/devices")
        r.raise_for_status()
        devices = r.json()
        return (sum(1 for d in devices if d["online"]), len(devices),
                sum(1 for d in devices if d.get("now_playing")))

    async def wait_online(self, timeout=40.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            online, total, _ = await self.online()
            if online >= self.count:
                return online, total
            await asyncio.sleep(0.5)
        return await self.online()

    # -- the sample bulletin -------------------------------------------------------------------

    def make_bulletin(self, path: Path) -> str:
        """Vietnamese speech from the TTS engine if it works here, else a generated chime."""
        try:
            from audio.tts import synthesize_to_file

            synthesize_to_file(BULLETIN_TEXT, path, voice="north")
            return "Vietnamese speech (espeak-ng)"
        except Exception as exc:  # no espeak-ng, or the audio package is not there yet
            import numpy as np

            from audio.tones import chime, write_wav

            write_wav(path, np.concatenate([chime(22050)] * 4), 22050)
            return "a generated chime (text-to-speech unavailable: %s)" % exc

    async def seed_bulletin(self):
        state_path = self.dir / "demo.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        media_id = state.get("bulletin_media_id")
        if media_id and (await self.http.get("/api/v1/media/" + media_id)).status_code == 200:
            say("Reusing the sample bulletin %s" % media_id)
        else:
            path = self.dir / "ban-tin-mau.wav"
            what = await asyncio.to_thread(self.make_bulletin, path)
            with open(path, "rb") as f:
                r = await self.http.post("/api/v1/media", data={"title": BULLETIN_TITLE},
                                         files={"file": (path.name, f.read(), "audio/wav")})
            r.raise_for_status()
            media_id = r.json()["id"]
            state["bulletin_media_id"] = media_id
            state_path.write_text(json.dumps(state))
            say("Uploaded the sample bulletin (%s, %.0f s) as %s"
                % (what, r.json()["duration_s"], media_id))
        at = datetime.now(UTC) + timedelta(seconds=BULLETIN_LEAD_S)
        r = await self.http.post("/api/v1/broadcasts", json={
            "media_id": media_id, "targets": {"all": True}, "priority": "normal",
            "start_at": at.isoformat()})
        r.raise_for_status()
        return r.json()["id"], at

    # -- running -------------------------------------------------------------------------------

    async def run(self):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            specs = await asyncio.to_thread(self.start_services)
            if stop.is_set():
                return 0
            await self.start_receivers(specs)
            await self.login()
            online, total = await self.wait_online()
            if stop.is_set():
                return 0
            bid, at = await self.seed_bulletin()
            tz = self.settings(self.broker.address).tz
            local = at.astimezone(tz)
            say("")
            say("=" * 64)
            say("Loaxa demo: %d/%d receivers online in %d villages (%s)" % (
                online, total, len(VILLAGES), RUNTIME_NAMES[self.runtime]))
            say("Open %s" % self.url)
            say("Log in as: admin")
            if self.given_password:
                say("Password:  (given by %s)" % ADMIN_PASSWORD_ENV)
            else:
                say("Password:  %s" % self.admin_password)
            say("Sample bulletin scheduled at %s (Asia/Ho_Chi_Minh): %s/broadcasts/%s"
                % (local.strftime("%H:%M:%S"), self.url, bid))
            say("Ctrl-C stops everything. Data: %s" % self.dir)
            say("=" * 64)
            await self.supervise(stop, tz)
        finally:
            await self.shutdown()
        return 0

    async def supervise(self, stop, tz):
        """Until Ctrl-C: restart the broker or head-end if one died (the broker first, as the
        head-end waits for it), and print how many receivers are online now and then."""
        from simulator.supervise import Restarter

        keepers = [Restarter("broker", self.broker, say), Restarter("head-end", self.headend, say)]
        next_status = time.monotonic() + STATUS_EVERY_S
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), SUPERVISE_EVERY_S)
                break
            except TimeoutError:
                pass
            for keeper in keepers:
                await asyncio.to_thread(keeper.check)
            if time.monotonic() < next_status:
                continue
            next_status = time.monotonic() + STATUS_EVERY_S
            now = datetime.now(tz).strftime("%H:%M:%S")
            try:
                online, total, playing = await self.online()
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                say("%s  head-end API error (%s); asking again in %d s"
                    % (now, str(exc) or type(exc).__name__, STATUS_EVERY_S))
                continue
            say("%s  %d/%d receivers online, %d playing" % (now, online, total, playing))

    async def shutdown(self):
        say("Stopping: receivers, head-end, broker...")
        if self.http is not None:
            await self.http.aclose()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.headend is not None:
            await asyncio.to_thread(self.headend.stop)
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        say("Stopped.")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="loaxa demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOAXA_PORT", "8080")),
                        help="the head-end's port on 127.0.0.1 (LOAXA_PORT, default 8080)")
    parser.add_argument("--receivers", type=int,
                        default=int(os.environ.get("LOAXA_RECEIVERS", "12")),
                        help="simulated receivers (LOAXA_RECEIVERS, default 12)")
    parser.add_argument("--runtime", choices=("cpython", "micropython"),
                        default=os.environ.get("LOAXA_RUNTIME", "cpython"),
                        help="how receivers run (LOAXA_RUNTIME, default cpython)")
    parser.add_argument("--dir", type=Path, default=Path("var/demo"),
                        help="where the demo keeps its state (default var/demo)")
    args = parser.parse_args(argv)
    if args.receivers < 1:
        parser.error("--receivers must be at least 1")
    if not port_is_free(args.port):
        say("loaxa demo: port %d on 127.0.0.1 is taken; set LOAXA_PORT to another one"
            % args.port)
        return 1
    args.dir.mkdir(parents=True, exist_ok=True)
    # Out of os.environ before anything starts: the head-end, the broker and the receivers
    # inherit this process's environment, and none of them needs the admin's password.
    admin_password = os.environ.pop(ADMIN_PASSWORD_ENV, None) or None
    demo = Demo(args.dir.resolve(), args.port, args.receivers, admin_password,
                runtime=args.runtime)
    try:
        return asyncio.run(demo.run())
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed
        return 130
    except (RuntimeError, OSError, httpx.HTTPError) as exc:  # a part did not start
        say("loaxa demo: %s" % exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
