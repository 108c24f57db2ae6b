"""CAP feeds: an Atom feed linking to CAP documents and an RSS feed embedding them, served by
a real HTTP server on 127.0.0.1, polled into the real head-end (SQLite file): each item is
received once, as the feed's warning source, with conditional GET, and every failure (down,
slow, too large, hostile XML, not a feed) is logged, counted and backed off, never raised.

The alerts are Moderate (they wait for an operator: no speech engine needed) unless a test
needs one aired.
"""

import logging
import time
from datetime import timedelta
from xml.sax.saxutils import escape

import cap_server
import pytest
import test_cap_api
from cap_messages import SENDER
from cap_server import Route
from test_cap_api import NOW, alert
from test_cap_parse import BILLION_LAUGHS

from headend.cap.errors import CapError
from headend.cap.feed import MAX_FEED_BYTES, parse_feed
from headend.cap.parse import MAX_CAP_BYTES
from headend.cli import main
from headend.models import CapAlert, CapFeed, CapFeedItem
from headend.services import cap_alerts, cap_feeds
from headend.services.cap_feeds import CapFeedPoller, add_feed, backoff, poll_due, poll_feed

ATOM_NS = "http://www.w3.org/2005/Atom"
# Fixtures shared with the other CAP tests.
cap_http_server = cap_server.cap_http_server
village = test_cap_api.village
source_key = test_cap_api.source_key


@pytest.fixture
def database_url():
    return ""  # the SQLite file only


def atom(*entries):
    parts = []
    for entry_id, updated, href, embedded in entries:
        link = ('<link rel="alternate" type="application/cap+xml" href="%s"/>' % escape(href)
                if href else "")
        content = ('<content type="text/xml">%s</content>' % embedded.decode().split("?>", 1)[1]
                   if embedded else "")
        parts.append("<entry><id>%s</id><title>Cảnh báo</title><updated>%s</updated>%s%s"
                     "</entry>" % (entry_id, updated, link, content))
    return ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="%s"><title>KTTV Ninh Bình'
            '</title><id>urn:kttv-nb</id><updated>2026-12-03T00:00:00Z</updated>%s</feed>'
            % (ATOM_NS, "".join(parts))).encode("utf-8")


def rss(*items):
    parts = []
    for guid, link, embedded in items:
        body = embedded.decode().split("?>", 1)[1] if embedded else ""
        parts.append("<item><title>Cảnh báo</title><guid>%s</guid>%s%s</item>"
                     % (guid, "<link>%s</link>" % escape(link) if link else "", body))
    return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>KTTV'
            '</title><link>http://kttv.example/</link><description>CAP</description>%s'
            '</channel></rss>' % "".join(parts)).encode("utf-8")


def moderate(identifier, **fields):
    return alert(identifier, severity="Moderate", **fields)


# -- parsing ---------------------------------------------------------------------------------

def test_an_atom_feed_gives_its_entries_links_made_absolute_and_keyed_by_id_and_update():
    body = atom(("urn:1", "2026-12-03T01:00:00Z", "/cap/1.xml", None),
                ("urn:2", "2026-12-03T02:00:00Z", None, moderate("KTTV-NB-0002")),
                ("urn:3", "2026-12-03T03:00:00Z", "file:///etc/passwd", None))
    entries = parse_feed(body, "http://kttv.example/feeds/atom.xml")
    assert [(e.key, e.link) for e in entries] == [
        ("urn:1|2026-12-03T01:00:00Z", "http://kttv.example/cap/1.xml"),
        ("urn:2|2026-12-03T02:00:00Z", None)]  # a file:// link is no link: left out
    embedded = entries[1].embedded
    assert b"KTTV-NB-0002" in embedded and embedded.startswith(b"<?xml")
    # The embedded alert goes through the full CAP parser, schema included.
    from headend.cap.parse import parse_cap
    assert parse_cap(embedded).identifier == "KTTV-NB-0002"


def test_an_rss_feed_prefers_a_cap_enclosure_to_the_plain_link():
    body = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            b'<item><guid>g1</guid><link>http://kttv.example/page/1</link>'
            b'<enclosure url="/cap/1.xml" type="application/cap+xml" length="900"/>'
            b'<pubDate>Thu, 03 Dec 2026 01:00:00 GMT</pubDate></item>'
            b'<item><guid>g2</guid><link>http://kttv.example/cap/2.xml</link></item>'
            b'<item><guid>g3</guid></item></channel></rss>')
    entries = parse_feed(body, "http://kttv.example/rss")
    assert [(e.key, e.link) for e in entries] == [
        ("g1|Thu, 03 Dec 2026 01:00:00 GMT", "http://kttv.example/cap/1.xml"),
        ("g2", "http://kttv.example/cap/2.xml")]


