"""API: campaigns — create, start, pause, resume, cancel, retry failed, preview, status, dry
run. Thin: each handler parses its request, calls dashboard.services.campaigns (which the
campaign pages call too) and answers; errors map in dashboard.errors."""
from __future__ import annotations

import dataclasses

from aiohttp import web

from campaigns.service import CampaignError, NewCampaign
from dashboard.context import context_of
from dashboard.errors import ApiError, int_query, json_response, parse_body
from dashboard.inputs import MAX_INT
from dashboard.keys import directory_key
from dashboard.models import request_model, rule
from dashboard.routing import Operation
from dashboard.services import campaigns as campaign_service
from dashboard.services.names import named_schema
from dashboard.services.values import address_param


@request_model
class CreateCampaign:
    name: str = rule(str)
    line_id: str = rule(str)
    list_id: str = rule(str)
    template: str = rule(str)
    purpose: str = rule(str, default="commercial", enum=("commercial", "informational"),
                        service_checks=True)
    confirm_informational: bool = rule(bool, default=False, description=(
        "informational text that reads as commercial (promotions, greetings) is refused "
        "with looks_commercial unless confirmed; audited with its words"))
    whatsapp_template: dict | None = rule(dict, default=None, description=(
        "on a WhatsApp line: a template synced for the line (POST /lines/{id}/templates/sync) "
        "and APPROVED; one parameter per body {{n}}, each a contact-field template with "
        "fallbacks; for commercial campaigns it must name the sender and offer a refusal (RET "
        "text or an opt-out quick reply)"), schema={"properties": {
            "name": {"type": "string"}, "language": {"type": "string"},
            "parameters": {"type": "array", "items": {"type": "string"}}}})
    outside_window: str | None = rule(str, default=None, enum=("skip", "template"),
                                      service_checks=True, description=(
        "WhatsApp 24 h window. Free text reaches only people who wrote to the line in the "
        "last 24 h; the others are skipped as outside_window (default, and the only choice "
        "without whatsapp_template). \"template\": free text inside the window, "
        "whatsapp_template outside it. With whatsapp_template and no outside_window, "
        "everyone gets the template"))
    send_at: str | float | None = rule(None, default=None, schema={
        "type": ["string", "number"], "format": "date-time",
        "description": "ISO 8601 or Unix seconds, from now to one year ahead"})


def _send_at(raw, now: float | None = None) -> float | None:
    """send_at as a timestamp within [now − 1 min, now + 1 year], or a 400 naming it."""
    try:
        return campaign_service.parse_send_at(raw, now)
    except CampaignError as exc:
        raise ApiError(400, exc.code, str(exc)) from None


async def create(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateCampaign)
    spec = NewCampaign(
        name=body.name, line_id=body.line_id, list_id=body.list_id, purpose=body.purpose,
        template=body.template, send_at=_send_at(body.send_at),
        channel_template=body.whatsapp_template,
        confirm_informational=body.confirm_informational, outside_window=body.outside_window)
    return json_response(await campaign_service.create(context_of(request), spec), status=201)


async def show(request: web.Request) -> web.Response:
    return json_response(await campaign_service.get(context_of(request),
                                                    request.match_info["id"]))


async def dry_run(request: web.Request) -> web.Response:
    """Who of the campaign's list would receive it now and who would be skipped, and why."""
    found = await campaign_service.dry_run(context_of(request), request.match_info["id"])
    return json_response(found.as_dict())


async def window_estimate(request: web.Request) -> web.Response:
    """How many of a list are inside their 24 h WhatsApp window on a line right now (for the
    campaign form): free text reaches only them."""
    for name in ("line_id", "list_id"):
        if not request.query.get(name):
            raise ApiError(400, "missing_field", f"'{name}' is required")
    found = await campaign_service.window_estimate(
        context_of(request), request.query["line_id"], request.query["list_id"])
    return json_response({"window": found})


async def index(request: web.Request) -> web.Response:
    limit = min(max(int_query(request, "limit", 500, -MAX_INT), 1), 500)  # clamped, as ever
    return json_response({"campaigns": await campaign_service.list_campaigns(
        context_of(request), limit)})


async def stats(request: web.Request) -> web.Response:
    """Today's figures (the tenant's time zone): how many messages entered each state today
    (sent, delivered, read, failed, skipped …), messages waiting to go now, refusals recorded
    today (replies, İYS, imports, API), and people suppressed in all."""
    return json_response(await campaign_service.today(context_of(request)))


@request_model
class StartCampaign:
    confirm_informational: bool = rule(bool, default=False, description=(
        "start anyway although the informational text reads as commercial (see campaigns."
        "commercial)"))


@request_model
class RetryCampaign:
    include_unknown: bool = rule(bool, default=False, description=(
        "send `unknown` messages again too: they may have been delivered, so the person may "
        "get them twice"))


_ACTION_MODELS = {"start": StartCampaign, "retry": RetryCampaign}


def _action(name: str):
    async def handler(request: web.Request) -> web.Response:
        options = {}
        if name in _ACTION_MODELS:
            body = await parse_body(request, _ACTION_MODELS[name])
            options = {f.name: getattr(body, f.name) for f in dataclasses.fields(body)}
        return json_response(await campaign_service.act(
            context_of(request), request.match_info["id"], name, **options))
    handler.__name__ = f"campaign_{name}"
    return handler


