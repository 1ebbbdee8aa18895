"""A service's refusal as a page shows it: the API's status and its error code's Turkish (or
English) text (dashboard.labels), so a page and the API say the same thing."""
from __future__ import annotations

from aiohttp import web

from dashboard import i18n
from dashboard.errors import known_failure
from dashboard.labels import error_text


def shown(request: web.Request, exc: BaseException) -> tuple[int, str, str] | None:
    """(status, code, text to show) for a known refusal; None for anything else (a fault,
    which the page wrapper answers with a 500 or the database's 503)."""
    found = known_failure(exc)
    if found is None:
        return None
    status, code, message = found
    return status, code, error_text(code, message, i18n.language(request))
