"""API: campaigns — create, start, pause, resume, cancel, retry failed, preview, status."""
from __future__ import annotations

import json
import math
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from aiohttp import web

from campaigns import outbox as outbox_module
from campaigns import service, window
from campaigns.audiences import list_columns
from campaigns.commercial import commercial_words, texts_of
from campaigns.lines import get_line
from campaigns.render import compile_template, compose
from campaigns.service import NewCampaign
from crypto.errors import VaultLockedError
from dashboard.errors import ApiError, field, int_query, json_body, json_response
from dashboard.inputs import MAX_INT
from dashboard.keys import TENANT, actor_of, db_key, directory_key, fields_key, scheduler_hook_key
from dashboard.lines_api import address_param
from dashboard.routing import Operation
from optout import audit
from optout.deadlines import parse_consent_date
from store import raw
from store.tables import campaigns, contacts, list_members

# A campaign is started at most a year ahead; a little slack for clocks and slow clients.
SEND_AT_PAST_SECONDS, SEND_AT_FUTURE_SECONDS = 60, 365 * 86400


def _send_at(body: dict, now: float | None = None) -> float | None:
    """send_at as a timestamp within [now − 1 min, now + 1 year], or a 400 naming it: an
    absurd one used to be stored and then stop every start of the scheduler."""
    raw = body.get("send_at")
    if raw is None:
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        when = float(raw) if abs(raw) < 1e300 else math.inf
    else:
        parsed = parse_consent_date(raw) if isinstance(raw, str) else None
        if parsed is None:
            raise ApiError(400, "invalid_field", "'send_at' must be an ISO 8601 date-time")
        when = parsed.timestamp()
    now = time.time() if now is None else now
    if not (math.isfinite(when)
            and now - SEND_AT_PAST_SECONDS <= when <= now + SEND_AT_FUTURE_SECONDS):
        raise ApiError(400, "invalid_field", "'send_at' must be from now to one year ahead")
    return when


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
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        profile = await app[directory_key].profile(conn, tenant_id)
    sealer = await app[fields_key].shared_sealer(tenant_id, profile.public_key)
    async with app[db_key].begin() as conn:
        campaign_id = await service.create(conn, tenant_id, spec, sealer)
        row = await service.get(conn, tenant_id, campaign_id)
        await audit.record(conn, tenant_id, actor_of(request),
                           "campaign.create", campaign_id=campaign_id, purpose=spec.purpose,
                           **_confirmed(row))
        return json_response(await service.status(conn, row), status=201)


def _confirmation(body: dict) -> bool:
    return field(body, "confirm_informational", bool, required=False, default=False)


def _confirmed(row) -> dict:
    """Audit detail: the commercial-looking words an owner confirmed as informational."""
    if row.purpose != "informational" or not row.commercial_words:
        return {}
    return {"confirm_informational": True, "commercial_words": list(row.commercial_words)}


async def show(request: web.Request) -> web.Response:
    async with request.app[db_key].connect() as conn:
        row = await service.get(conn, request[TENANT], request.match_info["id"])
        body = await service.status(conn, row)
        body["window"] = await window.for_campaign(conn, row, time.time())
        return json_response(body)


async def window_estimate(request: web.Request) -> web.Response:
    """How many of a list are inside their 24 h WhatsApp window on a line right now (for the
    campaign form): free text reaches only them."""
    line_id = request.query.get("line_id", "")
    list_id = request.query.get("list_id", "")
    async with request.app[db_key].connect() as conn:
        if await get_line(conn, request[TENANT], line_id) is None or \
                await list_columns(conn, request[TENANT], list_id) is None:
            raise ApiError(404, "not_found", "no such line or list")
        found = await window.estimate(conn, line_id, list_id, False, None, time.time())
    return json_response({"window": found})


async def index(request: web.Request) -> web.Response:
    limit = min(max(int_query(request, "limit", 500, -MAX_INT), 1), 500)  # clamped, as ever
    q = sa.select(campaigns).where(campaigns.c.tenant_id == request[TENANT]).order_by(
        campaigns.c.created_at.desc()).limit(limit)
    async with request.app[db_key].connect() as conn:
        rows = list(await conn.execute(q))
        return json_response({"campaigns": await service.statuses(conn, rows)})


async def stats(request: web.Request) -> web.Response:
    """Today's figures (the tenant's time zone): how many messages entered each state today
    (sent, delivered, read, failed, skipped …), messages waiting to go now, refusals recorded
    today (replies, İYS, imports, API), and people suppressed in all."""
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        profile = await app[directory_key].profile(conn, tenant_id)
        zone = ZoneInfo(profile.timezone) if profile.timezone else ZoneInfo("Europe/Istanbul")
        midnight = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        since = midnight.timestamp()
        entered = await outbox_module.entered_since(conn, tenant_id, since)
        open_ids = [r[0] for r in await raw.fetch(
            conn, "SELECT id FROM campaigns WHERE tenant_id = ? AND state NOT IN "
                  f"({raw.marks(len(service.TERMINAL))})", (tenant_id, *service.TERMINAL))]
        waiting = sum(by_state["pending"] + by_state["sending"] for by_state, _ in
                      (await outbox_module.counts_many(conn, open_ids)).values())
        opt_outs = (await raw.fetch(
            conn, "SELECT count(*) FROM consent_events WHERE tenant_id = ? AND "
                  "status = 'revoked' AND recorded_at >= ?", (tenant_id, since)))[0][0]
        suppressed = (await raw.fetch(
            conn, "SELECT count(DISTINCT address_index) FROM suppressions WHERE tenant_id = ?",
            (tenant_id,)))[0][0]
    return json_response({"since": midnight.isoformat(), "messages": entered,
                          "waiting": waiting, "opt_outs": opt_outs, "suppressed": suppressed})