@pytest.mark.parametrize("body, code", [
    (BILLION_LAUGHS.replace(b"<alert", b"<feed").replace(b"</alert>", b"</feed>")
     .replace(b"DOCTYPE alert", b"DOCTYPE feed"), "forbidden-xml"),
    (b'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "http://evil.example/x.dtd"><rss/>',
     "forbidden-xml"),
    (b"<feed xmlns='http://www.w3.org/2005/Atom'><entry>", "malformed"),
    (b"<html><body>not a feed</body></html>", "not-cap"),
    (b" ", "malformed"),
    (b"<rss>" + b" " * MAX_FEED_BYTES + b"</rss>", "too-large"),
])
def test_a_hostile_or_wrong_feed_is_refused_by_the_defused_parser(body, code):
    with pytest.raises(CapError) as refused:
        parse_feed(body, "http://kttv.example/")
    assert refused.value.code == code


# -- polling ---------------------------------------------------------------------------------

@pytest.fixture
def source(session, source_key):
    return "kttv-nb"


def feed_for(session, server, path, feed_id="kttv-atom", interval_s=60):
    return add_feed(session, feed_id=feed_id, url=server.url(path), source_id="kttv-nb",
                    interval_s=interval_s, actor="test")


def poll(app, session, feed_id, at=None):
    """Poll one feed now (whatever its next_poll_at), as the poller does."""
    session.expire_all()
    feed = session.get(CapFeed, feed_id)
    return poll_feed(session, settings=app.state.settings, publisher=app.state.publisher,
                     feed=feed, now=at)


def alerts(session):
    session.expire_all()
    return {row.identifier: (row.outcome, row.reason, row.source)
            for row in session.query(CapAlert)}


def test_an_atom_feed_of_links_and_an_rss_feed_of_embedded_alerts_are_received_once(
        village, source, session, app, cap_http_server):
    server = cap_http_server
    server.routes["/cap/1.xml"] = Route(moderate("KTTV-NB-0001"))
    server.routes["/cap/2.xml"] = Route(alert("KTTV-NB-0002", status="Test"))
    server.routes["/atom.xml"] = Route(atom(
        ("urn:kttv:2", "2026-12-03T02:00:00Z", "/cap/2.xml", None),
        ("urn:kttv:1", "2026-12-03T01:00:00Z", "/cap/1.xml", None)), etag='"v1"')
    server.routes["/rss.xml"] = Route(rss(("g3", None, moderate("KTTV-NB-0003"))),
                                      content_type="application/rss+xml")
    feed_for(session, server, "/atom.xml")
    feed_for(session, server, "/rss.xml", feed_id="kttv-rss")

    results = poll_due(session, settings=app.state.settings, publisher=app.state.publisher)
    assert {feed: result.status for feed, result in results.items()} == {
        "kttv-atom": "ok", "kttv-rss": "ok"}
    # Oldest first (an update after what it updates); each as the feed's source's post.
    assert [a["identifier"] for a in results["kttv-atom"].answers] == ["KTTV-NB-0001",
                                                                       "KTTV-NB-0002"]
    assert alerts(session) == {
        "KTTV-NB-0001": ("queued", "needs-confirmation", "kttv-nb"),
        "KTTV-NB-0002": ("logged", "status-test", "kttv-nb"),
        "KTTV-NB-0003": ("queued", "needs-confirmation", "kttv-nb")}
    assert village.publisher.sent == []  # nothing aired: they wait for an operator

    # Polled again before the interval: not due. Polled when due: a conditional GET, 304.
    assert poll_due(session, settings=app.state.settings, publisher=app.state.publisher) == {}
    fetched = len(server.requests)
    assert poll(app, session, "kttv-atom").status == "not-modified"
    path, headers = server.requests[-1]
    assert (path, headers.get("If-None-Match")) == ("/atom.xml", '"v1"')
    assert len(server.requests) == fetched + 1  # no CAP document fetched again

    # A new entry: the feed changes; only the new entry's document is fetched.
    server.routes["/cap/4.xml"] = Route(moderate("KTTV-NB-0004"))
    server.routes["/atom.xml"] = Route(atom(
        ("urn:kttv:4", "2026-12-03T04:00:00Z", "/cap/4.xml", None),
        ("urn:kttv:2", "2026-12-03T02:00:00Z", "/cap/2.xml", None),
        ("urn:kttv:1", "2026-12-03T01:00:00Z", "/cap/1.xml", None)), etag='"v2"')
    before = len(server.requests)
    result = poll(app, session, "kttv-atom")
    assert [a["identifier"] for a in result.answers] == ["KTTV-NB-0004"]
    assert server.paths()[before:] == ["/atom.xml", "/cap/4.xml"]
    session.expire_all()
    assert session.get(CapFeed, "kttv-atom").etag == '"v2"'


