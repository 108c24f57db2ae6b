"""Page-test fixtures: the head-end app on a temp SQLite file (MQTT side off, commands kept by
a RecordingPublisher), a small commune provisioned through the services, receivers' reports
fed to the real ingest, and a browser-like client that logs in through the login form."""

import re
import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from headend.app import create_app
from headend.commands import prepare
from headend.mqtt.ingest import Report, apply_batch
from headend.services.devices import provision_device
from headend.services.sites import create_zone
from headend.services.users import create_user
from headend.settings import Settings
from protocol import messages
from protocol.signing import key_from_hex
from tools.testaudio import write_tone_wav

PASSWORD = "mat-khau-thu"
SITE = "xa-web"
# Thôn Đông: three receivers; Thôn Tây: two (one of them never comes online).
COMMUNE = {"thon-dong": ("Thôn Đông", ["d1", "d2", "d3"]), "thon-tay": ("Thôn Tây", ["t1", "t2"])}


def form_token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """bcrypt at its lowest cost: real hashes, without 0.25 s per login."""
    monkeypatch.setattr("headend.security.BCRYPT_ROUNDS", 4)


@pytest.fixture
def app(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", mqtt_enabled=False, site_id=SITE,
                        site_name="Xã Thử Nghiệm", public_base_url="http://headend.test")
    return create_app(settings)


class Station:
    """The commune behind the pages: its receivers report through the real ingest."""

    def __init__(self, app):
        self.app = app
        self.settings = app.state.settings
        self.seq: dict[str, int] = {}
        self.uptime: dict[str, int] = {}
        self.keys: dict[str, str] = {}
        with app.state.session_factory() as session:
            for role in ("admin", "operator", "technician", "viewer"):
                create_user(session, username=role, password=PASSWORD, role=role)
            for zone_id, (name, devices) in COMMUNE.items():
                create_zone(session, site_id=SITE, zone_id=zone_id, name=name)
                for device in devices:
                    made = provision_device(session, site_id=SITE, device_id=device,
                                            name="Loa %s" % device.upper(), zone_id=zone_id)
                    self.keys[device] = made.device_key

    @property
    def sent(self):
        return self.app.state.publisher.sent

    def commands(self, kind: str) -> dict[str, list[dict]]:
        """The commands of this kind each device was sent, opened with its own key."""
        out: dict[str, list[dict]] = {}
        for sent in self.sent:
            cmd = messages.open_command(key_from_hex(self.keys[sent.device_id]), sent.payload,
                                        sent.device_id)
            if cmd["k"] == kind:
                out.setdefault(sent.device_id, []).append(cmd)
        return out

    def report(self, device: str, leaf: str, msg: dict | bytes, at: datetime | None = None):
        at = at or datetime.now(UTC)
        payload = msg if isinstance(msg, bytes) else messages.encode(msg)
        payload = messages.seal_report(key_from_hex(self.keys[device]), leaf, payload)
        report = Report(leaf, device, payload, ms(at), qos=1)
        with self.app.state.session_factory() as session:
            result = apply_batch(session, settings=self.settings, reports=[report], now=at)
            out = prepare(session, site_id=SITE, commands=result.commands,
                          ttl_s=self.settings.command_ttl_s)
            session.commit()
        self.app.state.publisher.publish_many(out)

    def online(self, *devices: str, firmware="1.2.0", at: datetime | None = None):
        for device in devices:
            self.report(device, "status", messages.birth(
                device, 1, 1, firmware, {"codecs": ["mp3", "adpcm"], "sink": "sim"}, "wifi"),
                at)

    def heartbeat(self, device: str, at: datetime | None = None, **fields):
        # uptime grows with each heartbeat, as a receiver's does (a repeated one is a replay)
        self.uptime[device] = self.uptime.get(device, 0) + 60
        self.report(device, "hb", dict({"v": 1, "boot": 1, "conn": 1, "up": self.uptime[device]},
                                       **fields), at)

    def event(self, device: str, kind: str, **fields):
        seq = self.seq[device] = self.seq.get(device, 0) + 1
        self.report(device, "evt", messages.event(seq, kind, time.time_ns() // 1_000_000,
                                                  fields))



@pytest.fixture
def station(app):
    return Station(app)


class Browser:
    """A TestClient that behaves like the operator's browser: cookies, forms with tokens."""

    def __init__(self, client: TestClient):
        self.client = client

    def login(self, username: str, password: str = PASSWORD):
        page = self.client.get("/login")
        return self.client.post("/login", data={"username": username, "password": password,
                                                "csrf": form_token(page.text),
                                                "next": "/receivers"}, follow_redirects=False)

    def get(self, path: str, **kw):
        return self.client.get(path, **kw)

    def submit(self, page_path: str, action: str, data: dict, files=None, **kw):
        """Load ``page_path`` (for its form token), then post ``data`` to ``action``."""
        token = form_token(self.client.get(page_path).text)
        return self.client.post(action, data=dict(data, csrf=token), files=files,
                                follow_redirects=False, **kw)


@pytest.fixture
def browser(app, station):
    with TestClient(app) as client:
        yield Browser(client)


@pytest.fixture
def operator(browser):
    assert browser.login("operator").status_code == 303
    return browser


@pytest.fixture
def tone(tmp_path):
    return write_tone_wav(tmp_path / "ban-tin.wav")