def _action(name: str):
    async def handler(request: web.Request) -> web.Response:
        tenant_id, campaign_id = request[TENANT], request.match_info["id"]
        options = await _action_options(request, name)
        if name == "start":
            await _check_unchecked_text(request, tenant_id, campaign_id)
        async with request.app[db_key].begin() as conn:
            await service.transition(conn, tenant_id, campaign_id, name, **options)
            row = await service.get(conn, tenant_id, campaign_id)
            detail = {k: v for k, v in options.items() if k != "confirm_informational"}
            if name == "start":
                detail |= _confirmed(row)
            await audit.record(conn, tenant_id, actor_of(request),
                               f"campaign.{name}", campaign_id=campaign_id, **detail)
            body = await service.status(conn, row)
        if body["state"] == "scheduled":
            request.app[scheduler_hook_key](campaign_id, row.send_at)
        return json_response(body)
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


async def _check_unchecked_text(request: web.Request, tenant_id: str, campaign_id: str) -> None:
    """An informational campaign created before texts were checked is read once, at its
    start (its text is sealed: that needs the vault unlocked)."""
    async with request.app[db_key].connect() as conn:
        row = await service.get(conn, tenant_id, campaign_id)
    if row.purpose != "informational" or row.commercial_words is not None:
        return
    try:
        opened = await request.app[fields_key].open_fields(tenant_id,
                                                           [bytes(row.template_sealed)])
    except VaultLockedError:
        raise ApiError(423, "vault_locked", "this informational campaign was created before "
                       "texts were checked: unlock the vault so that its text can be checked "
                       "before it starts") from None
    words = commercial_words(*texts_of(opened[0].decode(), row.channel_template))
    async with request.app[db_key].begin() as conn:
        await service.remember_words(conn, campaign_id, words)


async def preview(request: web.Request) -> web.Response:
    """Renders the campaign for one contact of its list (by address, or the first one)."""
    app, tenant_id = request.app, request[TENANT]
    body = await json_body(request)
    raw = field(body, "address", str, required=False, default=None)
    async with app[db_key].connect() as conn:
        row = await service.get(conn, tenant_id, request.match_info["id"])
        profile = await app[directory_key].profile(conn, tenant_id)
        q = sa.select(contacts).join(list_members, list_members.c.contact_id == contacts.c.id
                                     ).where(list_members.c.list_id == row.list_id,
                                             contacts.c.erased_at.is_(None))
        if raw is not None:
            index = app[directory_key].index(tenant_id, address_param(raw, "sandbox", "address"))
            q = q.where(contacts.c.address_index == index)
        contact = (await conn.execute(q.limit(1))).first()
    if contact is None:
        raise ApiError(404, "not_found", "no such contact in the campaign's list")
    blobs = [bytes(row.template_sealed), bytes(contact.address_sealed)]
    blobs += [bytes(b) for b in (contact.name_sealed, contact.attributes_sealed) if b]
    opened = await app[fields_key].open_fields(tenant_id, blobs)
    template, address = opened[0].decode(), opened[1].decode()
    rest = iter(opened[2:])
    name = next(rest).decode() if contact.name_sealed else ""
    attrs = json.loads(next(rest)) if contact.attributes_sealed else {}
    text = compose(compile_template(template), {**attrs, "name": name, "phone": address},
                   commercial=row.purpose == "commercial", sender_name=profile.sender_name,
                   sender_contact=profile.sender_contact, language=profile.language)
    return json_response({"to": address, "text": text, "at": time.time()})


SAMPLE = {"name": "Ayşe Yılmaz", "phone": "+905321234567"}


async def preview_draft(request: web.Request) -> web.Response:
    """A template as a recipient would read it, before any campaign exists: sample values,
    the mandatory footer for commercial messages, and the character count. No unlock needed."""
    body = await json_body(request)
    template = field(body, "template", str)
    purpose = field(body, "purpose", str, required=False, default="commercial")
    if purpose not in ("commercial", "informational"):
        raise ApiError(400, "invalid_field", "'purpose' must be commercial or informational")
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        profile = await app[directory_key].profile(conn, tenant_id)
    try:
        compiled = compile_template(template)
    except ValueError as exc:
        raise ApiError(400, "invalid_template", str(exc)) from None
    sample = field(body, "sample", dict, required=False, default={})
    samples = {**SAMPLE, **{k: str(v) for k, v in sample.items()}}
    text = compose(compiled, samples, commercial=purpose == "commercial",
                   sender_name=profile.sender_name, sender_contact=profile.sender_contact,
                   language=profile.language)
    # Said while the owner writes, so the question at creation is no surprise.
    words = commercial_words(template) if purpose == "informational" else []
    return json_response({"text": text, "characters": len(text), "commercial_words": words})


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
    Operation("GET", "/api/v1/window", window_estimate,
              "How many of a list are inside their 24 h WhatsApp window on a line now: "
              "{\"window\": {\"inside\", \"of\"}} (null for lines without a window)",
              query=("line_id", "list_id"), responses={200: "Counts", 404: "No such line or list"}),
    *[Operation("POST", f"/api/v1/campaigns/{{id}}/{name}", _action(name), summary,
                body=_ACTION_BODIES.get(name),
                responses={200: "Campaign", 409: "Not allowed in this state",
                           **({400: "looks_commercial: informational text that reads as "
                                    "commercial, not confirmed"} if name == "start" else {})})
      for name, summary in _ACTIONS.items()],
    Operation("POST", "/api/v1/campaigns/{id}/preview", preview,
              "Render the message for a contact of the list (needs the vault unlocked)",
              body={"type": "object", "properties": {"address": {"type": "string"}}},
              responses={200: "{to, text}", 423: "Vault is locked"}),
]