@request_model
class PreviewCampaign:
    address: str | None = rule(str, default=None, description=(
        "a contact of the campaign's list (default: its first one)"))


async def preview(request: web.Request) -> web.Response:
    """Renders the campaign for one contact of its list (by address, or the first one)."""
    body = await parse_body(request, PreviewCampaign)
    ctx = context_of(request)
    index = None
    if body.address is not None:
        index = request.app[directory_key].index(
            ctx.tenant_id, address_param(body.address, "sandbox", "address"))
    return json_response(await campaign_service.preview(ctx, request.match_info["id"], index))


@request_model
class PreviewDraft:
    template: str = rule(str)
    purpose: str = rule(str, default="commercial", enum=("commercial", "informational"),
                        service_checks=True)
    sample: dict = rule(dict, default={}, description="values for the template's fields")


async def preview_draft(request: web.Request) -> web.Response:
    """A template as a recipient would read it, before any campaign exists: sample values,
    the mandatory footer for commercial messages, and the character count. No unlock needed."""
    body = await parse_body(request, PreviewDraft)
    return json_response(await campaign_service.preview_draft(
        context_of(request), body.template, body.purpose, body.sample))


STATS_SCHEMA = {"type": "object", "properties": {
    "since": {"type": "string", "format": "date-time",
              "description": "today's local midnight in the business's time zone"},
    "messages": {"type": "object", "additionalProperties": {"type": "integer"},
                 "description": "messages that entered each state today (sent, delivered, "
                                "read, failed, skipped, …)"},
    "waiting": {"type": "integer", "description": "messages of open campaigns waiting to go"},
    "opt_outs": {"type": "integer", "description": (
        "refusals recorded today, every one: people's replies and stops, İYS, CSV import rows "
        "and refusals recorded over the API (one person can count more than once)")},
    "opt_outs_by_people": {"type": "integer", "description": (
        "people who refused today themselves — a reply (STOP, a button), İYS RET, a "
        "provider's stop or block — each person once; not imports nor API records. The "
        "dashboard overview's \"opt-outs today\"")},
    "suppressed": {"type": "integer", "description": "people suppressed in all"}}}
_ACTIONS = {"start": "Start (builds the outbox; scheduled when send_at is in the future)",
            "pause": "Pause", "resume": "Resume a paused campaign",
            "cancel": "Cancel; pending messages are skipped as cancelled",
            "retry": "Retry failed: failed messages go back to pending; unknown ones (which "
                     "may have been delivered: the person may get them twice) only with "
                     "include_unknown"}
OPERATIONS = [
    Operation("POST", "/api/v1/campaigns", create, "Create a campaign (draft)",
              model=CreateCampaign, responses={201: "Created", 400: "Invalid (e.g. unknown "
                                             "placeholder; looks_commercial: informational "
                                             "text that reads as commercial, words in "
                                             "error.words; WhatsApp templates: "
                                             "unknown_template, template_not_approved, "
                                             "template_parameters, unsupported_template, "
                                             "template_lacks_opt_out, template_lacks_sender, "
                                             "marketing_template)",
                                             404: "No such line or list"}),
    Operation("GET", "/api/v1/campaigns", index, "The tenant's campaigns, newest first",
              query=("limit",), response_schemas={200: named_schema("campaigns")}),
    Operation("GET", "/api/v1/stats", stats,
              "Today: messages entering each state, messages waiting, opt-outs, people "
              "suppressed", response_schemas={200: STATS_SCHEMA}),
    Operation("POST", "/api/v1/templates/preview", preview_draft,
              "A draft template rendered with sample values, footer and character count",
              model=PreviewDraft),
    Operation("GET", "/api/v1/campaigns/{id}", show,
              "A campaign with counts, skipped_by_reason and failed_by_reason, derived from "
              "its outbox; `window` {inside, of}: its list's people inside their 24 h "
              "WhatsApp window now (free-text WhatsApp campaigns, else null)",
              response_schemas={200: named_schema()}),
    Operation("GET", "/api/v1/campaigns/{id}/dry-run", dry_run,
              "Before you send: the gate run over the campaign's list now, writing nothing: "
              "{recipients, will_send, will_skip, skipped_by_reason, window} (window "
              "{inside, of} for WhatsApp free text, else null). Start refuses an empty list "
              "(409 empty_list)",
              responses={200: "Counts", 404: "No such campaign"}),
    Operation("GET", "/api/v1/window", window_estimate,
              "How many of a list are inside their 24 h WhatsApp window on a line now: "
              "{\"window\": {\"inside\", \"of\"}} (null for lines without a window)",
              query=("line_id", "list_id"), responses={200: "Counts", 404: "No such line or list"}),
    *[Operation("POST", f"/api/v1/campaigns/{{id}}/{name}", _action(name), summary,
                model=_ACTION_MODELS.get(name),
                responses={200: "Campaign", 409: "Not allowed in this state"
                           + ("; empty_list: nobody on the campaign's list"
                              if name == "start" else ""),
                           **({400: "looks_commercial: informational text that reads as "
                                    "commercial, not confirmed"} if name == "start" else {})})
      for name, summary in _ACTIONS.items()],
    Operation("POST", "/api/v1/campaigns/{id}/preview", preview,
              "Render the message for a contact of the list (needs the vault unlocked)",
              model=PreviewCampaign,
              responses={200: "{to, text}", 423: "Vault is locked"}),
]
