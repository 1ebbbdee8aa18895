"""Campaigns: create, read, act on, preview and dry-run them — what the JSON API
(dashboard.api.campaigns) and the campaign pages (dashboard.pages.campaigns) both do.

Functions take a `Context` and typed arguments and return plain dicts in the API's shapes (the
JSON answers are these dicts) or dataclasses; they raise the domain's errors
(campaigns.service.CampaignError and kin, crypto's VaultLockedError), which
dashboard.errors maps to `{"error": …}` answers and pages to a message."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from campaigns import dryrun as dryrun_module
from campaigns import outbox as outbox_module
from campaigns import service, window
from campaigns.audiences import list_columns
from campaigns.commercial import commercial_words, texts_of
from campaigns.lines import get_line
from campaigns.render import compile_template, compose
from campaigns.service import (
    CampaignError,
    CampaignNotFoundError,
    CampaignStateError,
    NewCampaign,
)
from crypto.errors import VaultLockedError
from dashboard.keys import db_key, directory_key, fields_key, scheduler_hook_key
from dashboard.services import Context
from dashboard.services.names import line_names, list_names, opened, shown
from optout import audit
from optout.deadlines import parse_consent_date
from store import raw
from store.tables import campaigns, contact_lists, contacts, list_members

__all__ = ["ACTIONS", "Described", "DraftSpec", "DryRun", "NewCampaign", "act", "create",
           "describe", "dry_run",
           "dry_run_draft", "get", "list_campaigns", "parse_send_at", "preview",
           "preview_draft", "today", "window_estimate", "window_of"]

DryRun = dryrun_module.DryRun
ACTIONS = ("start", "pause", "resume", "cancel", "retry")
# A campaign is started at most a year ahead; a little slack for clocks and slow clients.
SEND_AT_PAST_SECONDS, SEND_AT_FUTURE_SECONDS = 60, 365 * 86400
SAMPLE = {"name": "Ayşe Yılmaz", "phone": "+905321234567"}


def parse_send_at(value, now: float | None = None) -> float | None:
    """send_at as a timestamp within [now − 1 min, now + 1 year], or CampaignError
    (invalid_field): an absurd one used to be stored and then stop every start of the
    scheduler. ISO 8601 text or Unix seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        when = float(value) if abs(value) < 1e300 else math.inf
    else:
        parsed = parse_consent_date(value) if isinstance(value, str) else None
        if parsed is None:
            raise CampaignError("'send_at' must be an ISO 8601 date-time", "invalid_field")
        when = parsed.timestamp()
    now = time.time() if now is None else now
    if not (math.isfinite(when)
            and now - SEND_AT_PAST_SECONDS <= when <= now + SEND_AT_FUTURE_SECONDS):
        raise CampaignError("'send_at' must be from now to one year ahead", "invalid_field")
    return when


def _confirmed(row) -> dict:
    """Audit detail: the commercial-looking words an owner confirmed as informational."""
    if row.purpose != "informational" or not row.commercial_words:
        return {}
    return {"confirm_informational": True, "commercial_words": list(row.commercial_words)}


async def create(ctx: Context, spec: NewCampaign) -> dict:
    """A draft campaign (audited); its status."""
    async with ctx[db_key].connect() as conn:
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
    sealer = await ctx[fields_key].shared_sealer(ctx.tenant_id, profile.public_key)
    async with ctx[db_key].begin() as conn:
        campaign_id = await service.create(conn, ctx.tenant_id, spec, sealer)
        row = await service.get(conn, ctx.tenant_id, campaign_id)
        await audit.record(conn, ctx.tenant_id, ctx.actor, "campaign.create",
                           campaign_id=campaign_id, purpose=spec.purpose, **_confirmed(row))
        body = await service.status(conn, row)
    # The name was just typed: shown as given, locked or not.
    return body | shown(spec.name.strip(), False)


async def _named(ctx: Context, rows, bodies: list[dict]) -> list[dict]:
    """The statuses with each campaign's name opened (None and name_locked while locked)."""
    names = await opened(ctx, [r.name_sealed for r in rows])
    for i, body in enumerate(bodies):
        body.update(shown(None if names is None else names[i], names is None))
    return bodies


async def get(ctx: Context, campaign_id: str, *, with_window: bool = True) -> dict:
    """A campaign with counts, reasons and allowed actions; `window` {inside, of} for a
    free-text WhatsApp campaign (else None; left out with with_window=False)."""
    async with ctx[db_key].connect() as conn:
        row = await service.get(conn, ctx.tenant_id, campaign_id)
        body = await service.status(conn, row)
        if with_window:
            body["window"] = await window.for_campaign(conn, row, time.time())
    return (await _named(ctx, [row], [body]))[0]


async def window_of(ctx: Context, campaign_id: str) -> dict | None:
    """The campaign's `window` alone (see `get`)."""
    async with ctx[db_key].connect() as conn:
        row = await service.get(conn, ctx.tenant_id, campaign_id)
        return await window.for_campaign(conn, row, time.time())


