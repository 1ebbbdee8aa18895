"""API: sending lines, and the sandbox's simulated phones (inbound replies, received messages)."""
from __future__ import annotations

import logging

from aiohttp import web

from bot import registry
from bot.lines import LINE_CHANGED_TOPIC, LINE_GONE_TOPIC
from campaigns.ports import Line
from dashboard.context import context_of
from dashboard.errors import ApiError, json_response, parse_body
from dashboard.keys import (
    bus_key,
    channels_key,
    credentials_key,
)
from dashboard.models import Rule, given, model_of, request_model, rule
from dashboard.routing import Operation
from dashboard.services import lines as lines_service
from dashboard.services.names import named_schema
from dashboard.services.values import address_param, iso, line_fields, refuse_addresses
from dashboard.webhooks import providers as webhooks

log = logging.getLogger(__name__)
__all__ = ["LINE_CHANGED_TOPIC", "LINE_GONE_TOPIC"]


def line_json(line: Line) -> dict:
    """What the owner sees of a line: never its credentials; its channel's options."""
    return lines_service.line_view(line)


async def get_lines(request: web.Request) -> web.Response:
    return json_response({"lines": await lines_service.lines(context_of(request))})


async def post_line(request: web.Request) -> web.Response:
    body = await parse_body(request, line_model())
    return json_response(await lines_service.add_line(context_of(request), given(body)),
                         status=201)


async def patch_line(request: web.Request) -> web.Response:
    body = await parse_body(request, line_patch_model())
    return json_response(await lines_service.edit_line(context_of(request),
                                                       request.match_info["id"], given(body)))


async def pause_line(request: web.Request) -> web.Response:
    return json_response(await lines_service.act(context_of(request), request.match_info["id"],
                                                 "pause"))


async def resume_line(request: web.Request) -> web.Response:
    return json_response(await lines_service.act(context_of(request), request.match_info["id"],
                                                 "resume"))


async def archive_line(request: web.Request) -> web.Response:
    return json_response(await lines_service.act(context_of(request), request.match_info["id"],
                                                 "archive"))


async def delete_line_handler(request: web.Request) -> web.Response:
    await lines_service.delete_line(context_of(request), request.match_info["id"])
    return web.Response(status=204)


def line_gone(app: web.Application, line_id: str) -> None:
    """Bus handler: this process drops what it holds of a deleted line — its unwrapped
    credentials, its provider clients (a Telegram bot: closing it ends a long poll) and the
    webhooks' lookup."""
    line_changed(app, line_id)
    for spec in registry.all_channels():
        if spec.forget is not None and spec.name in app[channels_key]:
            app[bus_key].spawn(spec.forget(app[channels_key][spec.name], line_id))


def line_changed(app: web.Application, line_id: str) -> None:
    """Bus handler: a line was edited, paused, resumed or archived somewhere: its cached
    credentials and webhook lookup are read again (the dispatcher reads lines every round)."""
    app[credentials_key].forget(line_id)
    webhooks.forget_line(app, line_id)


@request_model
class SandboxReply:
    line_id: str = rule(str)
    sender: str = rule(str, alias="from", description="the simulated person's number")
    text: str = rule(str)


async def sandbox_inbound(request: web.Request) -> web.Response:
    body = await parse_body(request, SandboxReply)
    return json_response(await lines_service.sandbox_reply(context_of(request), body.line_id,
                                                           body.sender, body.text))


async def sandbox_messages(request: web.Request) -> web.Response:
    raw = request.query.get("to")
    to = address_param(raw, "sandbox", "to") if raw is not None else None
    try:
        limit = min(max(int(request.query.get("limit", "10000")), 1), 10_000)
    except ValueError:
        raise ApiError(400, "invalid_field", "'limit' must be a number from 1 to 10000") from None
    delivered = await lines_service.sandbox_received(context_of(request), to, limit)
    return json_response({"messages": [
        {"to": d.to, "text": d.text, "at": iso(d.at), "line_id": d.line_id} for d in delivered]})


def _screen(body: dict) -> None:
    """Provider addresses are refused before anything else is read (dashboard.services.values)."""
    refuse_addresses(body, line_fields())


def line_model():
    """POST /lines, from the registered channels' fields (built per call: the channels
    registered now). Which of them a channel needs, the service checks."""
    rules = [("channel", Rule(str, enum=tuple(registry.names()), service_checks=True)),
             ("name", Rule(str)), ("rate_per_second", Rule(float, required=False))]
    return model_of("NewLine", rules + _channel_rules(lambda f: True), screen=_screen)


