"""/metrics for Prometheus: it parses with prometheus-client's own parser, moves when receivers
go offline (with the reason), shows command latency from the receivers' acks, and is not open
to anyone without a token."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.headend.conftest import login

METRICS_TOKEN = "scrape-token-for-prometheus-0123456789"


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"metrics_token": METRICS_TOKEN})


def scrape(commune, headers=None):
    r = commune.client.get("/metrics", headers=headers if headers is not None else
                           {"Authorization": "Bearer " + METRICS_TOKEN})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def receivers(samples, zone, state):
    return samples.get(("loaxa_receivers", (("state", state), ("zone", zone))), 0)


def test_metrics_move_when_receivers_come_and_go(commune):
    before = scrape(commune)
    assert receivers(before, "thon-1", "offline") == 3 and receivers(before, "thon-1", "online") == 0
    assert before[("loaxa_receivers_offline", (("reason", "never-seen"),))] == 5
    commune.report(*(commune.birth(d) for d in ("a1", "a2", "b1")))
    online = scrape(commune)
    assert receivers(online, "thon-1", "online") == 2 and receivers(online, "thon-2", "online") == 1
    commune.report(commune.death("a1"))
    after = scrape(commune)
    assert receivers(after, "thon-1", "online") == 1 and receivers(after, "thon-1", "offline") == 2
    assert after[("loaxa_receivers_offline", (("reason", "link-lost"),))] == 1
    assert after[("loaxa_mqtt_connected", ())] == 0  # this app runs without its MQTT side
    assert after[("loaxa_clock_trusted", ())] == 1


def test_command_latency_comes_from_the_receivers_acks(commune):
    commune.report(commune.birth("a1"))
    media = commune.upload()
    r = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
        "media_id": media["id"], "targets": {"devices": ["a1"]}})
    assert r.status_code == 201, r.text
    assert scrape(commune)[("loaxa_commands_acked_recent", ())] == 0
    (play,) = [c for c in commune.commands_to("a1") if c["k"] == "play"]
    commune.report(commune.event("a1", "ack", cmd=play["id"], ok=True))
    samples = scrape(commune)
    assert samples[("loaxa_commands_acked_recent", ())] == 1
    p99 = samples[("loaxa_command_ack_seconds", (("quantile", "0.99"),))]
    assert 0 <= p99 < 60


def test_metrics_need_a_token(commune, users):
    assert commune.client.get("/metrics").status_code == 401
    assert commune.client.get("/metrics", headers={
        "Authorization": "Bearer not-the-token"}).status_code == 401
    viewer = login(commune.client, "viewer")
    assert ("loaxa_receivers_offline", (("reason", "never-seen"),)) in scrape(commune, viewer)


def test_the_grafana_dashboard_plots_only_metrics_the_head_end_exports(commune):
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json")
                           .read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"loaxa_[a-z_]+", target["expr"])}
    r = commune.client.get("/metrics", headers={"Authorization": "Bearer " + METRICS_TOKEN})
    exported = set()
    for family in text_string_to_metric_families(r.text):  # a family may have no sample yet
        exported |= {family.name, family.name + "_total"} if family.type == "counter" \
            else {family.name}
    assert used and used <= exported, used - exported


def test_open_alerts_are_counted_by_kind_and_reason(commune):
    from datetime import UTC, datetime

    from headend.services import alerts

    assert ("loaxa_alerts_open", (("kind", "offline"), ("reason", "link-lost"))) not in \
        scrape(commune)
    commune.report(commune.birth("a1"), commune.birth("a2"))
    commune.report(commune.death("a1"), commune.death("a2"))
    with commune.app.state.session_factory() as session:
        alerts.evaluate(session, settings=commune.app.state.settings,
                        device_ids=["a1", "a2"], now=datetime.now(UTC))
        session.commit()
    samples = scrape(commune)
    assert samples[("loaxa_alerts_open", (("kind", "offline"), ("reason", "link-lost")))] == 2
    assert samples[("loaxa_alert_notices_due", ())] == 0  # no channel configured
    assert samples[("loaxa_alerts_raised_total", ())] == 0  # counted by the MQTT service
