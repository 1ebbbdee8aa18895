"""Turns every failure into `{"error": {"code", "message"}}`; nothing else reaches a client."""
from __future__ import annotations

import json
import logging

from aiohttp import web

from campaigns.audiences import AudienceError
from campaigns.lines import LineInputError
from campaigns.service import CampaignError, CampaignNotFoundError, CampaignStateError
from crypto.errors import CorruptDataError, VaultLockedError, WrongPassphraseError
from dashboard.accounts import AccountError, NotFoundError
from optout.ledger import ConsentInputError
from optout.suppression import SuppressionInputError
from optout.tenants import TenantNotFoundError

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


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status)


# Core exceptions → (status, code). Their messages are written to be shown.
_KNOWN: list[tuple[type[Exception], int, str | None]] = [
    (WrongPassphraseError, 403, "wrong_passphrase"),
    (VaultLockedError, 423, "vault_locked"),
    (NotFoundError, 404, None),
    (TenantNotFoundError, 404, None),
    (CampaignNotFoundError, 404, None),
    (CampaignStateError, 409, None),
    (CampaignError, 400, None),
    (AccountError, 400, None),
    (AudienceError, 400, None),
    (LineInputError, 400, None),
    (ConsentInputError, 400, None),
    (SuppressionInputError, 400, None),
]

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               409: "conflict",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "unprocessable", 429: "too_many_requests"}


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
        for kind, status, code in _KNOWN:
            if isinstance(exc, kind):
                return error_response(status, code or getattr(exc, "code", "error"), str(exc))
        # Only the exception type is logged: its text may carry personal data.
        log.error("unhandled error", extra={"path": request.path, "error": type(exc).__name__})
        return error_response(500, "internal", "internal error")


async def json_body(request: web.Request, limit: int | None = None) -> dict:
    """The request's JSON object, or a 400/413/415 ApiError saying what is wrong."""
    # Any declared type is read as JSON: `curl -d '{…}'` labels JSON as a form.
    if request.content_type.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", "send a JSON body (application/json)")
    raw = await read_limited(request, limit or 1024 * 1024)
    try:
        body = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return body


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


def field(body: dict, name: str, kind: type, required: bool = True, default=None):
    """body[name] checked against `kind`; a 400 naming the field otherwise."""
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, "missing_field", f"'{name}' is required")
        return default
    value = body[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ApiError(400, "invalid_field", f"'{name}' must be {_KIND_NAMES.get(kind, kind)}")
    return value


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "an object", list: "an array"}
