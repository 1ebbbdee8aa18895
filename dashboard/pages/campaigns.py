"""Campaign pages: the list, a new campaign with a live preview and a dry run of the gate,
and the detail page, whose counts, reasons, state and actions stay live over server-sent
events. They call dashboard.services.campaigns, as the JSON API does."""
from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from campaigns.service import NewCampaign
from dashboard.context import context_of
from dashboard.pages import campaign_templates
from dashboard.pages.failures import shown
from dashboard.pages.web import (
    MAX_STREAMS_PER_SESSION,
    USER,
    error_page,
    forget_reads,
    form,
    live_streams_key,
    page,
    render,
)
from dashboard.services import audience as audience_services
from dashboard.services import campaigns as campaign_services
from dashboard.services import lines as line_services
from dashboard.services import reads

ACTIONS = campaign_services.ACTIONS
CONFIRMED = ("start", "cancel")  # asked again before they happen (a dialog, or a page)
FINAL = ("completed", "cancelled")
SSE_INTERVAL = 1.0
SSE_MAX_SECONDS = 30 * 60
LIST_SECONDS = 2.0  # the list's progress may lag this much; a campaign's own page is live
DRY_RUN_SECONDS = 5.0  # a dry run may be this old (a 100,000-person list takes seconds)
DELIVERED = ("sent", "delivered", "read")


def progress(campaign: dict) -> dict:
    counts = campaign.get("counts") or {}
    total = sum(v for v in counts.values() if isinstance(v, int))
    pending = counts.get("pending", 0) + counts.get("sending", 0)
    done = total - pending
    percent = round(100 * done / total) if total else (100 if campaign.get("state") in FINAL
                                                       else 0)
    return {"total": total, "done": done, "percent": percent, "state": campaign.get("state"),
            "final": campaign.get("state") in FINAL}


def reached(campaign: dict) -> int:
    """Messages that went out (sent, delivered or read)."""
    counts = campaign.get("counts") or {}
    return sum(counts.get(k, 0) for k in DELIVERED)


async def _failed(request: web.Request, exc: Exception) -> web.StreamResponse:
    """A service's refusal as an error page (its text in the reader's language)."""
    found = shown(request, exc)
    if found is None:
        raise exc
    return error_page(request, found[0], found[2])


@page("GET", "/campaigns")
async def campaign_list(request: web.Request) -> web.StreamResponse:
    ctx = context_of(request)
    found = await reads.remember(ctx.tenant_id, "campaigns", LIST_SECONDS,
                                 lambda: campaign_services.list_campaigns(ctx))
    items = [{**c, "progress": progress(c)} for c in found]
    return render(request, "campaigns.html", campaigns=items)


async def _choices(request: web.Request) -> tuple[list, list]:
    ctx = context_of(request)
    lines = [line for line in await line_services.lines(ctx)
             if line.get("state") != "archived"]  # an archived line never sends again
    return lines, await audience_services.lists(ctx)


@page("GET", "/campaigns/new", "operator")
async def new_campaign(request: web.Request) -> web.StreamResponse:
    lines, lists = await _choices(request)
    return render(request, "campaign_new.html", lines=lines, lists=lists, values={}, error=None,
                  commercial_words=None, wa=await campaign_templates.picker(request, {}, lines))


@page("POST", "/campaigns/preview", "operator")
async def preview(request: web.Request) -> web.StreamResponse:
    """htmx: the draft as the recipient reads it, footer and character count included."""
    data = form(request)
    if campaign_templates.chosen_key(data):  # a WhatsApp template: what Meta will deliver
        return await campaign_templates.preview(request, data)
    if not data.get("template", "").strip():
        return render(request, "_preview.html", text=None, characters=0, error=None)
    try:
        found = await campaign_services.preview_draft(
            context_of(request), data.get("template", ""), data.get("purpose", "commercial"))
    except Exception as exc:
        failed = shown(request, exc)
        if failed is None:
            raise
        return render(request, "_preview.html", text=None, characters=0, error=failed[2])
    return render(request, "_preview.html", error=None, **found)


