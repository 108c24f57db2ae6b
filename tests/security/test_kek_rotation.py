"""Rotating the key-encryption key (`loaxa headend rekey`): after a suspected leak of the KEK
(or its backup), every receiver's key is sealed under a new one and the old one opens nothing;
the receivers keep their keys and notice nothing. A rotation cut short at any step is finished
by running it again and loses no key. And production refuses the KEK beside the database."""

import json
import os
import stat

import pytest
from sqlalchemy import select

from headend import keystore
from headend.app import create_app
from headend.cli import main
from headend.db import make_engine, make_session_factory
from headend.keystore import DeviceKeyError, open_device_key
from headend.models import AuditEntry, CapSource, Receiver
from headend.settings import Settings


class Crash(Exception):
    pass


@pytest.fixture
def station(tmp_path, monkeypatch):
    """Three receivers provisioned from the command line; their keys from the fleet file."""
    monkeypatch.delenv("LOAXA_KEY_ENCRYPTION_KEY", raising=False)
    data = tmp_path / "var"
    fleet = tmp_path / "fleet.json"
    assert main(["--data-dir", str(data), "provision", "--receivers", "3", "--zones", "thon-1",
                 "--fleet", str(fleet)]) == 0
    keys = {d["id"]: d["key"] for d in json.loads(fleet.read_text())["devices"]}
    return Settings(data_dir=data), keys


def stored_keys(settings):
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            return dict(session.execute(select(Receiver.id, Receiver.device_key)).all())
    finally:
        engine.dispose()


def kek_in_file(settings):
    return bytes.fromhex(settings.resolved_kek_file.read_text().strip())


def opens_with(kek, stored):
    return {device: open_device_key(kek, device, value) for device, value in stored.items()}


def test_rekey_seals_every_key_under_a_new_kek_and_the_old_one_opens_none(station, capsys):
    settings, keys = station
    old = kek_in_file(settings)
    assert opens_with(old, stored_keys(settings)) == keys
    assert main(["--data-dir", str(settings.data_dir), "rekey"]) == 0
    out = capsys.readouterr().out
    assert "resealed 3 receiver keys" in out and old.hex() not in out
    new = kek_in_file(settings)
    assert new != old
    assert stat.S_IMODE(settings.resolved_kek_file.stat().st_mode) == 0o600
    assert not list(settings.resolved_kek_file.parent.glob("*.next"))
    stored = stored_keys(settings)
    assert opens_with(new, stored) == keys  # the receivers keep their keys
    for device, value in stored.items():
        with pytest.raises(DeviceKeyError):
            open_device_key(old, device, value)
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == "keys.rekey"))
        assert entry.detail == {"receivers": 3} and entry.username == "cli"
    engine.dispose()


def test_a_head_end_started_after_the_rotation_signs_with_the_receivers_keys(station):
    settings, keys = station
    assert main(["--data-dir", str(settings.data_dir), "rekey"]) == 0
    from headend.commands import Command, prepare
    from protocol import messages
    from protocol.signing import key_from_hex

    engine = make_engine(settings.resolved_database_url)
    keystore.load_kek(settings)
    with make_session_factory(engine)() as session:
        out = prepare(session, site_id=settings.site_id, ttl_s=60,
                      commands=[Command(d, messages.IDENTIFY, {}) for d in sorted(keys)])
        session.commit()
    engine.dispose()
    assert len(out) == 3
    for sent in out:
        cmd = messages.open_command(key_from_hex(keys[sent.device_id]), sent.payload,
                                    sent.device_id)
        assert cmd["k"] == messages.IDENTIFY


def test_a_rotation_cut_off_after_its_commit_is_finished_by_the_next_run(station, monkeypatch):
    settings, keys = station
    real_replace = os.replace

    def power_cut(src, dst):
        if str(dst) == str(settings.resolved_kek_file):
            raise OSError("power cut before the new key file took the old one's place")
        return real_replace(src, dst)

    monkeypatch.setattr(keystore.os, "replace", power_cut)
    with pytest.raises(OSError):
        main(["--data-dir", str(settings.data_dir), "rekey"])
    monkeypatch.setattr(keystore.os, "replace", real_replace)
    old = kek_in_file(settings)  # still the old file; the database is under the .next one
    with pytest.raises(DeviceKeyError):
        opens_with(old, stored_keys(settings))
    with pytest.raises(keystore.RekeyError, match="rekey"):  # no head-end on the wrong KEK
        create_app(settings)
    assert main(["--data-dir", str(settings.data_dir), "rekey"]) == 0
    assert opens_with(kek_in_file(settings), stored_keys(settings)) == keys


