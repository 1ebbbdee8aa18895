"""Campaign pages: the list, a new campaign with a live preview, and the detail page with
progress over server-sent events and the state actions."""
from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from dashboard.pages import campaign_templates
from dashboard.web import (
    MAX_STREAMS_PER_SESSION,
    USER,
    api,
    api_cached,
    error_page,
    forget_reads,
    form,
    live_streams_key,
    page,
    render,
)

ACTIONS = ("start", "pause", "resume", "cancel", "retry")
FINAL = ("completed", "cancelled")
SSE_INTERVAL = 1.0
SSE_MAX_SECONDS = 30 * 60
LIST_SECONDS = 2.0  # the list's progress may lag this much; a campaign's own page is live


def progress(campaign: dict) -> dict:
    counts = campaign.get("counts") or {}
    total = sum(v for v in counts.values() if isinstance(v, int))
    pending = counts.get("pending", 0) + counts.get("sending", 0)
    done = total - pending
    percent = round(100 * done / total) if total else (100 if campaign.get("state") in FINAL
                                                       else 0)
    return {"total": total, "done": done, "percent": percent, "state": campaign.get("state"),
            "final": campaign.get("state") in FINAL}


@page("GET", "/campaigns")
async def campaign_list(request: web.Request) -> web.StreamResponse:
    data = (await api_cached(request, LIST_SECONDS, "/campaigns")).data or {}
    items = [{**c, "progress": progress(c)} for c in data.get("campaigns", [])]
    return render(request, "campaigns.html", campaigns=items)


async def _choices(request: web.Request) -> tuple[list, list]:
    lines = ((await api(request, "GET", "/lines")).data or {}).get("lines", [])
    lines = [line for line in lines if line.get("state") != "archived"]  # never sends again
    lists = ((await api(request, "GET", "/lists")).data or {}).get("lists", [])
    return lines, lists


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
    result = await api(request, "POST", "/templates/preview", body={
        "template": data.get("template", ""), "purpose": data.get("purpose", "commercial")})
    if not result.ok:
        return render(request, "_preview.html", text=None, characters=0, error=result.error)
    return render(request, "_preview.html", error=None, **result.data)


@page("POST", "/campaigns", "operator")
async def create_campaign(request: web.Request) -> web.StreamResponse:
    data = form(request)
    body = {"name": data.get("name", ""), "line_id": data.get("line_id", ""),
            "list_id": data.get("list_id", ""), "template": data.get("template", ""),
            "purpose": data.get("purpose", "commercial"),
            # Ticked under the looks_commercial warning; also confirms the start below.
            "confirm_informational": data.get("confirm_informational") == "yes"}
    wa = await campaign_templates.picker(request, data)
    body.update(campaign_templates.campaign_fields(data, wa.get("templates", [])))
    if data.get("send_at"):
        body["send_at"] = data["send_at"] if "+" in data["send_at"] or data["send_at"].endswith(
            "Z") else data["send_at"] + ":00+03:00"
    result = await api(request, "POST", "/campaigns", body=body)
    if not result.ok:
        lines, lists = await _choices(request)
        words = result.data["error"].get("words") if result.code == "looks_commercial" else None
        return render(request, "campaign_new.html", status=400, lines=lines, lists=lists,
                      values=data, error=result.error, commercial_words=words, wa=wa)
    campaign_id = result.data["id"]
    if data.get("start_now"):
        started = await api(request, "POST", f"/campaigns/{campaign_id}/start", body={
            "confirm_informational": body["confirm_informational"]})
        if not started.ok:
            return error_page(request, started.status, started.error)
    forget_reads(request[USER].tenant_id)
    raise web.HTTPSeeOther(f"/campaigns/{campaign_id}")


@page("GET", "/campaigns/{id}")
async def campaign_detail(request: web.Request) -> web.StreamResponse:
    result = await api(request, "GET", f"/campaigns/{request.match_info['id']}")
    if not result.ok:
        return error_page(request, result.status, result.error)
    campaign = result.data
    return render(request, "campaign_detail.html", campaign=campaign,
                  progress=progress(campaign), actions=ACTIONS,
                  can_act=request[USER].can("operator"))


@page("POST", "/campaigns/{id}/{action}", "operator")
async def campaign_action(request: web.Request) -> web.StreamResponse:
    action, campaign_id = request.match_info["action"], request.match_info["id"]
    if action not in ACTIONS:
        raise web.HTTPNotFound()
    body = None
    if action == "retry":  # unknown ones only when the box under the warning was ticked
        body = {"include_unknown": form(request).get("include_unknown") == "yes"}
    if action == "start":  # the box under the looks_commercial warning
        body = {"confirm_informational": form(request).get("confirm_informational") == "yes"}
    result = await api(request, "POST", f"/campaigns/{campaign_id}/{action}", body=body)
    if not result.ok:
        return error_page(request, result.status, result.error)
    forget_reads(request[USER].tenant_id)
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
    path = f"/campaigns/{request.match_info['id']}"
    first = await api(request, "GET", path)
    if not first.ok:
        return error_page(request, first.status, first.error)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    last, result = None, first
    ends = time.monotonic() + SSE_MAX_SECONDS  # the browser reconnects by itself after
    try:
        while time.monotonic() < ends:
            current = progress(result.data)
            if current != last:
                await response.write(
                    f"event: progress\ndata: {json.dumps(current)}\n\n".encode())
                last = current
            else:  # a comment line: a closed page shows up here, and frees its stream slot
                await response.write(b": waiting\n\n")
            if current["final"]:
                break
            await asyncio.sleep(SSE_INTERVAL)
            result = await api(request, "GET", path)
            if not result.ok:
                break
    except ConnectionResetError:  # the page was closed
        pass
    return response
