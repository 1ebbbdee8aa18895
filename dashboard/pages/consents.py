"""Consents: one address's state and full history, and the suppression list (with a CSV
download) — all read through the consent API."""
from __future__ import annotations

import json

from aiohttp import web

from dashboard.web import api, error_page, page, render

CHANNELS = ("whatsapp", "sandbox", "telegram")


@page("GET", "/consents")
async def consents(request: web.Request) -> web.StreamResponse:
    address = request.query.get("address", "").strip()[:64]
    channel = request.query.get("channel", "whatsapp")
    if channel not in CHANNELS:
        channel = "whatsapp"
    lookup, error, status = None, None, 200
    if address:
        result = await api(request, "GET", "/consents",
                           query={"address": address, "channel": channel})
        if result.ok:
            lookup = result.data
        else:
            error, status = result.error or str(result.status), result.status
    vault = (await api(request, "GET", "/vault")).data or {}
    suppressions, locked = None, not vault.get("unlocked")
    # Listing suppressions opens every address (and is audited as an export): on request only.
    if not locked and request.query.get("show") == "suppressions":
        found = await api(request, "GET", "/suppressions", query={"format": "json"})
        if found.status == 423:
            locked = True
        elif found.ok:
            suppressions = found.data.get("suppressions", [])
    return render(request, "consents.html", status=status, address=address, channel=channel,
                  channels=CHANNELS, lookup=lookup, error=error, suppressions=suppressions,
                  locked=locked)


@page("GET", "/consents/export")
async def consent_export(request: web.Request) -> web.StreamResponse:
    """One address's consent record (state, history, evidence) as a JSON file: the proof a
    business shows when an authority asks how it got consent."""
    channel = request.query.get("channel", "whatsapp")
    result = await api(request, "GET", "/consents", query={
        "address": request.query.get("address", ""), "channel": channel, "download": "true"})
    if not result.ok:
        return error_page(request, result.status, result.error or str(result.status))
    return web.json_response(result.data, dumps=lambda d: json.dumps(d, ensure_ascii=False,
                                                                     indent=2),
                             headers={"Content-Disposition":
                                      'attachment; filename="consent-record.json"'})


@page("GET", "/consents/suppressions.csv")
async def suppressions_csv(request: web.Request) -> web.StreamResponse:
    """The suppression export as a download (the API route itself needs an API key)."""
    result = await api(request, "GET", "/suppressions", query={"format": "csv"})
    if not result.ok:
        return error_page(request, result.status, result.error or str(result.status))
    return web.Response(
        text=result.data or "", content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'})
