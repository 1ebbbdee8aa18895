"""API: a WhatsApp line's message templates — list, refresh from Graph, preview one filled —
and the `message_template_status_update` webhook's effect (dashboard.webhooks.providers
hands it here)."""
from __future__ import annotations

import logging

from aiohttp import web

from bot.whatsapp_templates import TemplateSyncError, apply_status_change
from bot.whatsapp_webhook import TemplateStatusChange
from campaigns.ports import Line
from dashboard.context import context_of
from dashboard.errors import error_response, json_response, parse_body
from dashboard.keys import db_key
from dashboard.models import request_model, rule
from dashboard.routing import Operation
from dashboard.services import whatsapp_templates as template_services
from dashboard.services.whatsapp_templates import alert_paused

log = logging.getLogger(__name__)
# Graph's answer → our answer: its refusals are a bad gateway (the line's token or WABA id
# must change), its throttling a 503 to retry.
_SYNC_STATUS = {"not_whatsapp": 400, "no_waba_id": 400, "provider_rate_limited": 503}


async def list_templates(request: web.Request) -> web.Response:
    return json_response(await template_services.templates(
        context_of(request), request.match_info["id"], request.query.get("status")))


def sync_refused(exc: TemplateSyncError) -> web.Response:
    """Graph's refusal as the API answers it (a 503 carries Retry-After)."""
    response = error_response(_SYNC_STATUS.get(exc.code, 502), exc.code, str(exc))
    if response.status == 503:
        response.headers["Retry-After"] = "60"
    return response


async def sync_templates(request: web.Request) -> web.Response:
    try:
        return json_response(await template_services.sync(context_of(request),
                                                           request.match_info["id"]))
    except TemplateSyncError as exc:
        log.warning("whatsapp templates not synced", extra={
            "line_id": request.match_info["id"], "reason": exc.code})
        return sync_refused(exc)


@request_model
class PreviewTemplate:
    name: str = rule(str)
    language: str = rule(str)
    parameters: list = rule(list, default=[], items=str, max_length=100, description=(
        "contact-field templates filling {{1}}, {{2}}…, e.g. \"{{name}}\", "
        "\"{{sehir|şehriniz}}\""))
    purpose: str = rule(str, default="commercial", enum=("commercial", "informational"),
                        service_checks=True)
    sample: dict = rule(dict, default={}, description="values for the contact fields")


async def preview_template(request: web.Request) -> web.Response:
    """A template filled with sample values (each parameter a contact-field template), and
    whether a campaign of this purpose could use it (`problem`, else null)."""
    ctx, line_id = context_of(request), request.match_info["id"]
    await template_services.whatsapp_line(ctx, line_id)  # 404 / not_whatsapp before the body
    body = await parse_body(request, PreviewTemplate)
    return json_response(await template_services.preview(
        ctx, line_id, body.name, body.language, body.parameters, body.purpose, body.sample))


async def status_webhook(app: web.Application, line: Line, event: TemplateStatusChange) -> int:
    """`message_template_status_update`: the stored status, and campaigns paused (with an
    alert) when Meta paused or disabled the template. Returns the rows changed."""
    changed, paused = await apply_status_change(app[db_key], line, event)
    alert_paused(app, line.tenant_id, paused)
    return changed + len(paused)


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
              "purpose may use it", model=PreviewTemplate, role="viewer",
              responses={200: "{text, characters, parameter_count, problem}"}),
]
