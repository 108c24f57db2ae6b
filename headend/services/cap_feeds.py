"""CAP feeds: Atom or RSS feeds of CAP alerts, polled, each bound to a warning source.

Every item is received exactly as that source's own POST would be (cap_alerts.receive: the
senders the source may use, the site's policy, the duplicate check by sender and identifier,
the ledger). ``CapFeedPoller`` is a thread beside the MQTT service (headend/app.py) that polls
the feeds due every ``settings.cap_feed_check_s``:

- a conditional GET (If-None-Match / If-Modified-Since from the last answer); 304: nothing;
- the feed parsed by the same defused path as a CAP message (headend/cap/feed.py);
- each entry, oldest first (an Update after the Alert it updates), handled once: remembered
  by its entry key, and by its CAP sender, identifier and sent once read (the same message in
  two entries, or two feeds, is looked at once); a CAP document an entry links to is fetched
  within MAX_CAP_BYTES and the timeout;
- an entry that could not be fetched, or a message that could not be acted on (the speech
  engine down), is not remembered, and the feed's ETag is not kept either, so the next poll
  tries it again; a message refused (not CAP, a sender the source may not use) is
  remembered as refused, with its reason, and not fetched again (so is a linked document
  over MAX_CAP_BYTES);
- a failure (unreachable, timed out, too large, not a feed, hostile XML) is logged with its
  reason and counted: the next poll waits twice the interval per failure in a row, at most
  MAX_BACKOFF. Nothing a feed sends stops the poller.
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from headend.cap.errors import CapError
from headend.cap.feed import MAX_FEED_BYTES, FeedEntry, parse_feed
from headend.cap.parse import MAX_CAP_BYTES, parse_cap
from headend.commands import Publisher
from headend.db import session_scope
from headend.errors import Conflict, Invalid, NotFound, ServiceError
from headend.models import CapFeed, CapFeedItem, CapSource, User
from headend.services import audit
from headend.services.cap_alerts import Poster, receive
from headend.services.cap_http import FetchError, http_get
from headend.services.programmes_scheduler import PeriodicThread
from headend.settings import Settings
from protocol.topics import valid_id

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 10
MAX_INTERVAL_S = 86400
DEFAULT_INTERVAL_S = 60
MAX_BACKOFF = timedelta(hours=1)


def _check_url(url) -> str:
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")) \
            or len(url) > 2000 or any(c.isspace() for c in url):
        raise Invalid("bad-feed-url", "a feed URL is http:// or https://, without spaces",
                      "Địa chỉ nguồn tin CAP phải bắt đầu bằng http:// hoặc https://")
    return url


def _check_interval(interval_s) -> int:
    if isinstance(interval_s, bool) or not isinstance(interval_s, int) \
            or not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise Invalid("bad-feed-interval", "the interval is %d to %d seconds"
                      % (MIN_INTERVAL_S, MAX_INTERVAL_S),
                      "Chu kỳ đọc nguồn tin từ %d đến %d giây" % (MIN_INTERVAL_S, MAX_INTERVAL_S))
    return interval_s


def add_feed(session: Session, *, feed_id: str, url: str, source_id: str,
             interval_s: int = DEFAULT_INTERVAL_S, actor: User | str | None = None) -> CapFeed:
    """A feed polled every ``interval_s`` whose items count as ``source_id``'s posts."""
    if not isinstance(feed_id, str) or not valid_id(feed_id):
        raise Invalid("bad-feed-id", "a feed id is 1-48 characters of A-Z a-z 0-9 _ -",
                      "Mã nguồn tin CAP chỉ gồm 1-48 ký tự A-Z a-z 0-9 _ -")
    _check_url(url)
    _check_interval(interval_s)
    if not isinstance(source_id, str) or session.get(CapSource, source_id) is None:
        raise NotFound("unknown-cap-source", "unknown CAP source %r" % source_id,
                       "Không có nguồn cảnh báo %r" % source_id)
    if session.get(CapFeed, feed_id) is not None:
        raise Conflict("feed-exists", "CAP feed %r already exists" % feed_id,
                       "Nguồn tin CAP %r đã có" % feed_id)
    feed = CapFeed(id=feed_id, url=url, source_id=source_id, interval_s=interval_s, active=True,
                   failures=0)
    session.add(feed)
    audit.record(session, actor=actor, action="cap-feed.create", target=feed_id,
                 detail={"url": url, "source": source_id, "interval_s": interval_s})
    session.commit()
    return feed


def get_feed(session: Session, feed_id: str) -> CapFeed:
    feed = session.get(CapFeed, feed_id)
    if feed is None:
        raise NotFound("unknown-cap-feed", "unknown CAP feed %r" % feed_id,
                       "Không có nguồn tin CAP %r" % feed_id)
    return feed


