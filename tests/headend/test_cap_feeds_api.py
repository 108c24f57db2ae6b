"""The CAP feeds over the API (/api/v1/cap/feeds, /api/v1/cap/sources): readers see each
feed's health, an admin adds, pauses, changes and removes feeds, an operator asks for a read
now, which the real poller (poll_due, as the thread runs it) then does against a real HTTP
server on 127.0.0.1; every other role is refused."""

from datetime import UTC, datetime, timedelta

import pytest
import test_cap_feeds
from cap_server import Route
from conftest import PASSWORD, login
from test_cap_feeds import alerts, atom, moderate

from headend.services.cap_feeds import poll_due
from headend.services.users import create_user

# Fixtures shared with the feeds' own tests (the SQLite file only).
cap_http_server = test_cap_feeds.cap_http_server
village = test_cap_feeds.village
source_key = test_cap_feeds.source_key
database_url = test_cap_feeds.database_url


@pytest.fixture
def roles(client, users, session):
    for role in ("editor", "leader"):
        create_user(session, username=role, password=PASSWORD, role=role)
    return {role: login(client, role) for role in
            ("admin", "operator", "technician", "viewer", "editor", "leader")}


def new_feed(client, headers, server, **fields):
    body = {"id": "kttv-atom", "url": server.url("/atom.xml"), "source": "kttv-nb",
            "interval_s": 60}
    body.update(fields)
    return client.post("/api/v1/cap/feeds", json=body, headers=headers)


def test_an_admin_adds_a_feed_an_operator_reads_it_now_and_the_poller_takes_it(
        client, app, session, village, source_key, roles, cap_http_server):
    cap_http_server.routes["/cap/1.xml"] = Route(moderate("KTTV-NB-0101"))
    cap_http_server.routes["/atom.xml"] = Route(atom(
        ("urn:1", "2026-12-03T01:00:00Z", "/cap/1.xml", None)))
    r = new_feed(client, roles["admin"], cap_http_server)
    assert r.status_code == 201, r.text
    feed = r.json()
    assert (feed["active"], feed["failures"], feed["last_polled_at"]) == (True, 0, None)
    # Every reader sees it and its source (never the source's key).
    for headers in roles.values():
        listed = client.get("/api/v1/cap/feeds", headers=headers)
        assert listed.status_code == 200 and [f["id"] for f in listed.json()] == ["kttv-atom"]
    sources = client.get("/api/v1/cap/sources", headers=roles["viewer"]).json()
    assert [(s["id"], s["auth"]) for s in sources] == [("kttv-nb", "api-key")]
    assert not any("key" in name for name in sources[0] if name != "id")
    # Polled by the poller as it runs: the alert is in, the feed healthy.
    poll_due(session, settings=app.state.settings, publisher=app.state.publisher)
    assert alerts(session)["KTTV-NB-0101"][0] == "queued"
    got = client.get("/api/v1/cap/feeds/kttv-atom", headers=roles["viewer"]).json()
    assert got["last_ok_at"] and got["next_poll_at"] and got["last_error"] is None
    # Not due for a minute; an operator's "read now" makes it due at once.
    cap_http_server.routes["/cap/2.xml"] = Route(moderate("KTTV-NB-0102"))
    cap_http_server.routes["/atom.xml"] = Route(atom(
        ("urn:2", "2026-12-03T02:00:00Z", "/cap/2.xml", None),
        ("urn:1", "2026-12-03T01:00:00Z", "/cap/1.xml", None)))
    assert poll_due(session, settings=app.state.settings, publisher=app.state.publisher) == {}
    r = client.post("/api/v1/cap/feeds/kttv-atom/poll", headers=roles["operator"])
    assert r.status_code == 202, r.text
    session.expire_all()
    assert set(poll_due(session, settings=app.state.settings,
                        publisher=app.state.publisher)) == {"kttv-atom"}
    assert alerts(session)["KTTV-NB-0102"][0] == "queued"