@page("POST", "/campaigns/dry-run", "operator")
async def dry_run_form(request: web.Request) -> web.StreamResponse:
    """htmx: before you send — the gate run over the chosen list for the chosen line and
    purpose: who would receive it and who would be skipped, and why (nothing is written)."""
    data = form(request)
    if not data.get("line_id") or not data.get("list_id"):
        return render(request, "_dry_run.html", dry=None, error=None)
    spec = campaign_services.DraftSpec(
        data.get("line_id", ""), data.get("list_id", ""), data.get("purpose", "commercial"),
        campaign_templates.chosen_key(data) is not None, data.get("outside_window") or None)
    return await _dry_run_fragment(
        request, campaign_services.dry_run_draft(context_of(request), spec))


async def _dry_run_fragment(request: web.Request, dry_run) -> web.StreamResponse:
    """The dry run's htmx fragment, or the reason it cannot be run, in the page's words."""
    try:
        found = await dry_run
    except Exception as exc:
        failed = shown(request, exc)
        if failed is None:
            raise
        return render(request, "_dry_run.html", dry=None, error=failed[2])
    return render(request, "_dry_run.html", dry=found, error=None)


def _send_at(data: dict) -> str | None:
    if not data.get("send_at"):
        return None
    given = data["send_at"]
    return given if "+" in given or given.endswith("Z") else given + ":00+03:00"


@page("POST", "/campaigns", "operator")
async def create_campaign(request: web.Request) -> web.StreamResponse:
    data = form(request)
    # Ticked under the looks_commercial warning; also confirms the start below.
    confirm = data.get("confirm_informational") == "yes"
    wa = await campaign_templates.picker(request, data)
    extra = campaign_templates.campaign_fields(data, wa.get("templates", []))
    ctx = context_of(request)
    try:
        spec = NewCampaign(
            name=data.get("name", ""), line_id=data.get("line_id", ""),
            list_id=data.get("list_id", ""), purpose=data.get("purpose", "commercial"),
            template=extra.get("template", data.get("template", "")),
            send_at=campaign_services.parse_send_at(_send_at(data)),
            channel_template=extra.get("whatsapp_template"), confirm_informational=confirm)
        created = await campaign_services.create(ctx, spec)
    except Exception as exc:
        failed = shown(request, exc)
        if failed is None:
            raise
        lines, lists = await _choices(request)
        words = getattr(exc, "words", None) if failed[1] == "looks_commercial" else None
        return render(request, "campaign_new.html", status=400, lines=lines, lists=lists,
                      values=data, error=failed[2], commercial_words=words, wa=wa)
    campaign_id = created["id"]
    forget_reads(ctx.tenant_id)
    if data.get("start_now"):
        try:
            await campaign_services.act(ctx, campaign_id, "start",
                                        confirm_informational=confirm)
        except Exception as exc:
            return await _failed(request, exc)
    forget_reads(ctx.tenant_id)
    raise web.HTTPSeeOther(f"/campaigns/{campaign_id}")


async def _live(request: web.Request, campaign: dict) -> dict:
    """What the live part of the detail page shows (the template _campaign_live.html); a
    draft's dry run loads after the page (GET /campaigns/{id}/dry-run): on a large list it
    takes a while."""
    return {"campaign": campaign, "progress": progress(campaign), "actions": ACTIONS,
            "confirmed": CONFIRMED, "reached": reached(campaign), "dry": None,
            "can_act": request[USER].can("operator")}


async def _dry_run(request: web.Request, campaign_id: str):
    """The campaign's dry run, kept a few seconds (the page, its stream and the confirmation
    ask for it one after another)."""
    ctx = context_of(request)
    return await reads.remember(ctx.tenant_id, f"dry-run:{campaign_id}", DRY_RUN_SECONDS,
                                lambda: campaign_services.dry_run(ctx, campaign_id))


@page("GET", "/campaigns/{id}/dry-run")
async def campaign_dry_run(request: web.Request) -> web.StreamResponse:
    """htmx: before you send — the gate run over the campaign's list now."""
    return await _dry_run_fragment(request, _dry_run(request, request.match_info["id"]))


