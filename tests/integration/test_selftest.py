"""The periodic test end to end (issue 12, "kiểm tra định kỳ"): the head-end as its own
process, a real Mosquitto, simulated receivers running the real firmware: one healthy, one with
a failed amplifier (its fault line active), one with a sink that fails, one never connected.
A technician runs the test through the HTTP API; the latest run lists the two failed ones with
their reasons, the one offline as no answer, and the healthy one passed after a quiet tone
with its relay on and off again."""

import asyncio

import httpx
import pytest
from polling import until
from site_setup import provision_site

from headend.process import HeadendProcess
from simulator.fleet import Fleet

pytestmark = pytest.mark.integration

SITE = "xa-selftest"
PASSWORD = "selftest-tech-pass"


async def test_a_run_lists_the_failed_amplifier_and_sink_and_the_offline_receiver(
        tmp_path, mosquitto_broker):
    broker = mosquitto_broker
    specs = provision_site(tmp_path / "headend", broker, site=SITE, receivers=4,
                           zones=[("thon-1", "Thôn 1")], prefix="r-",
                           users=[("ky-thuat", "technician")], password=PASSWORD)
    healthy, no_amp, no_sink, offline = [s.id for s in specs]

    server = HeadendProcess(tmp_path / "headend", mqtt=(broker.host, broker.port),
                            env={"LOAXA_SITE_ID": SITE})
    fleet = Fleet(specs[:3], site=SITE, broker=(broker.host, broker.port),
                  workdir=str(tmp_path / "boards"))
    fleet[no_amp].platform.amp_fault = True               # the amplifier module reports a fault
    fleet[no_sink].sink.selftest_error = "vs1053: DREQ stuck low"
    await asyncio.to_thread(server.start)
    http = httpx.AsyncClient(base_url=server.url, timeout=10)

    def log():
        return server.log_text()[-2000:]

    async def online_ids():
        r = await http.get("/api/v1/devices", headers=headers)
        return {d["id"] for d in r.json() if d["online"]}

    async def latest():
        r = await http.get("/api/v1/selftest", headers=headers)
        return r.json() if r.status_code == 200 else None

    async def answered():
        body = await latest()
        return body is not None and body["complete"]

    try:
        r = await http.post("/api/v1/auth/token",
                            data={"username": "ky-thuat", "password": PASSWORD})
        headers = {"Authorization": "Bearer " + r.json()["access_token"]}
        await fleet.start()

        async def all_online():
            return await online_ids() == {healthy, no_amp, no_sink}

        await until(all_online, 30, "three receivers online at the head-end", log)
        await until(lambda: all(fleet[d].receiver.core.synced and fleet[d].receiver.mqtt
                                .connected for d in (healthy, no_amp, no_sink)), 20,
                    "their clocks synced", log)

        r = await http.post("/api/v1/selftest", headers=headers)
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        await until(answered, 30, "every receiver online answered", log)
        body = await latest()
        assert body["id"] == run_id
        states = {x["device_id"]: (x["state"], x["reason"]) for x in body["receivers"]}
        assert states == {healthy: ("passed", None), no_amp: ("failed", "amp-fault"),
                          no_sink: ("failed", "sink"), offline: ("no-answer", "offline")}
        detail = {x["device_id"]: x["result"] for x in body["receivers"]}
        assert detail[no_sink]["detail"] == "vs1053: DREQ stuck low"
        assert detail[healthy]["relay"] is True and detail[healthy]["synced"] is True
        assert detail[healthy]["flash"] > 0

        # The healthy board: one quiet tone (-30 dBFS, 1 s), the relay on for it, then off.
        sim = fleet[healthy]
        assert [(lvl, ms) for _, lvl, ms in sim.sink.selftests] == [(-30, 1000)]
        assert [on for _, on in sim.platform.amp_changes] == [True, False]
        assert not sim.platform.amp_on and not sim.sink.playbacks  # nothing else played
        assert not fleet.crashed()
    finally:
        await fleet.stop()
        await http.aclose()
        await asyncio.to_thread(server.stop)