def test_the_same_message_in_two_entries_is_acted_on_once(village, source, session, app,
                                                          cap_http_server):
    body = moderate("KTTV-NB-0005")
    cap_http_server.routes["/rss.xml"] = Route(rss(("a", None, body), ("b", None, body)))
    feed_for(session, cap_http_server, "/rss.xml", feed_id="kttv-rss")
    result = poll(app, session, "kttv-rss")
    assert [a["identifier"] for a in result.answers] == ["KTTV-NB-0005"]
    items = {(i.entry_key, i.outcome, i.reason) for i in session.query(CapFeedItem)}
    assert items == {("a", "queued", "needs-confirmation"), ("b", "logged", "duplicate")} or \
        items == {("b", "queued", "needs-confirmation"), ("a", "logged", "duplicate")}


def test_a_sender_the_source_may_not_use_and_a_bad_cap_are_refused_and_remembered(
        village, source, session, app, cap_http_server, caplog):
    cap_http_server.routes["/rss.xml"] = Route(rss(
        ("other", None, alert("KTTV-NB-0006", sender="someone@else.example")),
        ("bad", "/cap/bad.xml", None), ("huge", "/cap/huge.xml", None)))
    cap_http_server.routes["/cap/bad.xml"] = Route(BILLION_LAUGHS)
    cap_http_server.routes["/cap/huge.xml"] = Route(b" " * (MAX_CAP_BYTES + 1))
    feed_for(session, cap_http_server, "/rss.xml", feed_id="kttv-rss")
    with caplog.at_level(logging.WARNING, logger="headend.services.cap_feeds"):
        result = poll(app, session, "kttv-rss")
    assert result.status == "ok" and result.answers == [] and alerts(session) == {}
    items = {(i.entry_key, i.outcome, i.reason) for i in session.query(CapFeedItem)}
    assert items == {("other", "refused", "cap-sender"), ("bad", "refused", "forbidden-xml"),
                     ("huge", "refused", "too-large")}
    assert "forbidden-xml" in caplog.text or "DTD" in caplog.text
    # Remembered: not fetched again.
    cap_http_server.routes["/rss.xml"].etag = None
    before = len(cap_http_server.requests)
    poll(app, session, "kttv-rss")
    assert cap_http_server.paths()[before:] == ["/rss.xml"]


def test_an_entry_whose_document_cannot_be_fetched_is_tried_again_at_the_next_poll(
        village, source, session, app, cap_http_server):
    cap_http_server.routes["/atom.xml"] = Route(atom(
        ("urn:kttv:7", "2026-12-03T07:00:00Z", "/cap/7.xml", None)), etag='"v1"')
    feed_for(session, cap_http_server, "/atom.xml")
    result = poll(app, session, "kttv-atom")
    assert result.status == "ok" and len(result.retry) == 1 and "HTTP 404" in result.retry[0]
    session.expire_all()
    assert session.get(CapFeed, "kttv-atom").etag is None  # so the next GET is not a 304
    cap_http_server.routes["/cap/7.xml"] = Route(moderate("KTTV-NB-0007"))
    result = poll(app, session, "kttv-atom")
    assert [a["identifier"] for a in result.answers] == ["KTTV-NB-0007"]


def test_failures_are_logged_counted_and_backed_off_and_never_raised(
        village, source, session, app, cap_http_server, caplog):
    server = cap_http_server
    app.state.settings.cap_fetch_timeout_s = 0.5
    server.routes["/down.xml"] = Route(b"oops", status=500)
    server.routes["/hostile.xml"] = Route(BILLION_LAUGHS)
    server.routes["/slow.xml"] = Route(atom(), delay_s=3)
    server.routes["/huge.xml"] = Route(b"<rss>" + b" " * MAX_FEED_BYTES + b"</rss>")
    server.routes["/page.html"] = Route(b"<html><body>hi</body></html>", "text/html")
    cases = {"down": ("/down.xml", "HTTP 500"), "hostile": ("/hostile.xml", "DTD"),
             "slow": ("/slow.xml", "timed out"), "huge": ("/huge.xml", "too large"),
             "page": ("/page.html", "not a usable feed")}
    for feed_id, (path, _) in cases.items():
        feed_for(session, server, path, feed_id=feed_id, interval_s=60)
    add_feed(session, feed_id="nobody", url="http://127.0.0.1:9/feed.xml", source_id="kttv-nb",
             interval_s=60)
    with caplog.at_level(logging.WARNING, logger="headend.services.cap_feeds"):
        results = poll_due(session, settings=app.state.settings, publisher=app.state.publisher,
                           now=NOW)
    assert {feed: result.status for feed, result in results.items()} == dict.fromkeys(
        list(cases) + ["nobody"], "failed")
    for feed_id, (_, reason) in cases.items():
        assert reason in results[feed_id].error, (feed_id, results[feed_id].error)
        assert reason in caplog.text
    assert "cannot connect" in results["nobody"].error
    session.expire_all()
    down = session.get(CapFeed, "down")
    assert (down.failures, down.next_poll_at) == (1, NOW + timedelta(seconds=120))
    # Failing again: the wait doubles, up to an hour.
    poll(app, session, "down", at=NOW + timedelta(seconds=120))
    session.expire_all()
    assert session.get(CapFeed, "down").next_poll_at == NOW + timedelta(seconds=120 + 240)
    assert [backoff(60, n).total_seconds() for n in (0, 1, 2, 3, 6, 20)] == [
        60, 120, 240, 480, 3600, 3600]
    # Back up: the count starts again.
    server.routes["/down.xml"] = Route(atom())
    assert poll(app, session, "down").status == "ok"
    session.expire_all()
    assert (session.get(CapFeed, "down").failures, session.get(CapFeed, "down").last_error) == (
        0, None)


