"""Turns every failure into `{"error": {"code", "message"}}`; nothing else reaches a client."""
from __future__ import annotations

import json
import logging

from aiohttp import web

from accounts import AccountError, ConflictError, ForbiddenError, NotFoundError
from campaigns.audiences import AudienceError
from campaigns.lines import LineInputError, LineNotFoundError, LineStateError
from campaigns.service import CampaignError, CampaignNotFoundError, CampaignStateError
from crypto.errors import CorruptDataError, VaultLockedError, WrongPassphraseError
from dashboard.inputs import (
    MAX_INT,
    InputError,
    check_params,
    int_param,
    parse_json,
)
from dashboard.models import parse
from dashboard.ratelimit import HashBusyError
from dashboard.services import ServiceError, ServiceNotFoundError, ServiceStateError
from optout.ledger import ConsentInputError
from optout.suppression import SuppressionInputError
from optout.tenants import TenantNotFoundError
from store.faults import unavailable_kind

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by views: an HTTP status, a stable code and a message safe to show."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def json_response(data, status: int = 200) -> web.Response:
    """JSON with Turkish letters as they are (not \\u escapes): people read these."""
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data) -> str:
    return json.dumps(data, ensure_ascii=False)


def error_response(status: int, code: str, message: str,
                   details: dict | None = None) -> web.Response:
    """`details`: more fields of the error a client can act on (e.g. `words`)."""
    return json_response({"error": {**(details or {}), "code": code, "message": message}},
                         status=status)


# Core exceptions → (status, code). Their messages are written to be shown.
_KNOWN: list[tuple[type[Exception], int, str | None]] = [
    (WrongPassphraseError, 403, "wrong_passphrase"),
    (VaultLockedError, 423, "vault_locked"),
    (NotFoundError, 404, None),
    (TenantNotFoundError, 404, None),
    (CampaignNotFoundError, 404, None),
    (CampaignStateError, 409, None),
    (CampaignError, 400, None),
    (ForbiddenError, 403, None),
    (ConflictError, 409, None),
    (HashBusyError, 429, "busy"),
    (AccountError, 400, None),
    (AudienceError, 400, None),
    (LineInputError, 400, None),
    (LineStateError, 409, None),
    (LineNotFoundError, 404, None),
    (ConsentInputError, 400, None),
    (SuppressionInputError, 400, None),
    (InputError, 400, None),
    # The application services' refusals (dashboard.services), subclasses first.
    (ServiceNotFoundError, 404, None),
    (ServiceStateError, 409, None),
    (ServiceError, 400, None),
]

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               409: "conflict",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "unprocessable", 429: "too_many_requests"}


def known_failure(exc: BaseException) -> tuple[int, str, str] | None:
    """(status, code, message) the API answers for `exc` (an ApiError or a known domain
    error); None for anything else. Pages use it to show a service's refusal."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    for kind, status, code in _KNOWN:
        if isinstance(exc, kind):
            return status, code or getattr(exc, "code", "error"), str(exc)
    return None


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except CorruptDataError:
        log.error("sealed data failed to open", extra={"path": request.path})
        return error_response(500, "corrupt_data", "stored data could not be decrypted")
    except Exception as exc:
        if (fault := unavailable_kind(exc)) is not None:
            return unavailable_response(request, fault)
        for kind, status, code in _KNOWN:
            if isinstance(exc, kind):
                return error_response(status, code or getattr(exc, "code", "error"), str(exc),
                                      getattr(exc, "details", None))
        # Only the exception type is logged: its text may carry personal data.
        log.error("unhandled error", extra={"path": request.path, "error": type(exc).__name__})
        return error_response(500, "internal", "internal error")


RETRY_AFTER_SECONDS = 5
# Set on a 503 for an unusable database (its kind): a page that called the API in-process
# answers 503 itself instead of rendering the error as a line of text.
DATABASE_FAULT = web.ResponseKey("database_fault", str)
_UNAVAILABLE_PAGE = (
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>503</title></head><body>"
    "<h1>Hizmet geçici olarak kullanılamıyor</h1><p>Veritabanına şu an ulaşılamıyor. "
    "Birkaç saniye sonra yeniden deneyin.</p><h1>Temporarily unavailable</h1>"
    "<p>The database cannot be reached right now. Please try again in a few seconds.</p>"
    "</body></html>")


def unavailable_response(request: web.Request, kind: str) -> web.Response:
    """503 with Retry-After while the database cannot be used (store.faults): clients try
    again, and a provider redelivers a STOP instead of taking a 500 as final."""
    log.warning("database unavailable", extra={"path": request.path, "kind": kind})
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if _wants_page(request):
        return web.Response(status=503, text=_UNAVAILABLE_PAGE, content_type="text/html",
                            headers=headers)
    response = error_response(503, "database_unavailable",
                              f"the database is unavailable ({kind}); try again shortly")
    response.headers.update(headers)
    response[DATABASE_FAULT] = kind
    return response


def _wants_page(request: web.Request) -> bool:
    return (not request.path.startswith(("/api/", "/webhooks/"))
            and "text/html" in request.headers.get("Accept", ""))


# Headers compared as secrets: only ASCII is ever right, and hmac.compare_digest raises
# TypeError on other text (undecodable bytes arrive as lone surrogates).
_SECRET_HEADERS = ("Authorization", "X-CSRF-Token", "X-Hub-Signature-256",
                   "X-Telegram-Bot-Api-Secret-Token")


@web.middleware
async def input_middleware(request: web.Request, handler):
    """Query parameters, path parts, cookies and secret headers of every route (API, pages,
    webhooks), checked once before any handler reads them: yarl decodes %00 to NUL, which
    PostgreSQL text refuses."""
    check_params(request.query.items(), "query parameter")
    check_params(request.match_info.items(), "path part")
    # Only our own cookies: another app's on the same host must not lock a browser out.
    check_params([(k, v) for k, v in request.cookies.items() if k.startswith("izinli_")],
                 "cookie")
    for name in _SECRET_HEADERS:
        if not request.headers.get(name, "").isascii():
            raise ApiError(400, "invalid_header", f"{name} must be ASCII")
    return await handler(request)


async def json_body(request: web.Request, limit: int | None = None) -> dict:
    """The request's JSON object, checked by dashboard.inputs (no NUL or lone surrogate, finite
    numbers, at most MAX_DEPTH deep), or a 400/413/415 ApiError saying what is wrong."""
    # Any declared type is read as JSON: `curl -d '{…}'` labels JSON as a form.
    if request.content_type.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", "send a JSON body (application/json)")
    raw = await read_limited(request, limit or 1024 * 1024)
    body = _parsed(raw) if raw else {}
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return body


async def parse_body(request: web.Request, model, limit: int | None = None):
    """The request's JSON body as an instance of its operation's request model
    (dashboard.models): 400 missing_field, invalid_field, unknown_field, … naming the field."""
    return parse(model, await json_body(request, limit))


def _parsed(raw: bytes):
    try:
        return parse_json(raw)
    except InputError as exc:
        raise ApiError(400, exc.code, "request body: " + exc.message) from None


async def read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"request body is over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def int_query(request: web.Request, name: str, default: int | None, low: int,
              high: int = MAX_INT) -> int | None:
    """An integer query parameter in [low, high] (absent: `default`), or a 400 naming it."""
    try:
        return int_param(request.query, name, default, low, high)
    except InputError as exc:
        raise ApiError(400, exc.code, exc.message) from None

