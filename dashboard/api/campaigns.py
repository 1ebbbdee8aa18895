"""API: campaigns — create, start, pause, resume, cancel, retry failed, preview, status, dry
run. Thin: each handler parses its request, calls dashboard.services.campaigns (which the
campaign pages call too) and answers; errors map in dashboard.errors."""
from __future__ import annotations

from aiohttp import web

from campaigns.service import CampaignError, NewCampaign
from dashboard.errors import ApiError, field, int_query, json_body, json_response
from dashboard.inputs import MAX_INT
from dashboard.keys import directory_key
from dashboard.routing import Operation
from dashboard.services import campaigns as campaign_service
from dashboard.services import context_of
from dashboard.services.values import address_param


def _send_at(body: dict, now: float | None = None) -> float | None:
    """send_at as a timestamp within [now − 1 min, now + 1 year], or a 400 naming it."""
    try:
        return campaign_service.parse_send_at(body.get("send_at"), now)
    except CampaignError as exc:
        raise ApiError(400, exc.code, str(exc)) from None


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    spec = NewCampaign(
        name=field(body, "name", str), line_id=field(body, "line_id", str),
        list_id=field(body, "list_id", str),
        purpose=field(body, "purpose", str, required=False, default="commercial"),
        template=field(body, "template", str), send_at=_send_at(body),
        channel_template=field(body, "whatsapp_template", dict, required=False, default=None),
        confirm_informational=_confirmation(body),
        outside_window=field(body, "outside_window", str, required=False, default=None))
    return json_response(await campaign_service.create(context_of(request), spec), status=201)


def _confirmation(body: dict) -> bool:
    return field(body, "confirm_informational", bool, required=False, default=False)


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


def _action(name: str):
    async def handler(request: web.Request) -> web.Response:
        options = await _action_options(request, name)
        return json_response(await campaign_service.act(
            context_of(request), request.match_info["id"], name, **options))
    handler.__name__ = f"campaign_{name}"
    return handler


async def _action_options(request: web.Request, name: str) -> dict:
    """retry's `{"include_unknown": true}`: `unknown` messages may have been delivered, so
    they are sent again only when asked for by name (the person may get them twice).
    start's `{"confirm_informational": true}`: see campaigns.commercial."""
    if name == "start":
        return {"confirm_informational": _confirmation(await json_body(request))}
    if name != "retry":
        return {}
    body = await json_body(request)
    return {"include_unknown": field(body, "include_unknown", bool, required=False,
                                     default=False)}


async def preview(request: web.Request) -> web.Response:
    """Renders the campaign for one contact of its list (by address, or the first one)."""
    body = await json_body(request)
    raw = field(body, "address", str, required=False, default=None)
    ctx = context_of(request)
    index = None
    if raw is not None:
        index = request.app[directory_key].index(ctx.tenant_id,
                                                 address_param(raw, "sandbox", "address"))
    return json_response(await campaign_service.preview(ctx, request.match_info["id"], index))


async def preview_draft(request: web.Request) -> web.Response:
    """A template as a recipient would read it, before any campaign exists: sample values,
    the mandatory footer for commercial messages, and the character count. No unlock needed."""
    body = await json_body(request)
    template = field(body, "template", str)
    purpose = field(body, "purpose", str, required=False, default="commercial")
    sample = field(body, "sample", dict, required=False, default={})
    return json_response(await campaign_service.preview_draft(
        context_of(request), template, purpose, sample))