def line_patch_model():
    """PATCH /lines/{id}: name, rate and the channels' editable fields; nothing else."""
    rules = [("name", Rule(str, required=False)),
             ("rate_per_second", Rule(float, required=False))]
    return model_of("LineChange", rules + _channel_rules(lambda f: f.editable), closed=True,
                    screen=_screen)


_SIMULATE = {"type": "object", "properties": {
    "latency_ms": {"type": "number"}, "failure_rate": {"type": "number"},
    "enforced_rate_per_second": {"type": "number"}}}


def _channel_rules(wanted) -> list[tuple[str, Rule]]:
    """One optional rule per field name over the channels (a name whose kind differs between
    channels takes any of them)."""
    found: dict[str, list] = {}
    for spec in registry.all_channels():
        for f in spec.credentials + spec.options:
            if wanted(f):
                found.setdefault(f.name, []).append(f)
    return [(name, _rule_of(fields)) for name, fields in found.items()]


def _rule_of(fields: list) -> Rule:
    first = fields[0]
    kinds = tuple(dict.fromkeys(f.kind for f in fields))
    extra: dict = {}
    if first.name == "simulate":
        extra = _SIMULATE
    if first.secret:
        extra = extra | {"writeOnly": True}
    bounds = {"minimum": 0, "maximum": len(first.choices) - 1} if first.choices else {}
    return Rule(kinds[0] if len(kinds) == 1 else kinds, required=False, service_checks=True,
                schema=extra, **bounds)


def operations() -> list[Operation]:
    """Built per call: the schemas follow the channels registered (bot.registry)."""
    return [
        Operation("GET", "/api/v1/lines", get_lines, "The tenant's sending lines",
                  response_schemas={200: named_schema("lines")}),
        Operation("POST", "/api/v1/lines", post_line,
                  "Add a sending line of a registered channel: sandbox, a WhatsApp Cloud API "
                  "number or a Telegram bot (credentials are stored wrapped by the operator "
                  "key and never shown again). Provider addresses are the operator's "
                  "configuration: a field naming one (base_url, url, api_url, endpoint, any "
                  "*_url, or a URL value) is a 400 address_not_allowed naming the field",
                  model=line_model(), responses={201: "Line created", 400: "Invalid line"},
                  role="admin"),
        Operation("PATCH", "/api/v1/lines/{id}", patch_line,
                  "Edit a line: name, rate_per_second (up to its channel's maximum) and its "
                  "channel's editable fields (WhatsApp: messaging_tier, waba_id, access_token; "
                  "Telegram: bot_token). A token is a rotation: the next send uses it, in "
                  "every process. Other fields are a 400 unknown_field. Audited as "
                  "line.update (never a secret)", model=line_patch_model(),
                  responses={200: "The line", 400: "Invalid change", 404: "No such line",
                             409: "The line is archived"}, role="admin"),
        Operation("POST", "/api/v1/lines/{id}/pause", pause_line,
                  "Pause a line (reason \"paused by owner\"): nothing is sent on it until it "
                  "is resumed. Audited as line.pause",
                  responses={200: "The line", 404: "No such line",
                             409: "The line is archived"}, role="admin"),
        Operation("POST", "/api/v1/lines/{id}/resume", resume_line,
                  "Resume a paused line, whoever paused it (the owner, or the provider: "
                  "WhatsApp 131048 spam limit, 368 policy block, a quality warning); the "
                  "answer's resumed_from says why it was paused. An archived line cannot be "
                  "resumed (409 line_archived). Audited as line.resume",
                  responses={200: "The line, with resumed_from", 404: "No such line",
                             409: "The line is archived"}, role="admin"),
        Operation("POST", "/api/v1/lines/{id}/archive", archive_line,
                  "Archive a line: it stops sending for good but stays listed (state "
                  "archived) with its history; campaigns running, scheduled or waiting on it "
                  "are paused with the reason \"line archived\" (paused_campaigns). It is no "
                  "longer offered for new campaigns. Audited as line.archive",
                  responses={200: "The line, with paused_campaigns", 404: "No such line"},
                  role="admin"),
        *OPERATIONS,
    ]


OPERATIONS = [
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
              model=SandboxReply,
              responses={200: "Applied", 404: "No such line"}),
    Operation("GET", "/api/v1/sandbox/messages", sandbox_messages,
              "What simulated phones received, oldest first: the newest `limit` (default "
              "and most 10000) messages (needs the vault unlocked)", query=("to", "limit"),
              responses={200: "Messages", 423: "Vault is locked"}),
]
