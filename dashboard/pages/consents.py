"""Consents: one address's state and full history, and the suppression list (with a CSV
download) — all read through the consent API. Exports of personal data (the suppression list,
a consent record as a file) are for admins and owners who re-enter their password; they are
POSTed so the password travels in the body, and the API audits each one."""
from __future__ import annotations

import json

from aiohttp import web

from bot import registry
from dashboard.web import api, error_page, form, page, render


def _channels() -> list[str]:
    """The registered channels (bot.registry), WhatsApp first: most businesses look there."""
    return sorted(registry.names(), key=lambda name: name != "whatsapp")


def _channel(value: str | None) -> str:
    return value if value in _channels() else _channels()[0]


@page("GET", "/consents")
async def consents(request: web.Request) -> web.StreamResponse:
    return await _show(request, request.query.get("address", "").strip()[:64],
                       _channel(request.query.get("channel")))


async def _show(request: web.Request, address: str, channel: str,
                suppressions: list | None = None) -> web.StreamResponse:
    lookup, error, status = None, None, 200
    if address:
        result = await api(request, "GET", "/consents",
                           query={"address": address, "channel": channel})
        if result.ok:
            lookup = result.data
        else:
            error, status = result.error or str(result.status), result.status
    vault = (await api(request, "GET", "/vault")).data or {}
    locked = not vault.get("unlocked")
    return render(request, "consents.html", status=status, address=address, channel=channel,
                  channels=_channels(), lookup=lookup, error=error, suppressions=suppressions,
                  locked=locked)


@page("POST", "/consents/export", "admin", reauth=True)
async def consent_export(request: web.Request) -> web.StreamResponse:
    """One address's consent record (state, history, evidence) as a JSON file: the proof a
    business shows when an authority asks how it got consent."""
    result = await api(request, "GET", "/consents", query={
        "address": form(request).get("address", ""),
        "channel": _channel(form(request).get("channel")), "download": "true"})
    if not result.ok:
        return error_page(request, result.status, result.error or str(result.status))
    return web.json_response(result.data, dumps=lambda d: json.dumps(d, ensure_ascii=False,
                                                                     indent=2),
                             headers={"Content-Disposition":
                                      'attachment; filename="consent-record.json"'})


@page("POST", "/consents/suppressions", "admin", reauth=True)
async def suppressions_export(request: web.Request) -> web.StreamResponse:
    """The suppression list (it opens every address): shown on the page, or with
    format=csv as a download."""
    as_csv = form(request).get("format") == "csv"
    result = await api(request, "GET", "/suppressions",
                       query={"format": "csv" if as_csv else "json"})
    if not result.ok:
        return error_page(request, result.status, result.error or str(result.status))
    if not as_csv:
        return await _show(request, "", "whatsapp", result.data.get("suppressions", []))
    return web.Response(
        text=result.data or "", content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'})