def test_a_failing_feed_says_why_and_a_paused_one_is_not_read(
        client, app, session, village, source_key, roles, cap_http_server):
    admin = roles["admin"]
    assert new_feed(client, admin, cap_http_server, url=cap_http_server.url("/gone.xml"),
                    interval_s=10).status_code == 201
    poll_due(session, settings=app.state.settings, publisher=app.state.publisher)
    got = client.get("/api/v1/cap/feeds/kttv-atom", headers=roles["viewer"]).json()
    assert got["failures"] == 1 and "404" in got["last_error"]
    # Paused: never due, and "read now" says so; resumed: due at once, failures cleared.
    r = client.patch("/api/v1/cap/feeds/kttv-atom", headers=admin, json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    later = datetime.now(UTC) + timedelta(hours=2)
    assert poll_due(session, settings=app.state.settings, publisher=app.state.publisher,
                    now=later) == {}
    r = client.post("/api/v1/cap/feeds/kttv-atom/poll", headers=roles["operator"])
    assert r.status_code == 422 and r.json()["code"] == "feed-paused"
    assert "tạm dừng" in r.json()["message_vi"]
    r = client.patch("/api/v1/cap/feeds/kttv-atom", headers=admin,
                     json={"active": True, "url": cap_http_server.url("/atom.xml"),
                           "interval_s": 120})
    assert r.status_code == 200, r.text
    assert (r.json()["failures"], r.json()["interval_s"], r.json()["next_poll_at"]) == (
        0, 120, None)
    audit = client.get("/api/v1/audit", headers=admin).json()
    actions = [e["action"] for e in (audit["items"] if isinstance(audit, dict) else audit)]
    assert {"cap-feed.create", "cap-feed.update"} <= set(actions)
    assert "cap-feed.poll" not in actions  # refused while paused: nothing done
    r = client.delete("/api/v1/cap/feeds/kttv-atom", headers=admin)
    assert r.status_code == 204
    assert client.get("/api/v1/cap/feeds/kttv-atom", headers=admin).status_code == 404


@pytest.mark.parametrize("fields,code", [
    ({"url": "ftp://kttv.example/feed"}, "bad-feed-url"),
    ({"url": "http://kttv.example/a b"}, "bad-feed-url"),
    ({"interval_s": 1}, "bad-feed-interval"),
    ({"interval_s": "60"}, "bad-feed-interval"),
    ({"interval_s": True}, "bad-feed-interval"),
    ({"id": "no spaces"}, "bad-feed-id"),
    ({"source": "nobody"}, "unknown-cap-source"),
])
def test_a_bad_feed_is_refused_by_name(client, village, source_key, roles, cap_http_server,
                                       fields, code):
    r = new_feed(client, roles["admin"], cap_http_server, **fields)
    assert 400 <= r.status_code < 500 and r.json()["code"] == code, r.text
    assert r.json()["message_vi"]
    assert client.get("/api/v1/cap/feeds", headers=roles["admin"]).json() == []


def test_only_an_admin_manages_feeds_and_an_operator_or_admin_reads_one_now(
        client, village, source_key, roles, cap_http_server):
    assert new_feed(client, roles["admin"], cap_http_server).status_code == 201
    assert new_feed(client, roles["admin"], cap_http_server).status_code == 409
    for role in ("operator", "technician", "viewer", "editor", "leader"):
        headers = roles[role]
        assert new_feed(client, headers, cap_http_server, id="x-" + role).status_code == 403
        assert client.patch("/api/v1/cap/feeds/kttv-atom", headers=headers,
                            json={"active": False}).status_code == 403
        assert client.delete("/api/v1/cap/feeds/kttv-atom", headers=headers).status_code == 403
        expected = 202 if role == "operator" else 403
        assert client.post("/api/v1/cap/feeds/kttv-atom/poll",
                           headers=headers).status_code == expected, role
    assert client.post("/api/v1/cap/feeds/kttv-atom/poll",
                       headers=roles["admin"]).status_code == 202
    assert client.get("/api/v1/cap/feeds").status_code == 401
