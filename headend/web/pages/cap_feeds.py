"""Nguồn tin CAP: the warning agencies' feeds the head-end polls, how each is doing (last read,
last error, failures in a row), "read now" for an operator; add, pause, resume and remove for
an admin (the API's POST/PATCH/DELETE /api/v1/cap/feeds)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import RedirectResponse

from headend.api.deps import SessionDep
from headend.errors import ServiceError
from headend.models import CapSource, User
from headend.services import cap_feeds
from headend.web.csrf import CsrfChecked
from headend.web.guard import PageRoute, PageUser, allowed
from headend.web.rendering import error_text, render, translator_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)  # pages, not API
Admin = Annotated[User, Depends(allowed("users"))]
Operator = Annotated[User, Depends(allowed("emergency"))]


def _context(session, values=None, error=None):
    return {"feeds": [cap_feeds.describe_feed(f) for f in cap_feeds.list_feeds(session)],
            "sources": list(session.query(CapSource).order_by(CapSource.id)),
            "values": values or {"interval_s": str(cap_feeds.DEFAULT_INTERVAL_S)},
            "error": error, "min_interval": cap_feeds.MIN_INTERVAL_S,
            "max_interval": cap_feeds.MAX_INTERVAL_S}


@router.get("/cap/feeds")
def feeds_page(request: Request, session: SessionDep, _user: PageUser):
    return render(request, "cap_feeds.html", _context(session))


@router.post("/cap/feeds")
def add_feed(request: Request, session: SessionDep, user: Admin, _: CsrfChecked,
             id: Annotated[str, Form()] = "", url: Annotated[str, Form()] = "",
             source: Annotated[str, Form()] = "", interval_s: Annotated[str, Form()] = ""):
    values = {"id": id.strip(), "url": url.strip(), "source": source,
              "interval_s": interval_s.strip()}
    try:
        interval = int(values["interval_s"]) if values["interval_s"].isdigit() else -1
        cap_feeds.add_feed(session, feed_id=values["id"], url=values["url"], source_id=source,
                           interval_s=interval, actor=user)
    except ServiceError as exc:
        session.rollback()
        return render(request, "cap_feeds.html",
                      _context(session, values, error_text(translator_of(request), exc)),
                      status_code=exc.status)
    return RedirectResponse("/cap/feeds", status.HTTP_303_SEE_OTHER)


@router.post("/cap/feeds/{feed_id}/pause")
def pause_feed(feed_id: str, session: SessionDep, user: Admin, _: CsrfChecked):
    cap_feeds.update_feed(session, feed_id=feed_id, active=False, actor=user)
    return RedirectResponse("/cap/feeds", status.HTTP_303_SEE_OTHER)


@router.post("/cap/feeds/{feed_id}/resume")
def resume_feed(feed_id: str, session: SessionDep, user: Admin, _: CsrfChecked):
    cap_feeds.update_feed(session, feed_id=feed_id, active=True, actor=user)
    return RedirectResponse("/cap/feeds", status.HTTP_303_SEE_OTHER)


@router.post("/cap/feeds/{feed_id}/delete")
def delete_feed(feed_id: str, session: SessionDep, user: Admin, _: CsrfChecked):
    cap_feeds.delete_feed(session, feed_id=feed_id, actor=user)
    return RedirectResponse("/cap/feeds", status.HTTP_303_SEE_OTHER)


@router.post("/cap/feeds/{feed_id}/poll")
def poll_feed(feed_id: str, session: SessionDep, user: Operator, _: CsrfChecked):
    cap_feeds.poll_soon(session, feed_id=feed_id, actor=user)
    return RedirectResponse("/cap/feeds?polled=%s" % feed_id, status.HTTP_303_SEE_OTHER)