def test_a_feed_of_an_inactive_source_is_not_read(village, source, session, app,
                                                  cap_http_server):
    cap_http_server.routes["/rss.xml"] = Route(rss(("g", None, moderate("KTTV-NB-0008"))))
    feed_for(session, cap_http_server, "/rss.xml", feed_id="kttv-rss")
    session.get(cap_alerts.CapSource, "kttv-nb").active = False
    session.commit()
    result = poll(app, session, "kttv-rss")
    assert result.status == "failed" and "not active" in result.error
    assert cap_http_server.requests == []


def test_an_aired_alert_from_a_feed_reaches_its_village(village, source, session, app,
                                                       cap_http_server):
    cap_http_server.routes["/rss.xml"] = Route(rss(("g", None, alert("KTTV-NB-0009"))))
    feed_for(session, cap_http_server, "/rss.xml", feed_id="kttv-rss")
    (answer,) = poll(app, session, "kttv-rss").answers
    assert (answer["outcome"], answer["zones"]) == ("aired", ["van-lam"])
    assert [c["a"]["bid"] for c in village.commands_to("a1") if c["k"] == "play"] == [
        answer["broadcast_id"]]


def test_the_poller_thread_polls_the_feeds_due(village, source, session, app,
                                              cap_http_server):
    cap_http_server.routes["/rss.xml"] = Route(rss(("g", None, moderate("KTTV-NB-0010"))))
    feed_for(session, cap_http_server, "/rss.xml", feed_id="kttv-rss")
    poller = CapFeedPoller(settings=app.state.settings,
                           session_factory=app.state.session_factory,
                           publisher=app.state.publisher)
    assert poller.run_once()["kttv-rss"].status == "ok"
    assert "KTTV-NB-0010" in alerts(session)
    assert poller.run_once() == {}  # not due again for a minute
    # Its thread polls by itself: a second feed added while it runs is read.
    cap_http_server.routes["/atom.xml"] = Route(atom(
        ("urn:kttv:11", "2026-12-03T11:00:00Z", None, moderate("KTTV-NB-0011"))))
    app.state.settings.cap_feed_check_s = 0.05
    poller.start()
    try:
        feed_for(session, cap_http_server, "/atom.xml")
        deadline = time.monotonic() + 30
        while "KTTV-NB-0011" not in alerts(session) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        poller.stop()
    assert "KTTV-NB-0011" in alerts(session)


def test_add_feed_refuses_bad_input(session, source):
    for kwargs, code in (({"url": "ftp://x/feed"}, "bad-feed-url"),
                         ({"interval_s": 1}, "bad-feed-interval"),
                         ({"source_id": "nobody"}, "unknown-cap-source"),
                         ({"feed_id": "bad id"}, "bad-feed-id")):
        arguments = dict({"feed_id": "f1", "url": "http://kttv.example/feed",
                          "source_id": "kttv-nb", "interval_s": 60}, **kwargs)
        with pytest.raises(cap_feeds.ServiceError) as refused:
            add_feed(session, **arguments)
        assert refused.value.code == code


def test_the_cli_adds_a_feed_bound_to_a_source(tmp_path, capsys):
    data = str(tmp_path / "var")
    assert main(["--data-dir", data, "add-cap-source", "kttv-nb", "--sender", SENDER]) == 0
    assert main(["--data-dir", data, "add-cap-feed", "kttv-atom", "--url",
                 "https://kttv.example/cap/atom.xml", "--source", "kttv-nb", "--interval",
                 "120"]) == 0
    assert "kttv-atom" in capsys.readouterr().out
    assert main(["--data-dir", data, "add-cap-feed", "x", "--url", "https://kttv.example/",
                 "--source", "nobody"]) == 1
    assert "unknown CAP source" in capsys.readouterr().err


