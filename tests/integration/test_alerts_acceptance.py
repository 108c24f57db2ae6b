"""Issue 14 acceptance 1, end to end: the head-end as its own process, real Mosquitto, the
real firmware on simulated boards, a local SMTP server (aiosmtpd) and a local webhook.

One receiver's mains fails and its battery drains until the board dies (simulator/fleet.py
``fail_mains``: the DC falls 0.025 V/s from 12.7 V, the board dies at 10.9 V, ~72 s later):
it is "on battery", then "offline: power lost". Another's link is cut: "offline: link lost"
within 45 s (its heartbeat period is the Wi-Fi default, 30 s). Each alert reaches the SMTP
sink and the webhook exactly once, and each is cleared, with a notice, when its receiver
returns. A third receiver, left alone, has no alert.
"""

import asyncio
import time
from collections import Counter

import pytest
from alert_sinks import SmtpSink, Webhook
from test_headend_acceptance import Station

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~3 min: batteries drain slowly

NOTICE_WITHIN_S = 45  # protocol/presence.py NOTICE_WITHIN_S, the Wi-Fi promise
RECIPIENT = "truong-dai@xa-accept.vn"


@pytest.fixture
def sinks():
    smtp, hook = SmtpSink(), Webhook()
    yield smtp, hook
    smtp.close()
    hook.close()


async def test_offline_with_the_reason_by_email_and_webhook_once(tmp_path, mosquitto_broker,
                                                                sinks):
    smtp, hook = sinks
    env = {"LOAXA_ALERT_SMTP_HOST": "127.0.0.1", "LOAXA_ALERT_SMTP_PORT": str(smtp.port),
           "LOAXA_ALERT_SMTP_STARTTLS": "false", "LOAXA_ALERT_EMAIL_TO": '["%s"]' % RECIPIENT,
           "LOAXA_ALERT_WEBHOOK_URL": hook.url, "LOAXA_ALERT_CHECK_S": "1",
           # No quiet hours: the test may run at any hour of the commune's night.
           "LOAXA_ALERT_QUIET_START": "00:00", "LOAXA_ALERT_QUIET_END": "00:00"}
    async with Station(tmp_path, mosquitto_broker, {"thon-1": 3}, env=env) as st:
        powered, linked, calm = st.zones["thon-1"]

        async def open_alerts():
            return {(a["device_id"], a["kind"], a["reason"])
                    for a in await st.get("/api/v1/alerts", open="true")}

        async def has(*wanted):
            found = await open_alerts()
            return all(w in found for w in wanted)

        st.fleet.fail_mains(powered, battery_v=12.7, drain_v_per_s=0.025, cutoff_v=10.9)
        cut = time.monotonic()
        st.fleet.cut(linked)
        await st.until(lambda: has((linked, "offline", "link-lost")), NOTICE_WITHIN_S,
                       "offline: link lost")
        assert time.monotonic() - cut <= NOTICE_WITHIN_S
        await st.until(lambda: has((powered, "on-battery", None)), 40, "on battery")
        await st.until(lambda: has((powered, "offline", "power-lost")), 170,
                       "offline: power lost")
        assert st.fleet[powered].receiver is None  # its battery ran out: the board is dead
        assert await open_alerts() == {(linked, "offline", "link-lost"),
                                       (powered, "on-battery", None),
                                       (powered, "offline", "power-lost")}
        await st.until(lambda: len(smtp.messages) >= 3 and len(hook.posts) >= 3, 20,
                       "three notices by e-mail and webhook")

        st.fleet.restore(linked)
        st.fleet.restore_mains(powered)
        # Offline is over at the birth; on battery at the first heartbeat of the new boot.
        await st.until(lambda: _no_open(st), 90, "every alert over")
        await st.until(lambda: len(smtp.messages) >= 6 and len(hook.posts) >= 6, 20,
                       "three 'over' notices by e-mail and webhook")
        await asyncio.sleep(3)  # a duplicate would have come by now (the check is 1 s)
        assert not st.fleet.crashed()

    posts = hook.bodies()
    # Exactly once each: three alerts raised, the same three over.
    events = Counter((p["alert"]["id"], p["event"]) for p in posts)
    assert len(posts) == 6 and set(events.values()) == {1}, events
    raised = {(p["alert"]["device_id"], p["alert"]["kind"], p["alert"]["reason"])
              for p in posts if p["event"] == "raised"}
    assert raised == {(linked, "offline", "link-lost"), (powered, "on-battery", None),
                      (powered, "offline", "power-lost")}
    assert {p["alert"]["id"] for p in posts if p["event"] == "cleared"} == \
        {p["alert"]["id"] for p in posts if p["event"] == "raised"}
    assert all(p["alert"]["device_id"] != calm for p in posts)
    power_lost = next(p for p in posts if p["alert"]["reason"] == "power-lost")
    assert power_lost["text_vi"].startswith("Cảnh báo: Mất kết nối: mất điện")
    assert "Offline: power lost" in power_lost["text_en"]
    # The e-mails: one per notice, to the recipient, Vietnamese first.
    subjects = Counter(m["Subject"] for _, m in smtp.messages)
    assert len(smtp.messages) == 6 and set(subjects.values()) == {1}, subjects
    assert all(rcpt == [RECIPIENT] for rcpt, _ in smtp.messages)
    ids = Counter(m["X-Loaxa-Alert"] for _, m in smtp.messages)
    assert set(ids.values()) == {1} and len(ids) == 6
    body = next(m for _, m in smtp.messages
                if "mất điện" in m["Subject"]).get_content()
    assert body.index("Mất kết nối") < body.index("-- English --") < body.index("power lost")


async def _no_open(st):
    return await st.get("/api/v1/alerts", open="true") == []
