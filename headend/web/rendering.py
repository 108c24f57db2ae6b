"""Templates, the filters they use, and ``render``: the one way a page becomes a response.

Times are stored in UTC and shown in the station's zone (settings.timezone,
Asia/Ho_Chi_Minh); every page gets the translator ``t``, the language, the signed-in user, the
CSRF token and ``can(permission)``.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates

from headend.errors import ServiceError
from headend.i18n import LANGUAGE_NAMES, LANGUAGES, Translator, pick_language, translator
from headend.security import has_permission
from headend.web.csrf import csrf_token, remember_nonce

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
LANGUAGE_COOKIE = "loaxa_lang"

templates = Jinja2Templates(directory=TEMPLATES_DIR)


def language_of(request: Request) -> str:
    return pick_language(request.cookies.get(LANGUAGE_COOKIE))


def translator_of(request: Request) -> Translator:
    return translator(language_of(request))


def error_text(t: Translator, exc: ServiceError) -> str:
    """A service error in the page's language (the services carry both)."""
    return exc.message_vi if t.language == "vi" else exc.message


def _local(request: Request):
    tz = request.app.state.settings.tz

    def local(value: datetime | None, fmt: str = "%H:%M:%S %d/%m/%Y") -> str:
        return "—" if value is None else value.astimezone(tz).strftime(fmt)

    return local


def duration(ms: int | float | None) -> str:
    """``65000`` -> ``1:05``; ``3725000`` -> ``1:02:05``."""
    if ms is None:
        return "—"
    seconds = int(round(ms / 1000))
    hours, rest = divmod(seconds, 3600)
    return ("%d:%02d:%02d" % (hours, *divmod(rest, 60)) if hours
            else "%d:%02d" % divmod(rest, 60))


def render(request: Request, name: str, context: dict[str, Any] | None = None,
           status_code: int = 200):
    settings = request.app.state.settings
    user = getattr(request.state, "user", None)
    t = translator_of(request)
    values = {
        "t": t, "lang": t.language, "languages": LANGUAGES, "language_names": LANGUAGE_NAMES,
        "user": user, "csrf": csrf_token(request), "site_name": settings.site_name,
        "can": lambda permission: user is not None and has_permission(user.role, permission),
        "local": _local(request), "duration": duration, "timezone": settings.timezone,
        "now": datetime.now(UTC),
        "here": request.url.path + ("?" + request.url.query if request.url.query else ""),
    }
    values.update(context or {})
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    remember_nonce(request, response)
    # Pages show live state and hold a form token: never cache them.
    response.headers["Cache-Control"] = "no-store"
    return response
