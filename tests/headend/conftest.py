"""Head-end fixtures: an app on a temp SQLite file and, the same tests again, on a real
PostgreSQL server (MQTT side off, commands recorded), users of every role, a short real
recording, and helpers that feed receivers' reports to the ingest exactly as the MQTT service
would."""

import time

import pytest
from fastapi.testclient import TestClient
from pg_server import PostgresServer, ServerUnavailable

from headend.app import create_app
from headend.db import migrate
from headend.mqtt.ingest import Report, apply_batch
from headend.settings import Settings
from protocol import messages
from tools.testaudio import tone_wav

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """bcrypt at its lowest cost: the hashes are real, the tests just do not wait 0.25 s each."""
    monkeypatch.setattr("headend.security.BCRYPT_ROUNDS", 4)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (about 1 s to start); each test gets
    a database of its own on it."""
    try:
        server = PostgresServer().start()
    except ServerUnavailable as why:
        pytest.skip("PostgreSQL: %s" % why)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def migrated_postgres(postgres_server):
    """The name of a database the Alembic migrations built from empty, once; each test gets
    a copy (faster than migrating each; create_app migrates again, a no-op)."""
    url = postgres_server.new_database()
    migrate(url)
    return url.rsplit("/", 1)[1]


# The PostgreSQL run of each API test is in the slow suite (``make test-slow``, which CI
# runs after ``make test``): the same tests on a second database double their time.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database_url(request):
    """The head-end's promise, "SQLite by default, PostgreSQL by URL with no code change",
    checked by running every API test on both: "" is the default SQLite file."""
    if request.param == "sqlite":
        return ""
    template = request.getfixturevalue("migrated_postgres")
    return request.getfixturevalue("postgres_server").new_database(template)


@pytest.fixture
def settings(tmp_path, database_url):
    return Settings(data_dir=tmp_path / "var", database_url=database_url, mqtt_enabled=False,
                    site_id="xa-test", public_base_url="http://headend.test:8080")


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    # Close the pool, so a test's PostgreSQL connections do not outlive it.
    app.state.engine.dispose()


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def session(app):
    s = app.state.session_factory()
    yield s
    s.close()


@pytest.fixture
def users(session):
    from headend.services.users import create_user

    for role in ("admin", "operator", "technician", "viewer"):
        create_user(session, username=role, password=PASSWORD, role=role)
    return PASSWORD


def login(client, username, password=PASSWORD) -> dict:
    r = client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["access_token"]}


@pytest.fixture
def as_admin(client, users):
    return login(client, "admin")


@pytest.fixture
def as_operator(client, users):
    return login(client, "operator")


class Commune:
    """Zones and receivers provisioned through the API, and a way to make them report."""

    def __init__(self, client, app, headers):
        self.client = client
        self.app = app
        self.headers = headers
        self.keys = {}
        self.seq = {}

    def provision(self, zones):
        for zone, devices in zones.items():
            r = self.client.post("/api/v1/zones", json={"id": zone, "name": zone.title()},
                                 headers=self.headers)
            assert r.status_code == 201, r.text
            for device in devices:
                r = self.client.post("/api/v1/devices", json={"id": device, "name": device,
                                                              "zone": zone},
                                     headers=self.headers)
                assert r.status_code == 201, r.text
                self.keys[device] = r.json()["device_key"]
        return self

    @property
    def publisher(self):
        return self.app.state.publisher

    def report(self, *reports):
        settings = self.app.state.settings
        with self.app.state.session_factory() as session:
            result = apply_batch(session, settings=settings, reports=list(reports))
            from headend.commands import prepare

            out = prepare(session, site_id=settings.site_id, commands=result.commands,
                          ttl_s=settings.command_ttl_s)
            session.commit()
        self.publisher.publish_many(out)
        return result

    def birth(self, device, boot=1, conn=1, codecs=("mp3",), heartbeat_s=None):
        caps = {"codecs": list(codecs), "sink": "sim"}
        if heartbeat_s is not None:
            caps["hb"] = heartbeat_s
        return self.sealed("status", device,
                           messages.birth(device, boot, conn, "0.1.0", caps, "sim"))

    def death(self, device, boot=1, conn=1):
        return self.sealed("status", device, messages.death(device, boot, conn))

    def heartbeat(self, device, boot=1, conn=1, up=60, **fields):
        body = dict({"v": 1, "boot": boot, "conn": conn, "up": up}, **fields)
        return self.sealed("hb", device, messages.encode(body))

    def sealed(self, leaf, device, body, key=None):
        """A report as ``device`` sends it: ``body`` MACed with its key (or ``key``)."""
        from protocol.signing import key_from_hex

        key = key_from_hex(key or self.keys[device])
        return Report(leaf, device, messages.seal_report(key, leaf, body), now_ms(), qos=1)

    def event(self, device, kind, t=None, seq=None, **fields):
        if seq is None:
            seq = self.seq[device] = self.seq.get(device, 0) + 1
        return self.sealed("evt", device,
                           messages.encode(messages.event(seq, kind, t or now_ms(), fields)))

    def commands_to(self, device):
        """The commands published to ``device`` so far, opened with its key."""
        from protocol.signing import key_from_hex

        out = []
        for sent in self.publisher.sent:
            if sent.device_id == device:
                out.append(messages.open_command(key_from_hex(self.keys[device]), sent.payload,
                                                 device))
        return out

    def upload(self, seconds=1.5, name="ban-tin.wav"):
        r = self.client.post("/api/v1/media", files={"file": (name, tone_wav(seconds),
                                                              "audio/wav")},
                             headers=self.headers)
        assert r.status_code == 201, r.text
        return r.json()


def now_ms():
    return time.time_ns() // 1_000_000


@pytest.fixture
def commune(client, app, as_admin):
    """Three receivers in thon-1, two in thon-2, all provisioned, none online yet."""
    return Commune(client, app, as_admin).provision(
        {"thon-1": ["a1", "a2", "a3"], "thon-2": ["b1", "b2"]})