def update_feed(session: Session, *, feed_id: str, actor: User | str | None = None,
                active: bool | None = None, interval_s: int | None = None,
                url: str | None = None) -> CapFeed:
    """Pause or resume a feed, or change its interval or URL (a new URL starts afresh: no
    ETag, no failures; the entries already handled stay remembered)."""
    feed = get_feed(session, feed_id)
    changed: dict = {}
    if active is not None:
        if not isinstance(active, bool):
            raise Invalid("bad-field", "active is true or false", "active phải là true/false")
        feed.active = changed["active"] = active
        if active:
            feed.failures, feed.next_poll_at = 0, None  # resumed: polled at once
    if interval_s is not None:
        feed.interval_s = changed["interval_s"] = _check_interval(interval_s)
    if url is not None and url != feed.url:
        feed.url = changed["url"] = _check_url(url)
        feed.etag = feed.last_modified = feed.last_error = feed.next_poll_at = None
        feed.failures = 0
    audit.record(session, actor=actor, action="cap-feed.update", target=feed_id, detail=changed)
    session.commit()
    return feed


def delete_feed(session: Session, *, feed_id: str, actor: User | str | None = None) -> None:
    """Stop polling a feed and forget it (and the entries it handled; the alerts they made,
    and the ledger, stay)."""
    feed = get_feed(session, feed_id)
    session.execute(delete(CapFeedItem).where(CapFeedItem.feed_id == feed_id))
    session.delete(feed)
    audit.record(session, actor=actor, action="cap-feed.delete", target=feed_id,
                 detail={"url": feed.url})
    session.commit()


def poll_soon(session: Session, *, feed_id: str, actor: User | str | None = None) -> CapFeed:
    """Make a feed due now (the poller reads it within ``cap_feed_check_s``): one thread
    polls, so an operator's "read now" never races a poll of the same feed."""
    feed = get_feed(session, feed_id)
    if not feed.active:
        raise Invalid("feed-paused", "CAP feed %r is paused: resume it first" % feed_id,
                      "Nguồn tin CAP %r đang tạm dừng: hãy bật lại trước" % feed_id)
    feed.next_poll_at = datetime.now(UTC)
    audit.record(session, actor=actor, action="cap-feed.poll", target=feed_id, detail={})
    session.commit()
    return feed


def describe_feed(feed: CapFeed) -> dict:
    """A feed as the API and the page show it."""
    return {"id": feed.id, "url": feed.url, "source": feed.source_id,
            "interval_s": feed.interval_s, "active": feed.active, "failures": feed.failures,
            "last_error": feed.last_error, "last_polled_at": feed.last_polled_at,
            "last_ok_at": feed.last_ok_at, "next_poll_at": feed.next_poll_at,
            "created_at": feed.created_at}


def backoff(interval_s: int, failures: int) -> timedelta:
    """The wait before the next poll of a feed that failed ``failures`` times in a row."""
    if failures <= 0:
        return timedelta(seconds=interval_s)
    return min(timedelta(seconds=interval_s * 2 ** min(failures, 16)),
               max(MAX_BACKOFF, timedelta(seconds=interval_s)))


@dataclass
class PollResult:
    status: str  # "ok" | "not-modified" | "failed"
    error: str | None = None
    answers: list[dict] = field(default_factory=list)  # cap_alerts.receive's, one per message
    retry: list[str] = field(default_factory=list)  # entries left for the next poll, why


class _Retry(Exception):
    """An entry to try again at the next poll (not remembered)."""


def _seen(session: Session, feed: CapFeed, entry: FeedEntry) -> bool:
    return session.scalar(select(CapFeedItem.id).where(
        CapFeedItem.feed_id == feed.id, CapFeedItem.entry_key == entry.key)) is not None


def _remember(session: Session, feed: CapFeed, entry: FeedEntry, outcome: str,
              reason: str | None, alert=None, now: datetime | None = None) -> None:
    session.add(CapFeedItem(
        feed_id=feed.id, entry_key=entry.key, outcome=outcome, reason=(reason or "")[:64] or None,
        sender=alert.sender[:255] if alert else None,
        identifier=alert.identifier[:255] if alert else None,
        sent=alert.sent.isoformat() if alert else None, seen_at=now or datetime.now(UTC)))
    session.commit()


