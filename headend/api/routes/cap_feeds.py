"""The CAP feeds the head-end polls (docs/cap.md "Feeds") and the warning sources they are
bound to. Readers see them (with each feed's last error, so an operator knows a warning
agency's feed is down before a storm); an admin adds, pauses, changes and removes feeds (a
feed's items air as its source's own posts, so it is the admin's, as sources are); an
operator may ask for a feed to be read now."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, Field

from headend.api.deps import EmergencySender, Reader, SessionDep, require
from headend.models import CapSource, User
from headend.services import cap_feeds

router = APIRouter(prefix="/cap", tags=["cap"])
Admin = Annotated[User, Depends(require("users"))]


class FeedPublic(BaseModel):
    id: str
    url: str
    source: str = Field(description="the warning source its items count as")
    interval_s: int
    active: bool = Field(description="false: paused")
    failures: int = Field(description="failed polls in a row (the next waits 2^n intervals)")
    last_error: str | None
    last_polled_at: datetime | None
    last_ok_at: datetime | None
    next_poll_at: datetime | None
    created_at: datetime


class FeedCreate(BaseModel):
    id: str
    url: str = Field(description="an Atom 1.0 or RSS 2.0 feed of CAP items, http(s)")
    source: str = Field(description="id of the warning source (`loaxa headend add-cap-source`)")
    interval_s: Any = Field(cap_feeds.DEFAULT_INTERVAL_S,
                            description="seconds, %d-%d" % (cap_feeds.MIN_INTERVAL_S,
                                                            cap_feeds.MAX_INTERVAL_S))


class FeedUpdate(BaseModel):
    active: Any = Field(None, description="false pauses it, true resumes it (polled at once)")
    interval_s: Any = None
    url: str | None = Field(None, description="a new URL starts afresh (no ETag, no failures)")


class SourcePublic(BaseModel):
    id: str
    name: str
    auth: str
    senders: list[str]
    active: bool


@router.get("/sources", response_model=list[SourcePublic])
def list_sources(session: SessionDep, _: Reader):
    """The warning sources (never their keys or secrets)."""
    return [SourcePublic(id=s.id, name=s.name, auth=s.auth, senders=s.senders, active=s.active)
            for s in session.query(CapSource).order_by(CapSource.id)]


@router.get("/feeds", response_model=list[FeedPublic])
def list_feeds(session: SessionDep, _: Reader):
    return [cap_feeds.describe_feed(feed) for feed in cap_feeds.list_feeds(session)]


@router.post("/feeds", response_model=FeedPublic, status_code=status.HTTP_201_CREATED)
def create_feed(body: FeedCreate, session: SessionDep, user: Admin):
    """A feed polled every ``interval_s`` from now on (409 `feed-exists`, 404
    `unknown-cap-source`, 422 `bad-feed-url` / `bad-feed-interval` / `bad-feed-id`)."""
    feed = cap_feeds.add_feed(session, feed_id=body.id, url=body.url, source_id=body.source,
                              interval_s=body.interval_s, actor=user)
    return cap_feeds.describe_feed(feed)


@router.get("/feeds/{feed_id}", response_model=FeedPublic)
def get_feed(feed_id: str, session: SessionDep, _: Reader):
    return cap_feeds.describe_feed(cap_feeds.get_feed(session, feed_id))


@router.patch("/feeds/{feed_id}", response_model=FeedPublic)
def update_feed(feed_id: str, body: FeedUpdate, session: SessionDep, user: Admin):
    feed = cap_feeds.update_feed(session, feed_id=feed_id, actor=user, active=body.active,
                                 interval_s=body.interval_s, url=body.url)
    return cap_feeds.describe_feed(feed)


@router.delete("/feeds/{feed_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_feed(feed_id: str, session: SessionDep, user: Admin):
    cap_feeds.delete_feed(session, feed_id=feed_id, actor=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/feeds/{feed_id}/poll", response_model=FeedPublic,
             status_code=status.HTTP_202_ACCEPTED)
def poll_feed(feed_id: str, session: SessionDep, user: EmergencySender):
    """Read the feed now: the poller takes it within ``cap_feed_check_s`` (5 s)."""
    return cap_feeds.describe_feed(cap_feeds.poll_soon(session, feed_id=feed_id, actor=user))
