"""Provider webhooks: WhatsApp Cloud API (signed; messages, statuses, preferences) and the
Telegram Bot API (secret token). They arrive per line, outside /api/v1 and its API keys."""
from __future__ import annotations

import logging
import time

from aiohttp import web

from bot import deliveries, registry
from bot.telegram_updates import verify_secret
from bot.whatsapp_webhook import (
    SIGNATURE_HEADER,
    AccountUpdate,
    InboundOther,
    InboundText,
    PreferenceChange,
    QualityUpdate,
    StatusUpdate,
    TemplateStatusChange,
    handshake,
    parse,
    verify_signature,
)
from campaigns import outbox
from campaigns.lines import line_by_id
from campaigns.ports import Line, OptedOut, reason_of
from dashboard.api import whatsapp_templates as whatsapp_templates_api
from dashboard.errors import ApiError, json_response, read_limited
from dashboard.inputs import InputError, parse_provider_json
from dashboard.keys import (
    credentials_key,
    db_key,
    inbound_key,
    operator_desk_key,
    settings_key,
    telegram_inbound_key,
)
from dashboard.routing import Operation
from dashboard.webhooks import line_signals
from optout.addresses import normalise_phone

log = logging.getLogger(__name__)


# Webhooks come in bursts for a handful of lines; a line's tenant and channel never change.
_lines_key = web.AppKey("webhook_lines", dict)
_LINE_SECONDS = 60.0


def setup(app: web.Application) -> None:
    app[_lines_key] = {}


def forget_line(app: web.Application, line_id: str) -> None:
    """A deleted line is no longer found here (every process hears of it: lines_api)."""
    app[_lines_key].pop(line_id, None)


async def provider_line(request: web.Request, channel: str) -> Line:
    line_id = request.match_info["line_id"]
    cache = request.app[_lines_key]
    cached = cache.get(line_id)
    if cached and time.monotonic() - cached[0] < _LINE_SECONDS:
        line = cached[1]
    else:
        async with request.app[db_key].connect() as conn:
            line = await line_by_id(conn, line_id)
        if line is not None:
            cache[line_id] = (time.monotonic(), line)
    if line is None or line.channel != channel:
        raise ApiError(404, "not_found", "no such line")
    return line


async def whatsapp_handshake(request: web.Request) -> web.Response:
    line = await provider_line(request, "whatsapp")
    creds = await request.app[credentials_key].whatsapp(line)
    challenge = handshake(request.query, creds.verify_token)
    if challenge is None:
        raise ApiError(403, "forbidden", "hub.verify_token does not match this line")
    return web.Response(text=challenge)


def _provider_json(raw: bytes, line: Line, provider: str):
    """The authenticated body as JSON, or None when it can never be used (not JSON, nested
    too deep, non-finite numbers). Such a body is acknowledged, not refused: Meta retries a
    non-2xx answer for 36 hours and Telegram holds every later update behind it, and retrying
    the same bytes cannot succeed. Logged by reason only (the body is personal data)."""
    try:
        return parse_provider_json(raw)
    except InputError as exc:
        log.warning("webhook body dropped", extra={"provider": provider, "line_id": line.id,
                                                   "reason": exc.code})
        return None


def _dropped() -> web.Response:
    return json_response({"ok": True, "handled": 0, "dropped": True})


async def whatsapp_events(request: web.Request) -> web.Response:
    line = await provider_line(request, "whatsapp")
    creds = await request.app[credentials_key].whatsapp(line)
    raw = await read_limited(request, request.app[settings_key].max_body_bytes)
    if not verify_signature(creds.app_secret, raw, request.headers.get(SIGNATURE_HEADER)):
        raise ApiError(401, "bad_signature", "X-Hub-Signature-256 does not match the body")
    payload = _provider_json(raw, line, "whatsapp")
    if payload is None:
        return _dropped()
    # Meta retries a delivery for up to 36 h: the same signed bytes twice are one delivery.
    delivery = deliveries.whatsapp_key(raw)
    if await deliveries.seen(request.app[db_key], line.id, delivery):
        return json_response({"ok": True, "handled": 0, "duplicate": True})
    handled = 0
    for event in parse(payload if isinstance(payload, dict) else {}):
        if event.phone_number_id not in (None, creds.phone_number_id):
            continue  # another number of the same app
        handled += await _whatsapp_event(request.app, line, event)
    await deliveries.remember(request.app[db_key], line.id, delivery)
    return json_response({"ok": True, "handled": handled})


