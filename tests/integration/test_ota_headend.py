"""Issue 13, acceptance 3 end to end: the head-end (its own process) keeps an uploaded bundle,
serves it over its media HTTP and rolls it out in waves to MicroPython receivers (one
ESP32-model process per board, a real Mosquitto). A bundle that crashes at boot takes the
canary down three times; the canary goes back by itself, its birth says why, and the rollout
pauses there: the village and the commune are never sent it. A good bundle then goes through
all three waves. Everything the technician does goes through the HTTP API.
"""

import asyncio

import httpx
import pytest
from ota_bundles import bundle_tar, make_bundle
from polling import until

from headend.db import make_engine, make_session_factory, migrate
from headend.process import HeadendProcess
from headend.services.provisioning import provision_fleet
from headend.services.users import create_user
from headend.settings import Settings
from simulator.fleet import DeviceSpec, Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "xa-ota"
PASSWORD = "ota-tech-pass"


def crash_at_boot(text):
    return text.replace('        cfg = configuration.validate(', '        raise RuntimeError('
                        '"this version crashes at boot")\n        cfg = configuration.validate(', 1)


async def test_a_wave_rollout_pauses_after_a_failing_canary(tmp_path, mosquitto_broker):
    from tools import mpbuild

    if mpbuild.esp32_model() is None:
        pytest.skip("no ESP32-model MicroPython: %s" % mpbuild.skip_reason())
    broker = mosquitto_broker
    settings = Settings(data_dir=tmp_path / "headend", site_id=SITE, mqtt_host=broker.host,
                        mqtt_port=broker.port)
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        made = provision_fleet(session, settings=settings, receivers=3,
                               zones=[("thon-1", "Thôn 1"), ("thon-2", "Thôn 2")], prefix="r-")
        create_user(session, username="tech", password=PASSWORD, role="technician")
    engine.dispose()
    specs = [DeviceSpec.from_json(d) for d in made["devices"]]
    ids = [s.id for s in specs]
    bad = make_bundle(tmp_path / "www", "0.3.0", {"firmware/shell.py": crash_at_boot})
    make_bundle(tmp_path / "www", "0.2.0")

    server = HeadendProcess(tmp_path / "headend", mqtt=(broker.host, broker.port),
                            env={"LOAXA_SITE_ID": SITE})
    server.env["LOAXA_PUBLIC_BASE_URL"] = server.url
    fleet = Fleet(specs, site=SITE, broker=(broker.host, broker.port),
                  workdir=str(tmp_path / "boards"), runtime="micropython")
    for sim in fleet:
        sim.reset_on_crash = True  # board/main.py: a crash resets the board
    await asyncio.to_thread(server.start)
    http = httpx.AsyncClient(base_url=server.url, timeout=20)

    def log():
        return server.log_text()[-3000:]

    async def devices():
        r = await http.get("/api/v1/devices", headers=headers)
        return {d["id"]: d for d in r.json()}

    async def plan(version):
        r = await http.get("/api/v1/firmware/%s/waves" % version, headers=headers)
        return r.json()[-1]

    async def upload(version):
        r = await http.post("/api/v1/firmware", headers=headers, files={
            "file": ("loaxa-firmware-%s.tar" % version, bundle_tar(tmp_path / "www", version),
                     "application/x-tar")})
        assert r.status_code == 201, r.text
        return r.json()

    try:
        r = await http.post("/api/v1/auth/token", data={"username": "tech", "password": PASSWORD})
        headers = {"Authorization": "Bearer " + r.json()["access_token"]}
        await fleet.start()

        async def all_online():
            found = await devices()
            return all(found[d]["online"] and found[d]["firmware"] == "0.1.0" for d in ids)

        await until(all_online, 60, "the receivers online on 0.1.0", log)
        await asyncio.sleep(2)  # their clocks synced (a command is judged on a synced clock)
        assert (await upload("0.3.0"))["manifest_sha256"] == bad["man"]

        # The bad bundle: the canary (r-01), then its village (r-03), then the commune (r-02).
        r = await http.post("/api/v1/firmware/0.3.0/waves", headers=headers,
                            json={"canary": ids[0]})
        assert r.status_code == 202, r.text
        assert r.json()["waves"] == [[ids[0]], [ids[2]], [ids[1]]]

        async def paused():
            return (await plan("0.3.0"))["state"] == "paused"

        await until(paused, 180, "the rollout paused on the canary", log)
        shown = await plan("0.3.0")
        assert shown["wave"] == 0
        assert shown["reason"] == "%s: rolled-back (crash-loop)" % ids[0]
        assert [(p["device_id"], p["state"], p["firmware"]) for p in shown["receivers"]] == [
            (ids[0], "rolled-back", "0.1.0")]
        assert len(fleet[ids[0]].boot_crashes) == 3  # it really ran the bad code
        found = await devices()
        assert all(found[d]["firmware"] == "0.1.0" and found[d]["online"] for d in ids)
        await asyncio.sleep(3)  # a few sweeps more: nothing goes to the village
        assert (await plan("0.3.0"))["state"] == "paused"
        assert all(not fleet[d].boot_crashes and fleet[d].boots == 1 for d in ids[1:])

        # The good bundle goes through every wave.
        await upload("0.2.0")
        r = await http.post("/api/v1/firmware/0.2.0/waves", headers=headers, json={})
        assert r.status_code == 202, r.text

        async def done():
            return (await plan("0.2.0"))["state"] == "done"

        await until(done, 240, "the good rollout done", log)
        shown = await plan("0.2.0")
        assert {p["device_id"]: p["state"] for p in shown["receivers"]} == {
            d: "updated" for d in ids}
        found = await devices()
        assert all(found[d]["firmware"] == "0.2.0" for d in ids)
    finally:
        await http.aclose()
        await fleet.stop()
        await asyncio.to_thread(server.stop)
