"""API: sending lines, and the sandbox's simulated phones (inbound replies, received messages)."""
from __future__ import annotations

import logging

from aiohttp import web

from bot.telegram import TelegramCredentials, TelegramLineError, new_webhook_secret
from bot.whatsapp import WhatsAppCredentials
from campaigns.lines import (
    LineDeleteError,
    add_provider_line,
    add_sandbox_line,
    delete_line,
    get_line,
    list_lines,
)
from campaigns.ports import Line
from campaigns.throttle import WHATSAPP_TIERS
from dashboard import webhooks
from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.keys import (
    TENANT,
    actor_of,
    bus_key,
    channels_key,
    credentials_key,
    db_key,
    inbound_key,
    public_url_key,
    sandbox_key,
)
from dashboard.routing import Operation
from optout import audit
from optout.addresses import normalise_address
from optout.outbound import names_an_address

log = logging.getLogger(__name__)
LINE_GONE_TOPIC = "line.gone"  # bus: the id of a deleted line


def line_json(line: Line) -> dict:
    """What the owner sees of a line: never its credentials."""
    options = line.options or {}
    found = {"id": line.id, "channel": line.channel, "name": line.name,
             "rate_per_second": line.rate_per_second, "state": line.state,
             "state_reason": line.state_reason,
             "webhook_path": f"/webhooks/{line.channel}/{line.id}"
             if line.channel != "sandbox" else None}
    found.update({k: options[k] for k in ("simulate", "messaging_tier") if k in options})
    return found


async def get_lines(request: web.Request) -> web.Response:
    async with request.app[db_key].connect() as conn:
        found = await list_lines(conn, request[TENANT])
    return json_response({"lines": [line_json(line) for line in found]})


LINE_FIELDS = ("channel", "name", "rate_per_second", "simulate", "phone_number_id",
               "access_token", "app_secret", "verify_token", "waba_id", "messaging_tier",
               "bot_token")


def refuse_addresses(body: object, known: tuple[str, ...], where: str = "") -> None:
    """A 400 naming the first field that would point a provider call somewhere: provider
    addresses are the operator's (providers.*), and a tenant's would receive the line's
    tokens and its recipients' numbers. Checked before anything else is read or called."""
    if not isinstance(body, dict):
        return
    for key, value in body.items():
        if names_an_address(str(key), None if key in known else value):
            raise ApiError(400, "address_not_allowed",
                           f"'{where}{key}' is not accepted: provider addresses are set by "
                           "the operator (providers.* in the configuration), not per tenant")


async def post_line(request: web.Request) -> web.Response:
    body = await json_body(request)
    refuse_addresses(body, LINE_FIELDS)
    channel = field(body, "channel", str)
    name = field(body, "name", str).strip()
    if not name or len(name) > 200:
        raise ApiError(400, "invalid_field", "'name' must be 1 to 200 characters")
    if channel == "whatsapp":
        return await _post_whatsapp_line(request, body, name)
    if channel == "telegram":
        return await _post_telegram_line(request, body, name)
    if channel != "sandbox":
        raise ApiError(400, "unsupported_channel",
                       f"unknown channel '{channel}'; use sandbox, whatsapp or telegram")
    rate = field(body, "rate_per_second", float, required=False, default=100.0)
    simulate = field(body, "simulate", dict, required=False, default=None)
    async with request.app[db_key].begin() as conn:
        line = await add_sandbox_line(conn, request[TENANT], name, rate, simulate)
    return json_response(line_json(line), status=201)


async def _post_whatsapp_line(request: web.Request, body: dict, name: str) -> web.Response:
    creds = WhatsAppCredentials(
        phone_number_id=field(body, "phone_number_id", str),
        access_token=field(body, "access_token", str), app_secret=field(body, "app_secret", str),
        verify_token=field(body, "verify_token", str))
    tier = field(body, "messaging_tier", int, required=False, default=0)
    if not 0 <= tier < len(WHATSAPP_TIERS):
        raise ApiError(400, "invalid_field", f"'messaging_tier' must be 0 to "
                                             f"{len(WHATSAPP_TIERS) - 1} (250 → unlimited)")
    wrapped = request.app[credentials_key].wrap(creds.to_json())
    rate = field(body, "rate_per_second", float, required=False, default=None)
    async with request.app[db_key].begin() as conn:
        line = await add_provider_line(conn, request[TENANT], "whatsapp", name, rate, wrapped,
                                       {"messaging_tier": tier})
    return json_response(line_json(line), status=201)