def _handle(session: Session, *, settings: Settings, publisher: Publisher, feed: CapFeed,
            poster: Poster, entry: FeedEntry, now: datetime) -> dict | None:
    """Receive one entry's message; returns receive's answer (None when not acted on)."""
    body = entry.embedded
    if body is None:
        try:
            body = http_get(entry.link, limit=MAX_CAP_BYTES,
                            timeout_s=settings.cap_fetch_timeout_s).body
        except FetchError as error:
            if error.too_large:  # the same document will be as large next time
                log.warning("CAP feed %s: entry %s refused: %s", feed.id, entry.key[:120],
                            error.reason)
                _remember(session, feed, entry, "refused", "too-large", now=now)
                return None
            raise _Retry("%s: %s" % (entry.link[:200], error.reason)) from None
    try:
        alert = parse_cap(body)
    except CapError as error:
        log.warning("CAP feed %s: entry %s refused: %s", feed.id, entry.key[:120], error.message)
        _remember(session, feed, entry, "refused", error.code, now=now)
        return None
    if session.scalar(select(CapFeedItem.id).where(
            CapFeedItem.sender == alert.sender, CapFeedItem.identifier == alert.identifier,
            CapFeedItem.sent == alert.sent.isoformat()).limit(1)) is not None:
        _remember(session, feed, entry, "logged", "duplicate", alert, now)
        return None
    try:
        answer, _ = receive(session, settings=settings, publisher=publisher, body=body,
                            poster=poster, now=now)
    except ServiceError as error:
        session.rollback()
        if error.status >= 500:  # the speech engine or ffmpeg failed: try again later
            raise _Retry("%s: %s" % (alert.identifier[:120], error.message)) from None
        log.warning("CAP feed %s: %s refused: %s", feed.id, alert.identifier[:120],
                    error.message)
        _remember(session, feed, entry, "refused", error.code, alert, now)
        return None
    log.info("CAP feed %s: %s %s (%s)", feed.id, alert.identifier[:120], answer["outcome"],
             answer["reason"])
    _remember(session, feed, entry, answer["outcome"], answer["reason"], alert, now)
    return answer


def _failed(session: Session, feed: CapFeed, reason: str, now: datetime) -> PollResult:
    feed.failures += 1
    feed.last_error = reason[:300]
    wait = backoff(feed.interval_s, feed.failures)
    feed.next_poll_at = now + wait
    session.commit()
    log.warning("CAP feed %s (%s) failed: %s (%d in a row; next try in %d s)", feed.id,
                feed.url[:200], reason, feed.failures, wait.total_seconds())
    return PollResult("failed", error=reason)


def poll_feed(session: Session, *, settings: Settings, publisher: Publisher, feed: CapFeed,
              now: datetime | None = None) -> PollResult:
    """Poll one feed now and act on its new entries."""
    now = now or datetime.now(UTC)
    feed.last_polled_at = now
    source = session.get(CapSource, feed.source_id)
    if source is None or not source.active:
        return _failed(session, feed, "its warning source %s is not active" % feed.source_id, now)
    try:
        fetched = http_get(feed.url, limit=MAX_FEED_BYTES, timeout_s=settings.cap_fetch_timeout_s,
                           etag=feed.etag, last_modified=feed.last_modified)
    except FetchError as error:
        return _failed(session, feed, error.reason, now)
    result = PollResult("not-modified" if fetched.status == 304 else "ok")
    if fetched.status != 304:
        try:
            entries = parse_feed(fetched.body, feed.url)
        except CapError as error:
            return _failed(session, feed, "not a usable feed: %s" % error.message, now)
        poster = Poster(source.id, frozenset(source.senders))
        for entry in reversed(entries):  # feeds list the newest first
            if _seen(session, feed, entry):
                continue
            try:
                answer = _handle(session, settings=settings, publisher=publisher, feed=feed,
                                 poster=poster, entry=entry, now=now)
            except _Retry as retry:
                log.warning("CAP feed %s: entry %s left for the next poll: %s", feed.id,
                            entry.key[:120], retry)
                result.retry.append(str(retry))
                continue
            if answer is not None:
                result.answers.append(answer)
    if not result.retry:  # else the next poll must fetch the feed again, not get a 304
        feed.etag = (fetched.etag or "")[:255] or None
        feed.last_modified = (fetched.last_modified or "")[:64] or None
    feed.failures, feed.last_error, feed.last_ok_at = 0, None, now
    feed.next_poll_at = now + timedelta(seconds=feed.interval_s)
    session.commit()
    return result


def poll_due(session: Session, *, settings: Settings, publisher: Publisher,
             now: datetime | None = None) -> dict[str, PollResult]:
    """Poll every active feed that is due; one failing feed never stops the others."""
    now = now or datetime.now(UTC)
    results = {}
    for feed_id in list(session.scalars(select(CapFeed.id).where(
            CapFeed.active.is_(True),
            or_(CapFeed.next_poll_at.is_(None), CapFeed.next_poll_at <= now))
            .order_by(CapFeed.id))):
        feed = session.get(CapFeed, feed_id)
        try:
            results[feed_id] = poll_feed(session, settings=settings, publisher=publisher,
                                         feed=feed, now=now)
        except Exception as error:  # a bug or a database hiccup: logged, retried later
            log.exception("CAP feed %s: poll failed", feed_id)
            session.rollback()
            feed = session.get(CapFeed, feed_id)
            results[feed_id] = _failed(session, feed, "%s: %s" % (type(error).__name__, error),
                                       now)
    return results


def list_feeds(session: Session) -> list[CapFeed]:
    return list(session.scalars(select(CapFeed).order_by(CapFeed.id)))


class CapFeedPoller(PeriodicThread):
    """Polls the CAP feeds that are due every ``settings.cap_feed_check_s``."""

    thread_name = "loaxa-cap-feeds"

    def interval_s(self) -> float:
        return self.settings.cap_feed_check_s

    def run_once(self) -> dict[str, PollResult]:
        with session_scope(self.session_factory) as session:
            return poll_due(session, settings=self.settings, publisher=self.publisher)
