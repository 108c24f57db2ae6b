"""``/api/v1/firmware``: uploaded bundles checked whole and kept, served to receivers over the
media HTTP with Range, and rolled out as signed ``update`` commands whose per-receiver progress
comes from what the receivers report (acks, ``update`` events, births)."""

import hashlib
import io
import json
import tarfile

from conftest import login
from ota_bundles import bundle_tar, make_bundle

from protocol import messages


def upload(client, headers, data, name="loaxa-firmware-0.2.0.tar"):
    return client.post("/api/v1/firmware", files={"file": (name, data, "application/x-tar")},
                       headers=headers)


def retar(data, change):
    """The tar ``data`` with ``change(name, bytes)`` applied to each file (None drops it), and
    an extra file when ``change`` is given one for the name "extra"."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, \
            tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            blob = src.extractfile(member).read() if member.isfile() else None
            if blob is not None:
                blob = change(member.name, blob)
                if blob is None:
                    continue
                member.size = len(blob)
            dst.addfile(member, io.BytesIO(blob) if blob is not None else None)
        extra = change("extra", None)
        if extra is not None:
            info = tarfile.TarInfo("files/lib/extra.py")
            info.size = len(extra)
            dst.addfile(info, io.BytesIO(extra))
    return out.getvalue()


def test_a_bundle_is_checked_whole_stored_and_served_with_range(client, as_admin, tmp_path,
                                                                 users):
    args = make_bundle(tmp_path / "www", "0.2.0")
    tar = bundle_tar(tmp_path / "www", "0.2.0")
    r = upload(client, as_admin, tar)
    assert r.status_code == 201, r.text
    stored = r.json()
    assert (stored["version"], stored["manifest_sha256"], stored["manifest_size"],
            stored["total_size"]) == ("0.2.0", args["man"], args["msize"], args["total"])
    assert upload(client, as_admin, tar).status_code == 201  # the same again: no change
    assert [b["version"] for b in client.get("/api/v1/firmware", headers=as_admin).json()] == [
        "0.2.0"]
    manifest = client.get("/firmware/0.2.0/manifest.json")
    assert manifest.status_code == 200
    assert hashlib.sha256(manifest.content).hexdigest() == args["man"]
    entry = [e for e in json.loads(manifest.content)["files"]
             if e["path"] == "/lib/firmware/core.py"][0]
    whole = client.get("/firmware/0.2.0/files/lib/firmware/core.py")
    assert hashlib.sha256(whole.content).hexdigest() == entry["sha256"]
    part = client.get("/firmware/0.2.0/files/lib/firmware/core.py",
                      headers={"Range": "bytes=1000-"})
    assert part.status_code == 206 and part.content == whole.content[1000:]
    for bad in ("/firmware/0.2.0/files/lib/%2E%2E/%2E%2E/manifest.json", "/firmware/..%2F/files/x",
                "/firmware/0.2.0/files/lib/nothing.py", "/firmware/0.9/manifest.json"):
        assert client.get(bad).status_code == 404, bad
    # Viewers may look, not upload.
    viewer = login(client, "viewer")
    assert upload(client, viewer, tar).status_code == 403
    assert client.get("/api/v1/firmware", headers=viewer).status_code == 200


def test_a_damaged_bundle_is_refused_with_the_reason(client, as_admin, tmp_path):
    make_bundle(tmp_path / "www", "0.2.0")
    tar = bundle_tar(tmp_path / "www", "0.2.0")

    def flip(name, blob):
        if name == "files/lib/firmware/core.py":
            return blob.replace(b"def ", b"def  ", 1)
        return blob

    cases = {
        "does not match its manifest hash": retar(tar, flip),
        "is in the manifest, not in the archive": retar(
            tar, lambda n, b: None if n == "files/lib/firmware/mqtt.py" else b),
        "is not in the manifest": retar(tar, lambda n, b: b"x = 1\n" if n == "extra" else b),
        "damaged or of another format": retar(
            tar, lambda n, b: b.replace(b'"0.2.0"', b'"0.2.1"') if n == "manifest.json" else b),
        "not a tar archive": b"not a tar at all",
    }
    for reason, data in cases.items():
        r = upload(client, as_admin, data)
        assert r.status_code == 422 and r.json()["code"] == "bad-bundle", (reason, r.text)
        assert reason in r.json()["detail"], (reason, r.json()["detail"])
        assert r.json()["message_vi"].startswith("Không phải gói phần mềm hợp lệ")
    assert client.get("/api/v1/firmware", headers=as_admin).json() == []


def test_a_rollout_signs_the_update_and_follows_each_receiver(client, commune, as_admin,
                                                               tmp_path):
    args = make_bundle(tmp_path / "www", "0.2.0")
    assert upload(client, as_admin, bundle_tar(tmp_path / "www", "0.2.0")).status_code == 201
    for device in ("a1", "a2", "a3"):
        commune.report(commune.birth(device))
    r = client.post("/api/v1/firmware/0.2.0/rollout", json={"devices": ["a1", "a2", "a3"]},
                    headers=as_admin)
    assert r.status_code == 202, r.text
    assert {p["device_id"]: p["state"] for p in r.json()} == {"a1": "sent", "a2": "sent",
                                                              "a3": "sent"}
    sent = {d: [c for c in commune.commands_to(d) if c["k"] == messages.UPDATE][0]
            for d in ("a1", "a2", "a3")}
    settings = commune.app.state.settings
    assert sent["a1"]["a"] == dict(args, url=settings.public_base_url + "/firmware/0.2.0")
    # a1 takes it and comes back on the new version; a2 refuses (playing); a3 tries it and
    # rolls back.
    commune.report(commune.event("a1", messages.EV_ACK, cmd=sent["a1"]["id"], ok=True),
                   commune.event("a1", messages.EV_UPDATE, ver="0.2.0", ok=True),
                   commune.event("a2", messages.EV_ACK, cmd=sent["a2"]["id"], ok=False,
                                 reason="busy"),
                   commune.event("a3", messages.EV_UPDATE, ver="0.2.0", ok=True))
    states = {p["device_id"]: (p["state"], p["reason"])
              for p in client.get("/api/v1/firmware/0.2.0/rollout", headers=as_admin).json()}
    assert states == {"a1": ("staged", None), "a2": ("refused", "busy"),
                      "a3": ("staged", None)}
    trial = messages.birth("a1", 2, 1, "0.2.0", {"codecs": ["mp3"]}, "sim",
                           {"ota": "trial", "ota_ver": "0.2.0"})
    back = messages.birth("a3", 5, 1, "0.1.0", {"codecs": ["mp3"]}, "sim",
                          {"ota": "rolled-back", "ota_ver": "0.2.0", "ota_why": "crash-loop"})
    commune.report(commune.sealed("status", "a1", trial), commune.sealed("status", "a3", back))
    states = {p["device_id"]: (p["state"], p["reason"], p["firmware"])
              for p in client.get("/api/v1/firmware/0.2.0/rollout", headers=as_admin).json()}
    assert states["a1"] == ("trial", None, "0.2.0")
    assert states["a3"] == ("rolled-back", "crash-loop", "0.1.0")
    updated = messages.birth("a1", 3, 1, "0.2.0", {"codecs": ["mp3"]}, "sim",
                             {"ota": "updated", "ota_ver": "0.2.0"})
    commune.report(commune.sealed("status", "a1", updated))
    progress = client.get("/api/v1/firmware/0.2.0/rollout", headers=as_admin).json()
    assert [p["state"] for p in progress if p["device_id"] == "a1"] == ["updated"]
    # Unknown versions and receivers are clear errors.
    assert client.post("/api/v1/firmware/9.9/rollout", json={"devices": ["a1"]},
                       headers=as_admin).json()["code"] == "unknown-firmware"
    assert client.post("/api/v1/firmware/0.2.0/rollout", json={"devices": ["zz"]},
                       headers=as_admin).json()["code"] == "unknown-device"


def uploaded(client, commune, headers, tmp_path):
    """Bundle 0.2.0 uploaded; the sweep's step of the waves (``advance()``), to call."""
    from headend.services import firmware

    make_bundle(tmp_path / "www", "0.2.0")
    assert upload(client, headers, bundle_tar(tmp_path / "www", "0.2.0")).status_code == 201
    app = commune.app

    def advance():
        with app.state.session_factory() as session:
            firmware.advance(session, settings=app.state.settings, publisher=commune.publisher)

    return advance


