"""Attack: copy the head-end's database (a backup, a stolen file) and read every receiver's
signing key from it, then forge its reports or sign commands to it. Defence:
headend/keystore.py seals each key (AES-256-GCM, the device id as associated data) under a
key-encryption key kept outside the database; an older database's plain keys are sealed at
start."""

import os
import stat

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from headend.app import create_app
from headend.keystore import DeviceKeyError, load_kek, open_device_key
from headend.models import Receiver
from headend.services.users import create_user
from headend.settings import Settings
from protocol import messages
from tests.headend.conftest import PASSWORD, Commune, login

SITE = "xa-test"
DEVICES = {"thon-1": ["a1", "a2"]}


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "var", mqtt_enabled=False, site_id=SITE)


def start(settings):
    """A head-end on ``settings`` with an admin, and its receivers provisioned through the API."""
    app = create_app(settings)
    client = TestClient(app).__enter__()
    with app.state.session_factory() as session:
        create_user(session, username="admin", password=PASSWORD, role="admin")
    return app, client, Commune(client, app, login(client, "admin", PASSWORD)).provision(DEVICES)


@pytest.fixture
def commune(settings):
    app, client, commune = start(settings)
    yield commune
    client.__exit__(None, None, None)
    app.state.engine.dispose()


def stored_keys(app) -> dict[str, str]:
    with app.state.session_factory() as session:
        return dict(session.execute(select(Receiver.id, Receiver.device_key)).all())


def database_bytes(settings) -> bytes:
    database = settings.data_dir / "headend.sqlite3"
    return b"".join(path.read_bytes() for path in (database, database.with_name(
        database.name + "-wal")) if path.exists())


def test_a_copy_of_the_database_holds_no_receiver_key(commune, settings):
    stored = stored_keys(commune.app)
    data = database_bytes(settings)
    for device, key in commune.keys.items():
        assert len(key) == 64  # the API still shows the key, once
        assert stored[device] != key and key not in stored[device]
        assert stored[device].startswith("kek1:")
        for form in (key.encode(), key.upper().encode(), bytes.fromhex(key)):
            assert form not in data, "the key of %s is in the database file" % device


def test_reports_and_commands_still_work_with_sealed_keys(commune):
    commune.report(commune.birth("a1"))
    with commune.app.state.session_factory() as session:
        assert session.get(Receiver, "a1").online
    r = commune.client.post("/api/v1/devices/a1/commands", json={"kind": "identify", "args": {}},
                            headers=commune.headers)
    assert r.status_code == 202, r.text
    opened = commune.commands_to("a1")  # verified with the receiver's own key
    assert [c["k"] for c in opened] == ["identify"]


def test_a_plain_key_of_an_older_head_end_is_sealed_at_start(commune, settings):
    key = commune.keys["a1"]
    with commune.app.state.engine.begin() as connection:
        connection.execute(text("UPDATE receivers SET device_key = :k WHERE id = 'a1'"),
                           {"k": key})
    assert stored_keys(commune.app)["a1"] == key
    commune.app.state.engine.dispose()
    app = create_app(settings)  # the next start
    try:
        sealed = stored_keys(app)["a1"]
        assert sealed.startswith("kek1:") and key not in sealed
        assert open_device_key(load_kek(settings), "a1", sealed) == key
        create_app(settings)  # idempotent: a sealed key is not sealed twice
        assert stored_keys(app)["a1"] == sealed
    finally:
        app.state.engine.dispose()


def test_a_sealed_key_moved_to_another_row_does_not_open(commune, settings, caplog):
    stored = stored_keys(commune.app)
    kek = load_kek(settings)
    with pytest.raises(DeviceKeyError) as caught:
        open_device_key(kek, "a2", stored["a1"])
    message = str(caught.value)
    assert "a2" in message and commune.keys["a1"] not in message
    # Under another KEK (a database restored next to the wrong key file) it does not open either.
    with pytest.raises(DeviceKeyError, match="a1"):
        open_device_key(os.urandom(32), "a1", stored["a1"])
    # Moved in the database, it signs nothing for a2 (dropped with an error naming a2), and
    # a command to several receivers still reaches the others.
    with commune.app.state.engine.begin() as connection:
        connection.execute(text("UPDATE receivers SET device_key = :k WHERE id = 'a2'"),
                           {"k": stored["a1"]})
    for device in ("a2", "a1"):
        r = commune.client.post("/api/v1/devices/%s/commands" % device,
                                json={"kind": "identify", "args": {}}, headers=commune.headers)
        assert r.status_code == 202, r.text
    assert [s.device_id for s in commune.publisher.sent] == ["a1"]
    commune.report(commune.birth("a2"))  # its own genuine report: dropped, not a crash
    with commune.app.state.session_factory() as session:
        assert not session.get(Receiver, "a2").online
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("'a2'" in e for e in errors)
    assert not any(commune.keys["a1"] in e or commune.keys["a2"] in e for e in errors)


def test_the_key_encryption_key_file_is_private_and_apart_from_the_database(settings):
    old = os.umask(0o022)
    try:
        app = create_app(settings)
    finally:
        os.umask(old)
    app.state.engine.dispose()
    kek_file = settings.data_dir / "key-encryption-key"
    assert kek_file == settings.resolved_kek_file
    assert stat.S_IMODE(os.stat(kek_file).st_mode) == 0o600
    assert len(bytes.fromhex(kek_file.read_text())) == 32
    assert not list(settings.data_dir.glob("*.tmp"))
    assert kek_file.read_text() not in database_bytes(settings).decode("latin-1")


def test_a_key_encryption_key_from_the_environment_writes_no_file(tmp_path, monkeypatch):
    kek = os.urandom(32)
    monkeypatch.setenv("LOAXA_KEY_ENCRYPTION_KEY", kek.hex())
    settings = Settings(data_dir=tmp_path / "var", mqtt_enabled=False, site_id=SITE)
    app, client, commune = start(settings)
    try:
        assert not settings.resolved_kek_file.exists()
        stored = stored_keys(app)
        assert open_device_key(kek, "a1", stored["a1"]) == commune.keys["a1"]
        commune.report(commune.birth("a1"))  # the ingest opens it with the same KEK
        with app.state.session_factory() as session:
            assert session.get(Receiver, "a1").online
    finally:
        client.__exit__(None, None, None)
        app.state.engine.dispose()


def test_signing_still_verifies_with_the_key_the_api_showed(commune):
    """The key shown once at provisioning is the receiver's real key (what it signs with)."""
    body = messages.death("a1", 1, 1)
    commune.report(commune.birth("a1"))
    commune.report(commune.sealed("status", "a1", body))
    with commune.app.state.session_factory() as session:
        assert not session.get(Receiver, "a1").online
