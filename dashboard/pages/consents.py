"""Consents: one address's state and full history, and the suppression list (with a CSV
download) — through dashboard.services.consent, like the API. Exports of personal data (the
suppression list, a consent record as a file) are for admins and owners who re-enter their
password; they are POSTed so the password travels in the body, and each one is audited."""
from __future__ import annotations

import json

from aiohttp import web

from bot import registry
from dashboard.api.consent import suppressions_csv
from dashboard.context import context_of
from dashboard.pages.failures import shown
from dashboard.pages.web import error_page, form, page, render
from dashboard.services import accounts as account_services
from dashboard.services import consent


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
    ctx = context_of(request)
    lookup, error, status = None, None, 200
    if address:
        try:
            lookup = await consent.lookup(ctx, address, channel)
        except Exception as exc:
            failed = shown(request, exc)
            if failed is None:
                raise
            status, _code, error = failed
    locked = not (await account_services.vault_status(ctx)).unlocked
    return render(request, "consents.html", status=status, address=address, channel=channel,
                  channels=_channels(), lookup=lookup, error=error, suppressions=suppressions,
                  locked=locked)


async def _refused(request: web.Request, exc: Exception) -> web.StreamResponse:
    failed = shown(request, exc)
    if failed is None:
        raise exc
    return error_page(request, failed[0], failed[2])


@page("POST", "/consents/export", "admin", reauth=True)
async def consent_export(request: web.Request) -> web.StreamResponse:
    """One address's consent record (state, history, evidence) as a JSON file: the proof a
    business shows when an authority asks how it got consent."""
    try:
        record = await consent.lookup(context_of(request), form(request).get("address", ""),
                                      _channel(form(request).get("channel")), download=True)
    except Exception as exc:
        return await _refused(request, exc)
    return web.json_response(record, dumps=lambda d: json.dumps(d, ensure_ascii=False,
                                                                indent=2),
                             headers={"Content-Disposition":
                                      'attachment; filename="consent-record.json"'})


@page("POST", "/consents/suppressions", "admin", reauth=True)
async def suppressions_export(request: web.Request) -> web.StreamResponse:
    """The suppression list (it opens every address): shown on the page, or with
    format=csv as a download."""
    as_csv = form(request).get("format") == "csv"
    try:
        items = await consent.suppressions(context_of(request), "csv" if as_csv else "json")
    except Exception as exc:
        return await _refused(request, exc)
    if not as_csv:
        return await _show(request, "", "whatsapp", items)
    return web.Response(
        text=suppressions_csv(items), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'})
