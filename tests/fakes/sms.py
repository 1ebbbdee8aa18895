"""A tiny SMS gateway, for the toy SMS channel that proves a channel can be added through the
registry alone (tests/bot/toy_sms.py). Shaped like common SMS HTTP APIs: POST /messages with a
bearer API key and {"from", "to", "text", "reference"} → 201 {"id"}; delivery reports are
POSTed back signed with HMAC-SHA256 of the raw body (X-Sms-Signature: sha256=<hex>)."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass, field

from aiohttp import web

SIGNATURE_HEADER = "X-Sms-Signature"


@dataclass
class SmsState:
    api_key: str = "sms-key-1"
    sent: list[dict] = field(default_factory=list)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))


def create_sms_app(state: SmsState) -> web.Application:
    async def messages(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {state.api_key}":
            return web.json_response({"error": {"code": 401, "message": "bad API key"}},
                                     status=401)
        body = await request.json()
        to = str(body.get("to", ""))
        if not (to.startswith("+") and to[1:].isdigit()):
            return web.json_response({"error": {"code": 21211, "message": "invalid 'to'"}},
                                     status=400)
        message = {"id": f"sms-{next(state.ids)}", "to": to, "from": body.get("from"),
                   "text": body.get("text"), "reference": body.get("reference")}
        state.sent.append(message)
        return web.json_response({"id": message["id"]}, status=201)

    app = web.Application()
    app.router.add_post("/messages", messages)
    return app


def delivery_report(secret: str, message: dict, status: str, error_code: int | None = None,
                    at: int = 1_700_000_000) -> tuple[bytes, dict]:
    """A signed delivery report for a sent message: (raw body, headers)."""
    body = json.dumps({"reports": [{
        "id": message["id"], "to": message["to"], "status": status,
        "reference": message["reference"], "error_code": error_code, "at": at}]}).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {SIGNATURE_HEADER: f"sha256={digest}", "Content-Type": "application/json"}