async def _post_telegram_line(request: web.Request, body: dict, name: str) -> web.Response:
    creds = TelegramCredentials(bot_token=field(body, "bot_token", str),
                                webhook_secret=new_webhook_secret())
    wrapped = request.app[credentials_key].wrap(creds.to_json())
    rate = field(body, "rate_per_second", float, required=False, default=None)
    async with request.app[db_key].begin() as conn:
        line = await add_provider_line(conn, request[TENANT], "telegram", name, rate, wrapped)
    public_url = request.app[public_url_key]
    if public_url:  # otherwise the poller picks the line up within seconds
        try:
            await request.app[channels_key]["telegram"].set_webhook(
                line, f"{public_url.rstrip('/')}/webhooks/telegram/{line.id}",
                creds.webhook_secret)
        except TelegramLineError as exc:
            log.warning("telegram webhook not set", extra={"line_id": line.id,
                                                           "reason": exc.code})
    return json_response(line_json(line), status=201)


async def delete_line_handler(request: web.Request) -> web.Response:
    line = await tenant_line(request, request.match_info["id"])
    telegram = request.app[channels_key]["telegram"]
    webhook = line.channel == "telegram" and bool(request.app[public_url_key])
    if webhook:  # loaded now: Telegram is told after the commit, when they are gone
        try:
            await request.app[credentials_key].telegram(line)
        except Exception as exc:  # unreadable credentials: nothing to tell Telegram with
            log.warning("telegram webhook cannot be removed", extra={
                "line_id": line.id, "error": type(exc).__name__})
            webhook = False
    async with request.app[db_key].begin() as conn:
        try:
            drafts = await delete_line(conn, line)
        except LineDeleteError as exc:
            raise ApiError(409, exc.code, str(exc)) from None
        await audit.record(conn, request[TENANT], actor_of(request), "line.delete",
                           line_id=line.id, channel=line.channel, cancelled_drafts=drafts)
    if webhook:
        try:
            await telegram.delete_webhook(line)
        except TelegramLineError as exc:  # the bot's token is gone from here either way
            log.warning("telegram webhook not removed", extra={"line_id": line.id,
                                                               "reason": exc.code})
    request.app[credentials_key].forget(line.id)
    if line.channel == "telegram":
        # Closing its session ends a long poll in flight; the poller then finds no
        # credentials and stops.
        await telegram.forget(line.id)
    try:  # the other processes drop theirs (the line is gone either way)
        await request.app[bus_key].announce(LINE_GONE_TOPIC, line.id)
    except Exception as exc:  # their webhook lookups then lapse within a minute
        log.warning("line deletion not announced", extra={"line_id": line.id,
                                                          "error": type(exc).__name__})
    return web.Response(status=204)


def line_gone(app: web.Application, line_id: str) -> None:
    """Bus handler: this process drops what it holds of a deleted line — its unwrapped
    credentials, its Telegram bot (closing it ends a long poll) and the webhooks' lookup."""
    app[credentials_key].forget(line_id)
    webhooks.forget_line(app, line_id)
    app[bus_key].spawn(app[channels_key]["telegram"].forget(line_id))


async def tenant_line(request: web.Request, line_id: str) -> Line:
    async with request.app[db_key].connect() as conn:
        line = await get_line(conn, request[TENANT], line_id)
    if line is None:
        raise ApiError(404, "not_found", "no such line")
    return line


def address_param(raw: str | None, channel: str, name: str) -> str:
    if not raw or not raw.strip():
        raise ApiError(400, "missing_field", f"'{name}' is required")
    address = normalise_address(raw, channel)
    if address is None:
        raise ApiError(400, "invalid_address", f"'{name}' is not a valid {channel} address")
    return address


