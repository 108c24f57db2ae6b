"""Rotation of a receiver's key and broker password through the head-end: the API and the
command line start it, the offer opens under the current key only, both accounts are in the
broker's files and both keys open reports until the receiver speaks under the new key, then
the old ones are gone and the confirmation is signed with the new key."""

import json

import pytest

from headend.cli import main
from headend.services.provisioning import export_mosquitto
from protocol import messages
from protocol.errors import ProtocolError
from protocol.rekey import open_box
from protocol.signing import key_from_hex
from tests.headend.conftest import Commune, login
from tools.broker_acl import Acl, read_passwd, verify_mosquitto_hash


@pytest.fixture
def database_url():
    """SQLite only: the columns are plain ones, the PostgreSQL run of the API tests covers them."""
    return ""


@pytest.fixture
def commune(client, app, users):
    return Commune(client, app, login(client, "technician")).provision({"thon-1": ["r1", "r2"]})


def _offer(commune, device="r1", key=None):
    cmds = [c for c in commune.publisher.sent if c.device_id == device]
    cmd = messages.open_command(key_from_hex(key or commune.keys[device]), cmds[-1].payload,
                                device)
    assert cmd["k"] == messages.REKEY
    return cmd["a"]


def _accounts(app, tmp_path):
    with app.state.session_factory() as session:
        export_mosquitto(session, settings=app.state.settings, directory=tmp_path / "broker")
    return read_passwd(tmp_path / "broker" / "passwd"), \
        Acl.parse((tmp_path / "broker" / "acl").read_text())


def test_rotation_keeps_both_until_the_new_key_is_heard(commune, client, app, tmp_path):
    r = client.post("/api/v1/devices/r1/rotate", headers=commune.headers)
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["resent"] is False and started["command_id"]
    offer = _offer(commune)
    assert offer["rid"] == started["rotation_id"] and offer["user"] == "r1.b"
    old_key = commune.keys["r1"]
    new_key, password = open_box(key_from_hex(old_key), offer["rid"], offer["box"])
    assert new_key != old_key and password not in json.dumps(offer)
    # both accounts log in, each only to r1's topics
    passwd, acl = _accounts(app, tmp_path)
    assert set(passwd) >= {"r1", "r1.b", "r2"}
    assert verify_mosquitto_hash(password, passwd["r1.b"])
    assert acl.allows("r1.b", "r1.b", "write", "loaxa/v1/xa-test/dev/r1/status")
    assert not acl.allows("r1.b", "r1.b", "write", "loaxa/v1/xa-test/dev/r2/status")
    assert acl.allows("r1.b", "r1.b", "read", "loaxa/v1/xa-test/dev/r1/cmd")
    # asked again: the same offer, no second set
    again = client.post("/api/v1/devices/r1/rotate", headers=commune.headers).json()
    assert again["resent"] is True and again["rotation_id"] == started["rotation_id"]
    assert open_box(key_from_hex(old_key), offer["rid"], _offer(commune)["box"]) \
        == (new_key, password)
    # under the old key: reports count, and a birth gets the offer again
    before = len(commune.publisher.sent)
    result = commune.report(commune.birth("r1"))
    assert result.stats["malformed"] == 0 and not result.rekeyed
    assert _offer(commune)["rid"] == offer["rid"] and len(commune.publisher.sent) == before + 1
    # the first report under the new key ends it
    result = commune.report(commune.sealed("status", "r1", messages.birth(
        "r1", 1, 2, "0.1.0", {"codecs": ["mp3"], "sink": "sim"}, "sim"), key=new_key))
    assert result.rekeyed == ["r1"] and result.stats["malformed"] == 0
    confirm = commune.publisher.sent[-1]
    with pytest.raises(ProtocolError):
        messages.open_command(key_from_hex(old_key), confirm.payload, "r1")
    cmd = messages.open_command(key_from_hex(new_key), confirm.payload, "r1")
    assert cmd["k"] == messages.REKEY and cmd["a"] == {"rid": offer["rid"]}
    commune.keys["r1"] = new_key
    passwd, _ = _accounts(app, tmp_path)
    assert "r1" not in passwd and verify_mosquitto_hash(password, passwd["r1.b"])
    # the old key opens nothing now; later commands are signed with the new one
    result = commune.report(commune.sealed("hb", "r1", messages.encode(
        {"v": 1, "boot": 1, "conn": 2, "up": 5}), key=old_key))
    assert result.stats["malformed.bad-signature"] == 1
    r = client.post("/api/v1/devices/r1/commands", json={"kind": "identify", "args": {}},
                    headers=commune.headers)
    assert r.status_code == 202, r.text
    last = commune.publisher.sent[-1]
    assert messages.open_command(key_from_hex(new_key), last.payload, "r1")["k"] == "identify"
    # the next rotation goes back to the account named as the device
    client.post("/api/v1/devices/r1/rotate", headers=commune.headers)
    assert _offer(commune)["user"] == "r1"


def test_rotation_roles_and_unknown(commune, client):
    for role in ("viewer", "operator"):
        r = client.post("/api/v1/devices/r1/rotate", headers=login(client, role))
        assert r.status_code == 403, (role, r.text)
    assert client.post("/api/v1/devices/r1/rotate",
                       headers=login(client, "admin")).status_code == 202
    r = client.post("/api/v1/devices/nope/rotate", headers=commune.headers)
    assert r.status_code == 404 and r.json()["code"] == "unknown-device"


def test_rotate_device_command_line_leaves_the_offer_to_the_sweep(tmp_path, capsys):
    from datetime import UTC, datetime

    from headend.db import make_engine, make_session_factory
    from headend.models import Receiver
    from headend.services.rotation import offers_due

    data = tmp_path / "var"
    assert main(["--data-dir", str(data), "provision", "--receivers", "1",
                 "--fleet", str(tmp_path / "fleet.json")]) == 0
    device = json.loads((tmp_path / "fleet.json").read_text())["devices"][0]
    assert main(["--data-dir", str(data), "rotate-device", device["id"]]) == 0
    assert "started" in capsys.readouterr().out
    assert main(["--data-dir", str(data), "rotate-device", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
    from headend.settings import Settings

    factory = make_session_factory(make_engine(Settings(data_dir=data).resolved_database_url))
    with factory() as session:
        receiver = session.get(Receiver, device["id"])
        assert receiver.rekey_id and receiver.rekey_sent_at is None
        assert offers_due(session, now=datetime.now(UTC)) == []  # offline: not yet
        receiver.online = True
        (offer,) = offers_due(session, now=datetime.now(UTC))
        assert offer.kind == messages.REKEY and offer.args["rid"] == receiver.rekey_id
        assert offers_due(session, now=datetime.now(UTC)) == []  # just sent
