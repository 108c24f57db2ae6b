"""`loaxa headend ...` as a technician uses it: migrate, provision a fleet (and the broker's
password/ACL files), create users, and serve until Ctrl-C."""

import json

from headend.cli import main
from headend.process import HeadendProcess
from protocol.signing import key_from_hex


def test_provision_writes_a_fleet_file_and_broker_files(tmp_path):
    data, fleet, broker_dir = tmp_path / "var", tmp_path / "fleet.json", tmp_path / "mosquitto"
    assert main(["--data-dir", str(data), "migrate"]) == 0
    assert main(["--data-dir", str(data), "provision", "--receivers", "5",
                 "--zones", "thon-1=Thôn Một,thon-2=Thôn Hai", "--fleet", str(fleet),
                 "--broker-host", "10.0.0.2", "--broker-port", "1884",
                 "--mosquitto-dir", str(broker_dir)]) == 0
    doc = json.loads(fleet.read_text())
    assert doc["broker"] == {"host": "10.0.0.2", "port": 1884}
    assert [d["zone"] for d in doc["devices"]] == ["thon-1", "thon-2", "thon-1", "thon-2",
                                                   "thon-1"]
    assert {d["codec"] for d in doc["devices"]} == {"mp3", "adpcm"}
    for device in doc["devices"]:
        assert len(key_from_hex(device["key"])) == 32 and device["mqtt_password"]
    passwd = (broker_dir / "passwd").read_text()
    assert all(d["mqtt_user"] + ":$7$" in passwd for d in doc["devices"])
    assert all(d["mqtt_password"] not in passwd for d in doc["devices"])
    assert "pattern write loaxa/v1/+/dev/%u/evt" in (broker_dir / "acl").read_text()
    # a second run adds receivers with new ids
    assert main(["--data-dir", str(data), "provision", "--receivers", "2", "--zones", "thon-1",
                 "--fleet", str(tmp_path / "more.json")]) == 0
    more = json.loads((tmp_path / "more.json").read_text())["devices"]
    assert not {d["id"] for d in more} & {d["id"] for d in doc["devices"]}


def test_provision_sets_how_the_amplifiers_are_held_in_every_receivers_config(tmp_path,
                                                                               capsys):
    from firmware import config as receiver

    data, configs = tmp_path / "var", tmp_path / "configs"
    base = ["--data-dir", str(data), "provision", "--receivers", "2", "--zones", "thon-1",
            "--fleet", str(tmp_path / "fleet.json"), "--config-dir", str(configs)]
    assert main(base + ["--amp-hold", "5am-10pm"]) == 2
    assert main(base + ["--amp-hold", "standby", "--amp-mute-pin", "7"]) == 2  # a flash line
    assert "amp_hold must be" in capsys.readouterr().err
    assert not configs.exists()  # nothing provisioned by a refused call
    assert main(base + ["--amp-hold", "05:00-22:00", "--amp-mute-pin", "21"]) == 0
    for path in sorted(configs.glob("*.json")):
        doc = json.loads(path.read_text())
        doc["link"] = {"type": "wifi", "ssid": "cot-loa", "password": "mat-khau-wifi"}
        cfg = receiver.validate(receiver.merge(receiver.DEFAULTS, doc))  # as the board reads it
        assert receiver.amp_standby(cfg) == (5 * 60, 22 * 60) and receiver.has_amp_mute(cfg)
        assert cfg["pins"]["amp"] == 25  # the other pins keep their defaults


def test_create_user_refuses_a_duplicate_unless_asked_to_update(tmp_path, capsys):
    data = str(tmp_path / "var")
    assert main(["--data-dir", data, "create-user", "lan", "--role", "operator",
                 "--password", "mat-khau-dai"]) == 0
    assert main(["--data-dir", data, "create-user", "lan", "--password", "khac-hoan-toan"]) == 1
    assert main(["--data-dir", data, "create-user", "lan", "--update", "--role", "admin"]) == 0
    assert "password:" in capsys.readouterr().out  # a generated one is printed once


def test_serve_starts_and_stops_cleanly_on_ctrl_c(tmp_path, mosquitto_broker):
    server = HeadendProcess(tmp_path / "var", mqtt=(mosquitto_broker.host, mosquitto_broker.port))
    server.start()
    assert server.running
    server.stop()
    assert server.returncode == 0, server.log_text()
    assert "Traceback" not in server.log_text()


def test_production_without_secrets_refuses_to_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOAXA_ENVIRONMENT", "production")
    assert main(["--data-dir", str(tmp_path), "migrate"]) == 2
    assert "LOAXA_SECRET_KEY" in capsys.readouterr().err