CREATE_SCHEMA = {"type": "object", "required": ["name", "line_id", "list_id", "template"],
                 "properties": {"name": {"type": "string"}, "line_id": {"type": "string"},
                                "list_id": {"type": "string"},
                                "purpose": {"enum": ["commercial", "informational"]},
                                "template": {"type": "string"},
                                "confirm_informational": {
                                    "type": "boolean", "default": False,
                                    "description": "informational text that reads as "
                                                   "commercial (promotions, greetings) is "
                                                   "refused with looks_commercial unless "
                                                   "confirmed; audited with its words"},
                                "whatsapp_template": {"type": "object", "description": (
                                    "on a WhatsApp line: a template synced for the line "
                                    "(POST /lines/{id}/templates/sync) and APPROVED; one "
                                    "parameter per body {{n}}, each a contact-field "
                                    "template with fallbacks; for commercial campaigns it "
                                    "must name the sender and offer a refusal (RET text or "
                                    "an opt-out quick reply)"), "properties": {
                                    "name": {"type": "string"}, "language": {"type": "string"},
                                    "parameters": {"type": "array",
                                                   "items": {"type": "string"}}}},
                                "outside_window": {
                                    "enum": ["skip", "template"],
                                    "description": "WhatsApp 24 h window. Free text reaches "
                                                   "only people who wrote to the line in the "
                                                   "last 24 h; the others are skipped as "
                                                   "outside_window (default, and the only "
                                                   "choice without whatsapp_template). "
                                                   "\"template\": free text inside the "
                                                   "window, whatsapp_template outside it. "
                                                   "With whatsapp_template and no "
                                                   "outside_window, everyone gets the "
                                                   "template"},
                                "send_at": {"type": ["string", "number"],
                                            "format": "date-time",
                                            "description": "ISO 8601 or Unix seconds, from "
                                                           "now to one year ahead"}}}
_ACTIONS = {"start": "Start (builds the outbox; scheduled when send_at is in the future)",
            "pause": "Pause", "resume": "Resume a paused campaign",
            "cancel": "Cancel; pending messages are skipped as cancelled",
            "retry": "Retry failed: failed messages go back to pending; unknown ones (which "
                     "may have been delivered: the person may get them twice) only with "
                     "include_unknown"}
_ACTION_BODIES = {"retry": {"type": "object", "properties": {
    "include_unknown": {"type": "boolean", "default": False}}},
    "start": {"type": "object", "properties": {
        "confirm_informational": {"type": "boolean", "default": False}}}}

OPERATIONS = [
    Operation("POST", "/api/v1/campaigns", create, "Create a campaign (draft)",
              body=CREATE_SCHEMA, responses={201: "Created", 400: "Invalid (e.g. unknown "
                                             "placeholder; looks_commercial: informational "
                                             "text that reads as commercial, words in "
                                             "error.words; WhatsApp templates: "
                                             "unknown_template, template_not_approved, "
                                             "template_parameters, unsupported_template, "
                                             "template_lacks_opt_out, template_lacks_sender, "
                                             "marketing_template)",
                                             404: "No such line or list"}),
    Operation("GET", "/api/v1/campaigns", index, "The tenant's campaigns, newest first",
              query=("limit",)),
    Operation("GET", "/api/v1/stats", stats,
              "Today: messages entering each state, messages waiting, opt-outs, people "
              "suppressed"),
    Operation("POST", "/api/v1/templates/preview", preview_draft,
              "A draft template rendered with sample values, footer and character count",
              body={"type": "object", "required": ["template"], "properties": {
                  "template": {"type": "string"}, "purpose": {"type": "string"},
                  "sample": {"type": "object"}}}),
    Operation("GET", "/api/v1/campaigns/{id}", show,
              "A campaign with counts, skipped_by_reason and failed_by_reason, derived from "
              "its outbox; `window` {inside, of}: its list's people inside their 24 h "
              "WhatsApp window now (free-text WhatsApp campaigns, else null)"),
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
                body=_ACTION_BODIES.get(name),
                responses={200: "Campaign", 409: "Not allowed in this state"
                           + ("; empty_list: nobody on the campaign's list"
                              if name == "start" else ""),
                           **({400: "looks_commercial: informational text that reads as "
                                    "commercial, not confirmed"} if name == "start" else {})})
      for name, summary in _ACTIONS.items()],
    Operation("POST", "/api/v1/campaigns/{id}/preview", preview,
              "Render the message for a contact of the list (needs the vault unlocked)",
              body={"type": "object", "properties": {"address": {"type": "string"}}},
              responses={200: "{to, text}", 423: "Vault is locked"}),
]