def test_a_rotation_cut_off_before_its_commit_changed_nothing(station, monkeypatch):
    settings, keys = station
    old = kek_in_file(settings)
    calls = []
    real_seal = keystore.seal_device_key

    def fails_on_the_second(kek, device_id, key_hex):
        calls.append(device_id)
        if len(calls) == 2:
            raise Crash("the process dies in the middle")
        return real_seal(kek, device_id, key_hex)

    monkeypatch.setattr(keystore, "seal_device_key", fails_on_the_second)
    with pytest.raises(Crash):
        main(["--data-dir", str(settings.data_dir), "rekey"])
    monkeypatch.setattr(keystore, "seal_device_key", real_seal)
    assert kek_in_file(settings) == old
    assert opens_with(old, stored_keys(settings)) == keys
    assert main(["--data-dir", str(settings.data_dir), "rekey"]) == 0
    assert opens_with(kek_in_file(settings), stored_keys(settings)) == keys


def test_a_key_that_does_not_open_stops_the_rotation_before_any_change(station, capsys):
    settings, keys = station
    old = kek_in_file(settings)
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        victim = session.get(Receiver, sorted(keys)[0])
        victim.device_key = keystore.seal_device_key(os.urandom(32), victim.id, keys[victim.id])
        session.commit()
    engine.dispose()
    before = stored_keys(settings)
    assert main(["--data-dir", str(settings.data_dir), "rekey"]) == 1
    assert sorted(keys)[0] in capsys.readouterr().err
    assert kek_in_file(settings) == old and stored_keys(settings) == before


def test_a_kek_from_the_environment_is_rotated_to_the_one_given(tmp_path, monkeypatch, capsys):
    old, new = os.urandom(32).hex(), os.urandom(32).hex()
    monkeypatch.setenv("LOAXA_KEY_ENCRYPTION_KEY", old)
    data = tmp_path / "var"
    fleet = tmp_path / "fleet.json"
    assert main(["--data-dir", str(data), "provision", "--receivers", "2", "--zones", "thon-1",
                 "--fleet", str(fleet)]) == 0
    keys = {d["id"]: d["key"] for d in json.loads(fleet.read_text())["devices"]}
    assert main(["--data-dir", str(data), "rekey"]) == 2  # no new key given
    assert "LOAXA_NEW_KEY_ENCRYPTION_KEY" in capsys.readouterr().err
    monkeypatch.setenv("LOAXA_NEW_KEY_ENCRYPTION_KEY", new)
    assert main(["--data-dir", str(data), "rekey"]) == 0
    assert "LOAXA_NEW_KEY_ENCRYPTION_KEY" not in os.environ  # not passed on to children
    out = capsys.readouterr().out
    assert new not in out and old not in out
    settings = Settings(data_dir=data)
    assert opens_with(bytes.fromhex(new), stored_keys(settings)) == keys
    assert not (data / "key-encryption-key").exists()


@pytest.mark.parametrize("kek", [{}, {"kek_file": "var/key-encryption-key"}])
def test_production_refuses_the_kek_beside_the_database(tmp_path, kek):
    secrets = {"secret_key": "x" * 32, "mqtt_password": "broker-secret"}
    overrides = {k: tmp_path / v for k, v in kek.items()}
    with pytest.raises(ValueError, match="LOAXA_KEY_ENCRYPTION_KEY"):
        Settings(environment="production", data_dir=tmp_path / "var", **secrets, **overrides)
    apart = Settings(environment="production", data_dir=tmp_path / "var",
                     kek_file=tmp_path / "keys" / "kek", **secrets)
    assert apart.resolved_kek_file == tmp_path / "keys" / "kek"
    assert Settings(environment="production", data_dir=tmp_path / "var",
                    key_encryption_key="ab" * 32, **secrets)


def test_the_server_refuses_to_start_on_a_rotation_cut_short(station, monkeypatch, capsys):
    settings, _ = station
    settings.resolved_kek_file.with_name("key-encryption-key.next").write_text("ab" * 32)
    assert main(["--data-dir", str(settings.data_dir), "serve", "--port", "1"]) == 2
    assert "loaxa headend rekey" in capsys.readouterr().err


def test_rekey_also_reseals_the_hmac_secrets_of_warning_sources(station, capsys):
    settings, keys = station
    assert main(["--data-dir", str(settings.data_dir), "add-cap-source", "kttv", "--auth",
                 "hmac", "--sender", "kttv@nchmf.gov.vn"]) == 0
    secret = capsys.readouterr().out.rsplit(": ", 1)[1].strip()
    assert main(["--data-dir", str(settings.data_dir), "rekey"]) == 0
    new = kek_in_file(settings)
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        stored = session.get(CapSource, "kttv").hmac_secret
    engine.dispose()
    assert open_device_key(new, keystore.cap_source_aad("kttv"), stored) == secret
    assert opens_with(new, stored_keys(settings)) == keys