@page("GET", "/campaigns/{id}")
async def campaign_detail(request: web.Request) -> web.StreamResponse:
    try:
        campaign = await campaign_services.get(context_of(request), request.match_info["id"])
    except Exception as exc:
        return await _failed(request, exc)
    about = await campaign_services.describe(context_of(request), campaign["id"])
    return render(request, "campaign_detail.html", about=about, **await _live(request, campaign))


@page("POST", "/campaigns/{id}/{action}", "operator")
async def campaign_action(request: web.Request) -> web.StreamResponse:
    action, campaign_id = request.match_info["action"], request.match_info["id"]
    if action not in ACTIONS:
        raise web.HTTPNotFound()
    data = form(request)
    ctx = context_of(request)
    try:
        if action in CONFIRMED and data.get("confirmed") != "yes":
            # Without the page's dialog (no script, or a bare POST): ask on a page of its own.
            campaign = await campaign_services.get(ctx, campaign_id, with_window=False)
            live = await _live(request, campaign)
            if action == "start":
                live["dry"] = await _dry_run(request, campaign_id)
            return render(request, "campaign_confirm.html", action=action, values=data, **live)
        await campaign_services.act(
            ctx, campaign_id, action,
            # unknown ones only when the box under the warning was ticked
            include_unknown=data.get("include_unknown") == "yes",
            # the box under the looks_commercial warning
            confirm_informational=data.get("confirm_informational") == "yes")
    except Exception as exc:
        return await _failed(request, exc)
    forget_reads(ctx.tenant_id)
    raise web.HTTPSeeOther(f"/campaigns/{campaign_id}")


@page("GET", "/campaigns/{id}/events")
async def campaign_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a `progress` event whenever the counts change, until final. Each
    stream holds a connection and polls the database every second, so one session may keep
    only a few open at once (tabs of the same campaign page); a further one is 429."""
    open_streams, session = request.app[live_streams_key], request[USER].token_hash
    if open_streams.get(session, 0) >= MAX_STREAMS_PER_SESSION:
        return web.Response(status=429, text="too many live streams for this session",
                            headers={"Retry-After": str(int(SSE_INTERVAL * 5))})
    open_streams[session] = open_streams.get(session, 0) + 1
    try:
        return await _stream_progress(request)
    finally:
        open_streams[session] -= 1
        if not open_streams[session]:
            del open_streams[session]


async def _stream_progress(request: web.Request) -> web.StreamResponse:
    """`progress` first (the bar), then on every change a `campaign` event carrying the live
    part of the page rendered anew (state, counts, reasons, allowed actions: together) and a
    `progress` event; the last event of a finished campaign is its final `progress`."""
    ctx, campaign_id = context_of(request), request.match_info["id"]
    try:
        campaign = await campaign_services.get(ctx, campaign_id, with_window=False)
    except Exception as exc:
        return await _failed(request, exc)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    last = None
    ends = time.monotonic() + SSE_MAX_SECONDS  # the browser reconnects by itself after
    try:
        current = progress(campaign)
        await response.write(_event("progress", current))
        while time.monotonic() < ends:
            if campaign != last:
                shown_now = {**campaign, "window": await campaign_services.window_of(
                    ctx, campaign_id)}
                html = render(request, "_campaign_live.html", **await _live(request, shown_now))
                await response.write(_event("campaign", {"html": html.text}))
                await response.write(_event("progress", progress(campaign)))
                last = campaign
            else:  # a comment line: a closed page shows up here, and frees its stream slot
                await response.write(b": waiting\n\n")
            if progress(campaign)["final"]:
                break
            await asyncio.sleep(SSE_INTERVAL)
            try:
                campaign = await campaign_services.get(ctx, campaign_id, with_window=False)
            except Exception as exc:
                if shown(request, exc) is None:
                    raise
                break
    except ConnectionResetError:  # the page was closed
        pass
    return response


def _event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
