"""Issue 12 acceptance 2: an Actual CAP alert reaches the receivers whose links are cut at the
time when they come back while it is current, and not after its cancel or its expiry.

The head-end as its own process (the real speech engine and ffmpeg make the alert's audio),
real Mosquitto, simulated receivers running the real firmware (test_headend_acceptance's
Station); the alert comes from a warning source by its API key, as a province's would. What a
receiver played is read from its recording sink.

Two ways a link is cut: "drop" (the broker sees the connection end: the head-end knows the
receiver is offline and sends nothing) and "blackhole" (the head-end still thinks it online for
up to 42 s: the play is sent, never acked, and re-sent by the escalation sweep).
"""

import asyncio
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_headend_acceptance import SITE, Station, _offline, _online

from headend.db import make_engine, make_session_factory
from headend.services import cap_alerts
from headend.services.users import create_user
from headend.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "headend"))
from cap_messages import SENDER, cap_alert, cap_area, cap_info, reference_to  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow,  # ~90 s: make test-slow
              pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                 reason="needs espeak-ng (make setup)")]

ZONE = "thon-1"
GEOCODE = ("vn-thon", "ninh-hai-1")
PASSWORD = "admin-pass-12"


def cap_time(at: datetime) -> str:
    return (at.astimezone(UTC) + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M:%S+07:00")


def alert(identifier: str, *, sent: str, expires: datetime, msg_type="Alert",
          references=None) -> bytes:
    info = cap_info(expires=cap_time(expires), headline="Lũ quét",
                    description="Mưa lớn trên sông Ngô Đồng.", instruction="Lên vùng cao.",
                    areas=(cap_area("Thôn 1", geocodes=(GEOCODE,)),))
    return cap_alert(identifier=identifier, sent=sent, msg_type=msg_type, references=references, infos=(info,))


def source_and_admin(st) -> str:
    """A warning source (its API key, returned) and an admin, in the head-end's database."""
    settings = Settings(data_dir=st.tmp / "headend", site_id=SITE)
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        _, key = cap_alerts.add_source(session, source_id="kttv-nb", name="KTTV Ninh Bình",
                                       auth="api-key", senders=[SENDER])
        create_user(session, username="admin", password=PASSWORD, role="admin")
    engine.dispose()
    return key


async def test_a_cap_alert_reaches_returning_receivers_while_current_only(tmp_path,
                                                                          mosquitto_broker):
    station = Station(tmp_path, mosquitto_broker, {ZONE: 5})
    key = source_and_admin(station)
    async with station as st:
        r = await st.http.post("/api/v1/auth/token",
                               data={"username": "admin", "password": PASSWORD})
        admin = {"Authorization": "Bearer " + r.json()["access_token"]}
        r = await st.http.patch("/api/v1/zones/" + ZONE, headers=admin,
                                json={"area": {"geocodes": [list(GEOCODE)]}})
        assert r.status_code == 200, r.text
        stays, back_soon, back_late, silent, after_expiry = st.zones[ZONE]

        async def post(body):
            r = await st.http.post("/api/v1/cap", content=body, headers={
                cap_alerts.SOURCE_KEY_HEADER: key, "Content-Type": "application/xml"},
                timeout=60)
            assert r.status_code == 200, r.text
            return r.json()

        async def devices(bid):
            detail = await st.get("/api/v1/broadcasts/" + bid)
            return {d["id"]: d for d in detail["devices"]}

        # 1. Two links dropped (the head-end sees them go), one black-holed (it does not).
        for device in (back_soon, back_late):
            st.fleet.cut(device)
        await st.until(lambda: _offline(st, [back_soon, back_late]), 15,
                       "the dropped receivers offline at the head-end")
        st.fleet.cut(silent, mode="blackhole")
        sent = cap_time(datetime.now(UTC) - timedelta(seconds=5))
        answer = await post(alert("KTTV-NB-A2-1", sent=sent,
                                  expires=datetime.now(UTC) + timedelta(hours=1)))
        assert (answer["outcome"], answer["zones"]) == ("aired", [ZONE]), answer
        bid = answer["broadcast_id"]
        await st.until(lambda: st.played(stays, bid) and st.played(after_expiry, bid), 20,
                       "the alert on the receivers whose links are up")
        assert not st.played(back_soon, bid) and not st.played(silent, bid)
        state = await devices(bid)
        assert state[back_soon]["state"] == state[back_late]["state"] == "offline"

        # 2. The black-holed one never acks: re-sent by the escalation sweep after 10 s.
        await st.until(lambda: _resent(devices(bid), silent), 30,
                       "the unconfirmed receiver sent the alert again")
        assert (await devices(bid))[silent]["acked_at"] is None

        # 3. Back while it is current: they play it (from the start).
        st.fleet.restore(back_soon)
        st.fleet.restore(silent)
        await st.until(lambda: st.played(back_soon, bid) and st.played(silent, bid), 30,
                       "the returning receivers to play the current alert")
        assert len(st.played(back_soon, bid)) == 1 and len(st.played(silent, bid)) == 1

        # 4. The agency cancels it; a receiver back after the cancel does not play it.
        cancel = alert("KTTV-NB-A2-2", sent=cap_time(datetime.now(UTC)),
                       expires=datetime.now(UTC) + timedelta(hours=1), msg_type="Cancel",
                       references=reference_to("KTTV-NB-A2-1", sent=sent))
        answer = await post(cancel)
        assert answer["outcome"] == "aired" and answer["action"] == "stop", answer
        detail = await st.get("/api/v1/broadcasts/" + bid)
        assert detail["cancelled_by"] == "cap:kttv-nb"
        await st.until(lambda: all(st.played(d, bid)[-1].finished
                                   for d in (stays, back_soon, silent, after_expiry)), 10,
                       "the alert stopped everywhere")
        st.fleet.restore(back_late)
        await st.until(lambda: _online(st, [back_late]), 30, "the late receiver back")
        await asyncio.sleep(3.0)
        assert not st.played(back_late, bid)

        # 5. An alert that expires 25 s after it is sent: back before, it plays; after, not.
        for device in (back_soon, after_expiry):
            st.fleet.cut(device)
        await st.until(lambda: _offline(st, [back_soon, after_expiry]), 15,
                       "two receivers offline again")
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=25)
        answer = await post(alert("KTTV-NB-A2-3", sent=cap_time(datetime.now(UTC)),
                                  expires=expires))
        assert answer["outcome"] == "aired", answer
        short = answer["broadcast_id"]
        assert datetime.fromisoformat((await st.get("/api/v1/broadcasts/" + short))
                                      ["valid_until"]) == expires
        st.fleet.restore(back_soon)
        await st.until(lambda: st.played(back_soon, short), 20,
                       "a receiver back before the expiry to play it")
        await asyncio.sleep(max(0.0, expires.timestamp() - time.time()) + 1.0)
        st.fleet.restore(after_expiry)
        await st.until(lambda: _online(st, [after_expiry]), 30, "the receiver back after expiry")
        await asyncio.sleep(3.0)
        assert not st.played(after_expiry, short)
        assert st.played(stays, short)
        assert not st.fleet.crashed()


async def _resent(devices_coro, device):
    state = (await devices_coro)[device]
    return state["resends"] >= 1