@dataclass(frozen=True)
class Described:
    """What a campaign's page says about it besides its counts."""
    line_name: str | None  # None: the line was deleted (or names_locked)
    channel: str | None
    list_name: str | None  # None: the list was deleted (or names_locked)
    text: str | None  # the message as written; None while the vault is locked
    names_locked: bool = False  # the vault is locked: names are sealed


async def describe(ctx: Context, campaign_id: str) -> Described:
    """The campaign's line and list by name, and its message (opened only when unlocked)."""
    async with ctx[db_key].connect() as conn:
        row = await service.get(conn, ctx.tenant_id, campaign_id)
        line = await get_line(conn, ctx.tenant_id, row.line_id)
        listed = (await conn.execute(sa.select(
            contact_lists.c.name_sealed, contact_lists.c.subscribers_of).where(
            contact_lists.c.tenant_id == ctx.tenant_id,
            contact_lists.c.id == row.list_id))).first()
    try:
        text = (await ctx[fields_key].open_fields(
            ctx.tenant_id, [bytes(row.template_sealed)]))[0].decode()
    except VaultLockedError:
        text = None
    line_name = (await line_names(ctx, [line]) or {}).get(line.id) if line else None
    list_name = (await list_names(ctx, [listed]) or [None])[0] if listed else None
    return Described(line_name, line.channel if line else None, list_name, text,
                     names_locked=text is None)


async def list_campaigns(ctx: Context, limit: int = 500) -> list[dict]:
    """The tenant's campaigns, newest first (at most `limit`, clamped to 1…500)."""
    limit = min(max(limit, 1), 500)
    q = sa.select(campaigns).where(campaigns.c.tenant_id == ctx.tenant_id).order_by(
        campaigns.c.created_at.desc()).limit(limit)
    async with ctx[db_key].connect() as conn:
        rows = list(await conn.execute(q))
        bodies = await service.statuses(conn, rows)
    return await _named(ctx, rows, bodies)


async def today(ctx: Context) -> dict:
    """Today's figures (the tenant's time zone): how many messages entered each state today
    (sent, delivered, read, failed, skipped …), messages waiting to go now, refusals recorded
    today (replies, İYS, imports, API), people who refused themselves today (the overview's
    "opt-outs today"), and people suppressed in all."""
    tenant_id = ctx.tenant_id
    async with ctx[db_key].connect() as conn:
        profile = await ctx[directory_key].profile(conn, tenant_id)
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
        # The overview's figure: people who refused themselves today (overview imports us).
        from dashboard.services.overview import people_opt_outs
        by_people = await people_opt_outs(conn, tenant_id, since)
    return {"since": midnight.isoformat(), "messages": entered, "waiting": waiting,
            "opt_outs": opt_outs, "opt_outs_by_people": by_people, "suppressed": suppressed}


async def window_estimate(ctx: Context, line_id: str, list_id: str) -> dict | None:
    """{inside, of}: how many of a list are inside their 24 h WhatsApp window on a line now
    (free text reaches only them); None for lines without a window."""
    async with ctx[db_key].connect() as conn:
        if await get_line(conn, ctx.tenant_id, line_id) is None or \
                await list_columns(conn, ctx.tenant_id, list_id) is None:
            raise CampaignNotFoundError("no such line or list")
        return await window.estimate(conn, line_id, list_id, False, None, time.time())


async def act(ctx: Context, campaign_id: str, action: str, *, include_unknown: bool = False,
              confirm_informational: bool = False) -> dict:
    """start, pause, resume, cancel or retry (audited); the campaign's status after it.
    A start on a list with nobody on it is refused (CampaignStateError empty_list)."""
    if action not in ACTIONS:
        raise CampaignError(f"unknown action {action!r}", "invalid_field")
    tenant_id = ctx.tenant_id
    options = {"include_unknown": include_unknown} if action == "retry" else {}
    if action == "start":
        options = {"confirm_informational": confirm_informational}
        await _check_unchecked_text(ctx, campaign_id)
    async with ctx[db_key].begin() as conn:
        if action == "start":
            await _check_not_empty(conn, tenant_id, campaign_id)
        await service.transition(conn, tenant_id, campaign_id, action, **options)
        row = await service.get(conn, tenant_id, campaign_id)
        detail = {k: v for k, v in options.items() if k != "confirm_informational"}
        if action == "start":
            detail |= _confirmed(row)
        await audit.record(conn, tenant_id, ctx.actor, f"campaign.{action}",
                           campaign_id=campaign_id, **detail)
        body = await service.status(conn, row)
    if body["state"] == "scheduled":
        ctx[scheduler_hook_key](campaign_id, row.send_at)
    return (await _named(ctx, [row], [body]))[0]


async def _check_not_empty(conn, tenant_id: str, campaign_id: str) -> None:
    row = await service.get(conn, tenant_id, campaign_id)
    if row.state != "draft":
        return  # transition() says what is wrong with the state
    q = sa.select(list_members.c.contact_id).join(
        contacts, contacts.c.id == list_members.c.contact_id).where(
        list_members.c.list_id == row.list_id, contacts.c.erased_at.is_(None)).limit(1)
    if (await conn.execute(q)).first() is None:
        raise CampaignStateError("the campaign's list has nobody on it: add people to the "
                                 "list (or choose another list) before starting",
                                 "empty_list")


