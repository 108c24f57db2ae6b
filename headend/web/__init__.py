"""The operator's web pages: server-rendered Jinja2, Vietnamese first, readable on a phone.

Pages call the same service functions as the API (headend/services/), through the same
dependencies (headend/api/deps.py): the session cookie holds the same signed token that
``POST /api/v1/auth/token`` hands out, so the pages' little JavaScript can read the API too.

    app.py calls install(app): the page routes, and /static (our CSS and JS, no third-party
    files).
"""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from headend.web.rendering import STATIC_DIR


def install(app: FastAPI) -> None:
    from headend.web.pages import router

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