async def sandbox_inbound(request: web.Request) -> web.Response:
    body = await json_body(request)
    line = await tenant_line(request, field(body, "line_id", str))
    if line.channel != "sandbox":
        raise ApiError(400, "not_sandbox", "this line is not a sandbox line")
    address = address_param(field(body, "from", str), "sandbox", "from")
    text = field(body, "text", str)
    outcome = await request.app[inbound_key].receive(line, address, text)
    return json_response({"intent": outcome.intent.value if outcome.intent else None,
                              "duplicate": outcome.duplicate,
                              "replied": outcome.reply is not None})


async def sandbox_messages(request: web.Request) -> web.Response:
    raw = request.query.get("to")
    to = address_param(raw, "sandbox", "to") if raw is not None else None
    try:
        limit = min(max(int(request.query.get("limit", "10000")), 1), 10_000)
    except ValueError:
        raise ApiError(400, "invalid_field", "'limit' must be a number from 1 to 10000") from None
    delivered = await request.app[sandbox_key].received(request[TENANT], to, limit)
    return json_response({"messages": [
        {"to": d.to, "text": d.text, "at": iso(d.at), "line_id": d.line_id} for d in delivered]})


def iso(ts: float | None) -> str | None:
    from datetime import UTC, datetime
    try:
        return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()
    except (OverflowError, ValueError, OSError):  # a row stored before inputs were checked
        return None


LINE_SCHEMA = {"type": "object", "required": ["channel", "name"], "properties": {
    "channel": {"enum": ["sandbox", "whatsapp", "telegram"]}, "name": {"type": "string"},
    "phone_number_id": {"type": "string"}, "access_token": {"type": "string"},
    "app_secret": {"type": "string"}, "verify_token": {"type": "string"},
    "messaging_tier": {"type": "integer"}, "bot_token": {"type": "string"},
    "rate_per_second": {"type": "number"},
    "simulate": {"type": "object", "properties": {
        "latency_ms": {"type": "number"}, "failure_rate": {"type": "number"},
        "enforced_rate_per_second": {"type": "number"}}}}}

OPERATIONS = [
    Operation("GET", "/api/v1/lines", get_lines, "The tenant's sending lines"),
    Operation("POST", "/api/v1/lines", post_line,
              "Add a sending line: sandbox, a WhatsApp Cloud API number or a Telegram bot "
              "(credentials are stored wrapped by the operator key and never shown again). "
              "Provider addresses are the operator's configuration: a field naming one "
              "(base_url, url, api_url, endpoint, any *_url, or a URL value) is a 400 "
              "address_not_allowed naming the field",
              body=LINE_SCHEMA, responses={201: "Line created", 400: "Invalid line"},
              role="admin"),
    Operation("DELETE", "/api/v1/lines/{id}", delete_line_handler,
              "Delete a line. Refused (409 line_in_use, naming them) while a campaign on it is "
              "running, scheduled, paused or waiting for an unlock: cancel those first, so no "
              "campaign stops without the owner saying so. Its drafts are cancelled, its "
              "credentials destroyed, its Telegram webhook removed or polling stopped, and "
              "its operator chats unlinked; finished campaigns keep their history. The last "
              "sandbox line is kept (409 last_sandbox_line): it holds no credentials and the "
              "sandbox needs it. Audited as line.delete",
              responses={204: "Deleted", 404: "No such line",
                         409: "Campaigns still use it, or it is the last sandbox line"},
              role="admin"),
    Operation("POST", "/api/v1/sandbox/inbound", sandbox_inbound,
              "Simulate a recipient's reply on a sandbox line (STOP, BAŞLA, YARDIM, …)",
              body={"type": "object", "required": ["line_id", "from", "text"], "properties": {
                  "line_id": {"type": "string"}, "from": {"type": "string"},
                  "text": {"type": "string"}}},
              responses={200: "Applied", 404: "No such line"}),
    Operation("GET", "/api/v1/sandbox/messages", sandbox_messages,
              "What simulated phones received, oldest first: the newest `limit` (default "
              "and most 10000) messages (needs the vault unlocked)", query=("to", "limit"),
              responses={200: "Messages", 423: "Vault is locked"}),
]