async def _check_unchecked_text(ctx: Context, campaign_id: str) -> None:
    """An informational campaign created before texts were checked is read once, at its
    start (its text is sealed: that needs the vault unlocked)."""
    async with ctx[db_key].connect() as conn:
        row = await service.get(conn, ctx.tenant_id, campaign_id)
    if row.purpose != "informational" or row.commercial_words is not None:
        return
    try:
        opened = await ctx[fields_key].open_fields(ctx.tenant_id, [bytes(row.template_sealed)])
    except VaultLockedError:
        raise VaultLockedError("this informational campaign was created before texts were "
                               "checked: unlock the vault so that its text can be checked "
                               "before it starts") from None
    words = commercial_words(*texts_of(opened[0].decode(), row.channel_template))
    async with ctx[db_key].begin() as conn:
        await service.remember_words(conn, campaign_id, words)


async def preview(ctx: Context, campaign_id: str, address_index: bytes | None = None) -> dict:
    """{to, text, at}: the campaign rendered for one contact of its list (the one with this
    blind index, or the first one). Needs the vault unlocked."""
    tenant_id = ctx.tenant_id
    async with ctx[db_key].connect() as conn:
        row = await service.get(conn, tenant_id, campaign_id)
        profile = await ctx[directory_key].profile(conn, tenant_id)
        q = sa.select(contacts).join(list_members, list_members.c.contact_id == contacts.c.id
                                     ).where(list_members.c.list_id == row.list_id,
                                             contacts.c.erased_at.is_(None))
        if address_index is not None:
            q = q.where(contacts.c.address_index == address_index)
        contact = (await conn.execute(q.limit(1))).first()
    if contact is None:
        raise CampaignNotFoundError("no such contact in the campaign's list")
    blobs = [bytes(row.template_sealed), bytes(contact.address_sealed)]
    blobs += [bytes(b) for b in (contact.name_sealed, contact.attributes_sealed) if b]
    opened = await ctx[fields_key].open_fields(tenant_id, blobs)
    template, address = opened[0].decode(), opened[1].decode()
    rest = iter(opened[2:])
    name = next(rest).decode() if contact.name_sealed else ""
    attrs = json.loads(next(rest)) if contact.attributes_sealed else {}
    text = compose(compile_template(template), {**attrs, "name": name, "phone": address},
                   commercial=row.purpose == "commercial", sender_name=profile.sender_name,
                   sender_contact=profile.sender_contact, language=profile.language)
    return {"to": address, "text": text, "at": time.time()}


async def preview_draft(ctx: Context, template: str, purpose: str = "commercial",
                        sample: dict | None = None) -> dict:
    """{text, characters, commercial_words}: a template as a recipient would read it, before
    any campaign exists: sample values, the mandatory footer for commercial messages, and the
    character count. No unlock needed."""
    if purpose not in ("commercial", "informational"):
        raise CampaignError("'purpose' must be commercial or informational", "invalid_field")
    async with ctx[db_key].connect() as conn:
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
    try:
        compiled = compile_template(template)
    except ValueError as exc:
        raise CampaignError(str(exc), "invalid_template") from None
    samples = {**SAMPLE, **{k: str(v) for k, v in (sample or {}).items()}}
    text = compose(compiled, samples, commercial=purpose == "commercial",
                   sender_name=profile.sender_name, sender_contact=profile.sender_contact,
                   language=profile.language)
    # Said while the owner writes, so the question at creation is no surprise.
    words = commercial_words(template) if purpose == "informational" else []
    return {"text": text, "characters": len(text), "commercial_words": words}


@dataclass(frozen=True)
class DraftSpec:
    line_id: str
    list_id: str
    purpose: str = "commercial"
    has_template: bool = False  # a WhatsApp template chosen
    outside_window: str | None = None


async def dry_run(ctx: Context, campaign_id: str) -> DryRun:
    """Who of the campaign's list the gate would let through now, and why the others would be
    skipped; reads only."""
    async with ctx[db_key].connect() as conn:
        row = await service.get(conn, ctx.tenant_id, campaign_id)
    return await dry_run_draft(ctx, DraftSpec(
        row.line_id, row.list_id, row.purpose, row.channel_template is not None,
        row.outside_window))


async def dry_run_draft(ctx: Context, spec: DraftSpec) -> DryRun:
    """The dry run for a campaign not created yet (the form): its line, list and purpose."""
    if spec.purpose not in ("commercial", "informational"):
        raise CampaignError("'purpose' must be commercial or informational", "invalid_field")
    async with ctx[db_key].connect() as conn:
        line = await get_line(conn, ctx.tenant_id, spec.line_id)
        if line is None or await list_columns(conn, ctx.tenant_id, spec.list_id) is None:
            raise CampaignNotFoundError("no such line or list")
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
        return await dryrun_module.dry_run(
            conn, profile, channel=line.channel, line_id=line.id, list_id=spec.list_id,
            purpose=spec.purpose, has_template=spec.has_template,
            outside_window=spec.outside_window)