def test_waves_go_canary_village_commune_and_pause_on_the_first_failure(client, commune,
                                                                       as_admin, tmp_path):
    advance = uploaded(client, commune, as_admin, tmp_path)

    def update_birth(device, boot, fw, **ota_fields):
        body = messages.birth(device, boot, 1, fw, {"codecs": ["mp3"]}, "sim", ota_fields)
        return commune.sealed("status", device, body)

    def sent_updates():
        return sorted(d for d in ("a1", "a2", "a3", "b1", "b2")
                      if any(c["k"] == messages.UPDATE for c in commune.commands_to(d)))

    r = client.post("/api/v1/firmware/0.2.0/waves", json={"canary": "a2"}, headers=as_admin)
    assert r.status_code == 202, r.text
    plan = r.json()
    assert plan["waves"] == [["a2"], ["a1", "a3"], ["b1", "b2"]] and plan["state"] == "running"
    assert sent_updates() == ["a2"]
    # Another rollout waits for this one.
    assert client.post("/api/v1/firmware/0.2.0/waves", json={},
                       headers=as_admin).json()["code"] == "rollout-running"
    # The canary on trial is not enough; updated, the village follows.
    commune.report(update_birth("a2", 2, "0.2.0", ota="trial", ota_ver="0.2.0"))
    advance()
    assert sent_updates() == ["a2"]
    commune.report(update_birth("a2", 2, "0.2.0", ota="updated", ota_ver="0.2.0"))
    advance()
    assert sent_updates() == ["a1", "a2", "a3"]
    # a3 rolls back: the plan pauses there, the commune is not sent anything.
    commune.report(update_birth("a1", 2, "0.2.0", ota="updated", ota_ver="0.2.0"),
                   update_birth("a3", 3, "0.1.0", ota="rolled-back", ota_ver="0.2.0",
                                ota_why="no-broker"))
    advance()
    advance()
    assert sent_updates() == ["a1", "a2", "a3"]
    shown = client.get("/api/v1/firmware/0.2.0/waves", headers=as_admin).json()[0]
    assert (shown["state"], shown["wave"], shown["reason"]) == (
        "paused", 1, "a3: rolled-back (no-broker)")
    assert {p["device_id"]: p["state"] for p in shown["receivers"]} == {
        "a1": "updated", "a2": "updated", "a3": "rolled-back"}
    # Viewers see it; a technician resumes it with the next wave.
    assert client.get("/api/v1/firmware/0.2.0/waves",
                      headers=login(client, "viewer")).status_code == 200
    r = client.post("/api/v1/firmware/waves/%d/resume" % plan["id"], headers=as_admin)
    assert r.status_code == 200 and r.json()["state"] == "running", r.text
    assert sent_updates() == ["a1", "a2", "a3", "b1", "b2"]
    commune.report(update_birth("b1", 2, "0.2.0", ota="updated", ota_ver="0.2.0"),
                   update_birth("b2", 2, "0.2.0", ota="updated", ota_ver="0.2.0"))
    advance()
    assert client.get("/api/v1/firmware/0.2.0/waves",
                      headers=as_admin).json()[0]["state"] == "done"
    assert client.post("/api/v1/firmware/waves/%d/resume" % plan["id"],
                       headers=as_admin).json()["code"] == "not-paused"