async def _whatsapp_event(app: web.Application, line: Line, event) -> int:
    router = app[inbound_key]
    if isinstance(event, InboundText):
        address = normalise_phone(event.from_address)
        if address:
            await router.receive(line, address, event.text, event.message_id,
                                 sent_at=event.timestamp)
            return 1
    elif isinstance(event, StatusUpdate):
        return await _status(app, line, event)
    elif isinstance(event, InboundOther):
        address = normalise_phone(event.from_address)
        if address:
            await router.wrote(line, address, at=event.timestamp)
            return 1
    elif isinstance(event, QualityUpdate | AccountUpdate):
        return await line_signals.apply(app[db_key], line, event, app.get(operator_desk_key))
    elif isinstance(event, TemplateStatusChange):
        return await whatsapp_templates_api.status_webhook(app, line, event)
    elif isinstance(event, PreferenceChange):
        address = normalise_phone(event.address)
        # Dated by the event's own timestamp: a late or replayed older one changes nothing.
        if address and event.value == "stop":
            return int(await router.stopped_by_provider(
                line, address, "whatsapp:user_preferences",
                "marketing messages stopped in WhatsApp", at=event.timestamp))
        if address and event.value == "resume":
            return int(await router.granted(line, address, "whatsapp:user_preferences",
                                            "marketing messages resumed in WhatsApp",
                                            at=event.timestamp))
    return 0


async def _status(app: web.Application, line: Line, event: StatusUpdate) -> int:
    reference = event.reference or ""
    # ASCII digits that fit a BIGINT: "²" is a digit to isdigit() but not to int().
    if not (reference.isascii() and reference.isdigit() and len(reference) < 19):
        return 0  # not one of our campaign messages (a confirmation, another tool)
    reason = None
    if event.status == "failed" and event.error_code is not None:
        outcome = registry.get(line.channel).outcome_for_error(event.error_code)
        reason = reason_of(outcome)
        address = normalise_phone(event.recipient)
        if isinstance(outcome, OptedOut) and address:
            await app[inbound_key].stopped_by_provider(
                line, address, "whatsapp:131050", "recipient stopped marketing messages",
                at=event.timestamp)
    async with app[db_key].begin() as conn:
        changed = await outbox.apply_status(conn, line.tenant_id, int(event.reference),
                                            event.status, event.message_id, reason)
    return int(changed)


async def telegram_events(request: web.Request) -> web.Response:
    line = await provider_line(request, "telegram")
    creds = await request.app[credentials_key].telegram(line)
    if not verify_secret(creds.webhook_secret,
                         request.headers.get("X-Telegram-Bot-Api-Secret-Token")):
        raise ApiError(401, "bad_secret", "X-Telegram-Bot-Api-Secret-Token does not match")
    raw = await read_limited(request, request.app[settings_key].max_body_bytes)
    update = _provider_json(raw, line, "telegram")
    if update is None:
        return _dropped()
    handled = await request.app[telegram_inbound_key].handle(
        line, update if isinstance(update, dict) else {})
    return json_response({"ok": True, "handled": handled})


async def channel_events(request: web.Request, spec, route) -> web.Response:
    """A channel without a handler of its own (bot.registry): its route verifies the request
    with the line's credentials and parses the body into events; delivery statuses move the
    outbox, inbound texts go to the inbound router."""
    line = await provider_line(request, spec.name)
    creds = await request.app[credentials_key].load(line)
    raw = await read_limited(request, request.app[settings_key].max_body_bytes)
    if not route.verify(creds, request.headers, raw):
        raise ApiError(401, "bad_signature", "the request is not signed by the provider")
    payload = _provider_json(raw, line, spec.name)
    if payload is None:
        return _dropped()
    handled = 0
    for event in route.parse(payload):
        if isinstance(event, StatusUpdate):
            handled += await _status(request.app, line, event)
        elif isinstance(event, InboundText) and (address := spec.normalise(event.from_address)):
            await request.app[inbound_key].receive(line, address, event.text, event.message_id,
                                                   sent_at=event.timestamp)
            handled += 1
    return json_response({"ok": True, "handled": handled})


def operations() -> list[Operation]:
    """Each registered channel's webhook routes (bot.registry), outside /api/v1."""
    found = []
    for spec in registry.all_channels():
        for route in spec.webhooks:
            handler = globals()[route.handler] if route.handler else _generic(spec, route)
            found.append(Operation(
                route.method, f"/webhooks/{spec.name}/{{line_id}}", handler, route.summary,
                auth=False, body={"type": "object"} if route.method == "POST" else None,
                responses=dict(route.responses), query=route.query))
    return found


def _generic(spec, route):
    async def handler(request: web.Request) -> web.Response:
        return await channel_events(request, spec, route)
    return handler
