"""API: a WhatsApp line's message templates — list, refresh from Graph, preview one filled —
and the `message_template_status_update` webhook's effect (dashboard.webhooks hands it here)."""
from __future__ import annotations

import logging
import re

from aiohttp import web

from bot.whatsapp_templates import TemplateSyncError, apply_status_change, sync_line, waba_of
from bot.whatsapp_webhook import TemplateStatusChange
from campaigns.lines import get_line
from campaigns.ports import Line
from campaigns.provider_templates import (
    ProviderTemplateError,
    check_for_campaign,
    filled,
    get_template,
    line_templates,
    sender_names,
)
from campaigns.render import TemplateError, compile_template, render
from dashboard.errors import ApiError, error_response, field, json_body, json_response
from dashboard.keys import TENANT, actor_of, bus_key, channels_key, db_key, operator_desk_key
from dashboard.routing import Operation
from optout import audit

log = logging.getLogger(__name__)
_STATUS = re.compile(r"[A-Z_]{1,32}")
# Graph's answer → our answer: its refusals are a bad gateway (the line's token or WABA id
# must change), its throttling a 503 to retry.
_SYNC_STATUS = {"not_whatsapp": 400, "no_waba_id": 400, "provider_rate_limited": 503}
SAMPLE = {"name": "Ayşe Yılmaz", "phone": "+905321234567"}


async def _whatsapp_line(request: web.Request) -> Line:
    async with request.app[db_key].connect() as conn:
        line = await get_line(conn, request[TENANT], request.match_info["id"])
    if line is None:
        raise ApiError(404, "not_found", "no such line")
    if line.channel != "whatsapp":
        raise ApiError(400, "not_whatsapp", "only WhatsApp lines have templates")
    return line


async def list_templates(request: web.Request) -> web.Response:
    line = await _whatsapp_line(request)
    status = request.query.get("status")
    if status is not None and not _STATUS.fullmatch(status.upper()):
        raise ApiError(400, "invalid_field", "'status' must be a template status such as "
                                             "APPROVED, PENDING, REJECTED or PAUSED")
    async with request.app[db_key].connect() as conn:
        found = await line_templates(conn, request[TENANT], line.id,
                                     status.upper() if status else None)
    return json_response({"line_id": line.id, "waba_id": waba_of(line),
                          "templates": [t.as_json() for t in found]})


async def sync_templates(request: web.Request) -> web.Response:
    line = await _whatsapp_line(request)
    try:
        result = await sync_line(request.app[db_key], request.app[channels_key]["whatsapp"],
                                 line)
    except TemplateSyncError as exc:
        log.warning("whatsapp templates not synced", extra={"line_id": line.id,
                                                            "reason": exc.code})
        response = error_response(_SYNC_STATUS.get(exc.code, 502), exc.code, str(exc))
        if response.status == 503:
            response.headers["Retry-After"] = "60"
        return response
    async with request.app[db_key].begin() as conn:
        await audit.record(conn, request[TENANT], actor_of(request), "line.templates_sync",
                           line_id=line.id, templates=result.templates,
                           paused_campaigns=[c for c, _ in result.paused_campaigns])
    alert_paused(request.app, line.tenant_id, result.paused_campaigns)
    return json_response({"line_id": line.id, "templates": result.templates,
                          "by_status": result.by_status,
                          "paused_campaigns": [{"id": c, "reason": r}
                                               for c, r in result.paused_campaigns]})


async def preview_template(request: web.Request) -> web.Response:
    """A template filled with sample values (each parameter a contact-field template), and
    whether a campaign of this purpose could use it (`problem`, else null)."""
    line = await _whatsapp_line(request)
    body = await json_body(request)
    name, language = field(body, "name", str), field(body, "language", str)
    parameters = field(body, "parameters", list, required=False, default=[])
    purpose = field(body, "purpose", str, required=False, default="commercial")
    if not all(isinstance(p, str) for p in parameters) or len(parameters) > 100:
        raise ApiError(400, "invalid_field", "'parameters' must be a list of strings")
    sample = field(body, "sample", dict, required=False, default={})
    values = {**SAMPLE, **{str(k): str(v) for k, v in sample.items()}}
    async with request.app[db_key].connect() as conn:
        template = await get_template(conn, request[TENANT], line.id, name, language)
        names = await sender_names(conn, request[TENANT])
    problem = None
    try:
        check_for_campaign(template, parameters, commercial=purpose == "commercial",
                           names=names, name=name, language=language)
    except ProviderTemplateError as exc:
        problem = {"code": exc.code, "message": str(exc)}
    if template is None:
        return json_response({"text": None, "characters": 0, "parameter_count": 0,
                              "problem": problem})
    try:
        rendered = [render(compile_template(p), values) if p.strip() else "" for p in parameters]
    except TemplateError as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    text = filled(template.components, rendered)
    return json_response({"text": text, "characters": len(text),
                          "parameter_count": template.parameter_count, "problem": problem})


async def status_webhook(app: web.Application, line: Line, event: TemplateStatusChange) -> int:
    """`message_template_status_update`: the stored status, and campaigns paused (with an
    alert) when Meta paused or disabled the template. Returns the rows changed."""
    changed, paused = await apply_status_change(app[db_key], line, event)
    alert_paused(app, line.tenant_id, paused)
    return changed + len(paused)


def alert_paused(app: web.Application, tenant_id: str, paused: list[tuple[str, str]]) -> None:
    """Tells the owner's linked chats, in the background, as the dispatcher's pauses do."""
    desk = app.get(operator_desk_key)
    if desk is None or not paused:
        return
    for campaign_id, reason in paused:
        app[bus_key].spawn(desk.campaign_event(tenant_id, campaign_id, "paused", reason))


_PREVIEW_BODY = {"type": "object", "required": ["name", "language"], "properties": {
    "name": {"type": "string"}, "language": {"type": "string"},
    "parameters": {"type": "array", "items": {"type": "string"},
                   "description": "contact-field templates filling {{1}}, {{2}}…, e.g. "
                                  "\"{{name}}\", \"{{sehir|şehriniz}}\""},
    "purpose": {"enum": ["commercial", "informational"]}, "sample": {"type": "object"}}}

OPERATIONS = [
    Operation("GET", "/api/v1/lines/{id}/templates", list_templates,
              "A WhatsApp line's message templates as last synced (status=APPROVED: only "
              "those a campaign may use)", query=("status",),
              responses={200: "Templates", 400: "Not a WhatsApp line", 404: "No such line"}),
    Operation("POST", "/api/v1/lines/{id}/templates/sync", sync_templates,
              "Refresh a WhatsApp line's templates from Graph (GET /{waba_id}/"
              "message_templates, all pages). Stored all at once, or not at all when Graph "
              "refuses; open campaigns whose template is now PAUSED or DISABLED are paused. "
              "Audited as line.templates_sync",
              responses={200: "{templates, by_status, paused_campaigns}",
                         400: "Not a WhatsApp line, or no waba_id",
                         502: "Graph refused (whatsapp_auth_failed, whatsapp_unknown_account, "
                              "whatsapp_permission_denied) or could not be reached",
                         503: "Graph throttled the listing (Retry-After)"}),
    Operation("POST", "/api/v1/lines/{id}/templates/preview", preview_template,
              "A synced template filled with sample values, and whether a campaign of this "
              "purpose may use it", body=_PREVIEW_BODY, role="viewer",
              responses={200: "{text, characters, parameter_count, problem}"}),
]