def test_a_wave_sends_the_update_again_to_a_receiver_that_was_offline(client, commune,
                                                                    as_admin, tmp_path,
                                                                    monkeypatch):
    advance = uploaded(client, commune, as_admin, tmp_path)

    def updates_to(device):
        return [c for c in commune.commands_to(device) if c["k"] == messages.UPDATE]

    r = client.post("/api/v1/firmware/0.2.0/waves", json={"waves": [["b1"], ["b2"]]},
                    headers=as_admin)
    assert r.status_code == 202, r.text
    assert len(updates_to("b1")) == 1  # b1 is offline: it will never see this one
    advance()
    assert len(updates_to("b1")) == 1  # still offline: nothing to do
    monkeypatch.setattr(commune.app.state.settings, "command_ttl_s", 0)  # the first expired
    commune.report(commune.birth("b1"))
    advance()
    assert len(updates_to("b1")) == 2 and not updates_to("b2")
    progress = client.get("/api/v1/firmware/0.2.0/rollout", headers=as_admin).json()
    assert [(p["device_id"], p["command_id"]) for p in progress] == [
        ("b1", updates_to("b1")[1]["id"])]
    # Refused because it was playing: not a failure; asked again later, the plan runs on.
    commune.report(commune.event("b1", messages.EV_ACK, cmd=updates_to("b1")[1]["id"],
                                 ok=False, reason="busy"))
    advance()
    assert len(updates_to("b1")) == 2
    monkeypatch.setattr("headend.services.firmware.BUSY_RETRY_S", 0)
    advance()
    assert len(updates_to("b1")) == 3
    assert client.get("/api/v1/firmware/0.2.0/waves",
                      headers=as_admin).json()[0]["state"] == "running"
