"""A WhatsApp line's message templates for campaigns: list them as last synced, refresh them
from Graph, preview one filled with sample values — what the JSON API
(dashboard.api.whatsapp_templates) and the campaign form's picker
(dashboard.pages.campaign_templates) both do."""
from __future__ import annotations

import re

from bot.whatsapp_templates import sync_line, waba_of
from campaigns.lines import LineInputError, LineNotFoundError, get_line
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
from dashboard.keys import bus_key, channels_key, db_key, operator_desk_key
from dashboard.services import Context
from optout import audit

_STATUS = re.compile(r"[A-Z_]{1,32}")
SAMPLE = {"name": "Ayşe Yılmaz", "phone": "+905321234567"}
MAX_PARAMETERS = 100


async def whatsapp_line(ctx: Context, line_id: str) -> Line:
    """The tenant's WhatsApp line; LineNotFoundError (404) or LineInputError not_whatsapp."""
    async with ctx[db_key].connect() as conn:
        line = await get_line(conn, ctx.tenant_id, line_id)
    if line is None:
        raise LineNotFoundError("no such line")
    if line.channel != "whatsapp":
        raise LineInputError("only WhatsApp lines have templates", "not_whatsapp")
    return line


async def templates(ctx: Context, line_id: str, status: str | None = None) -> dict:
    """{line_id, waba_id, templates}: the line's templates as last synced (of one status)."""
    line = await whatsapp_line(ctx, line_id)
    if status is not None and not _STATUS.fullmatch(status.upper()):
        raise LineInputError("'status' must be a template status such as APPROVED, PENDING, "
                             "REJECTED or PAUSED", "invalid_field")
    async with ctx[db_key].connect() as conn:
        found = await line_templates(conn, ctx.tenant_id, line.id,
                                     status.upper() if status else None)
    return {"line_id": line.id, "waba_id": waba_of(line),
            "templates": [t.as_json() for t in found]}


async def sync(ctx: Context, line_id: str) -> dict:
    """Refreshes the line's templates from Graph (audited); campaigns whose template Meta
    paused or disabled are paused, and the owner told. bot.whatsapp_templates.
    TemplateSyncError when Graph refuses (nothing stored)."""
    line = await whatsapp_line(ctx, line_id)
    result = await sync_line(ctx[db_key], ctx[channels_key]["whatsapp"], line)
    async with ctx[db_key].begin() as conn:
        await audit.record(conn, ctx.tenant_id, ctx.actor, "line.templates_sync",
                           line_id=line.id, templates=result.templates,
                           paused_campaigns=[c for c, _ in result.paused_campaigns])
    alert_paused(ctx.components, line.tenant_id, result.paused_campaigns)
    return {"line_id": line.id, "templates": result.templates, "by_status": result.by_status,
            "paused_campaigns": [{"id": c, "reason": r} for c, r in result.paused_campaigns]}


def alert_paused(app, tenant_id: str, paused: list[tuple[str, str]]) -> None:
    """Tells the owner's linked chats, in the background, as the dispatcher's pauses do."""
    desk = app.get(operator_desk_key)
    if desk is None or not paused:
        return
    for campaign_id, reason in paused:
        app[bus_key].spawn(desk.campaign_event(tenant_id, campaign_id, "paused", reason))


async def preview(ctx: Context, line_id: str, name: str, language: str,
                  parameters: list, purpose: str = "commercial",
                  sample: dict | None = None) -> dict:
    """{text, characters, parameter_count, problem}: a synced template filled with sample
    values (each parameter a contact-field template), and whether a campaign of this purpose
    could use it (`problem` {code, message}, else None)."""
    line = await whatsapp_line(ctx, line_id)
    if not all(isinstance(p, str) for p in parameters) or len(parameters) > MAX_PARAMETERS:
        raise LineInputError("'parameters' must be a list of strings", "invalid_field")
    values = {**SAMPLE, **{str(k): str(v) for k, v in (sample or {}).items()}}
    async with ctx[db_key].connect() as conn:
        template = await get_template(conn, ctx.tenant_id, line.id, name, language)
        names = await sender_names(conn, ctx.tenant_id)
    problem = None
    try:
        check_for_campaign(template, parameters, commercial=purpose == "commercial",
                           names=names, name=name, language=language)
    except ProviderTemplateError as exc:
        problem = {"code": exc.code, "message": str(exc)}
    if template is None:
        return {"text": None, "characters": 0, "parameter_count": 0, "problem": problem}
    try:
        rendered = [render(compile_template(p), values) if p.strip() else "" for p in parameters]
    except TemplateError as exc:
        raise LineInputError(str(exc), exc.code) from None
    text = filled(template.components, rendered)
    return {"text": text, "characters": len(text),
            "parameter_count": template.parameter_count, "problem": problem}
