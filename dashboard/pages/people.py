"""KVKK data-subject requests (admins): look a person up by phone and see what is held, export
it, correct their name, erase them; and the request log with its 30-day deadlines. Lookups are
POSTed so phone numbers stay out of URLs and access logs. Export and erasure need the password
re-entered."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp import web

from dashboard.web import api, error_page, form, page, render


def _due_state(item: dict, now: datetime) -> str:
    if item.get("completed_at"):
        return "done"
    try:
        due = datetime.fromisoformat(item["due_at"])
    except (KeyError, TypeError, ValueError):
        return "open"
    return "overdue" if due < now else "open"


async def _show(request: web.Request, status: int = 200, address: str = "",
                report: dict | None = None, error: str | None = None,
                notice: str | None = None, locked: bool = False) -> web.StreamResponse:
    vault = await api(request, "GET", "/vault")
    log = await api(request, "GET", "/subjects/requests")
    now = datetime.now(UTC)
    requests = [{**r, "due_state": _due_state(r, now)}
                for r in ((log.data or {}).get("requests", []) if log.ok else [])]
    unlocked = bool((vault.data or {}).get("unlocked")) if vault.ok else False
    return render(request, "people.html", status=status, address=address, report=report,
                  error=error, notice=notice, locked=locked or not unlocked,
                  requests=requests)


@page("GET", "/people", "admin")
async def people_page(request: web.Request) -> web.StreamResponse:
    return await _show(request)


@page("POST", "/people", "admin")
async def lookup(request: web.Request) -> web.StreamResponse:
    address = form(request).get("address", "").strip()
    result = await api(request, "GET", "/subjects", query={"address": address})
    if result.status == 423:
        return await _show(request, status=423, address=address, locked=True)
    if not result.ok:
        return await _show(request, status=result.status, address=address,
                           error=result.error)
    return await _show(request, address=address, report=result.data)


@page("POST", "/people/export", "admin", reauth=True)
async def export(request: web.Request) -> web.StreamResponse:
    address = form(request).get("address", "").strip()
    result = await api(request, "GET", "/subjects/export", query={"address": address})
    if not result.ok:
        return error_page(request, result.status, result.error)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return web.Response(
        body=json.dumps(result.data, ensure_ascii=False, indent=2).encode(),
        content_type="application/json", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="kvkk-export-{stamp}.json"'})


@page("POST", "/people/correct", "admin")
async def correct(request: web.Request) -> web.StreamResponse:
    data = form(request)
    address = data.get("address", "").strip()
    result = await api(request, "POST", "/subjects/correct",
                       body={"address": address, "name": data.get("name", "").strip()})
    if not result.ok:
        return await _show(request, status=result.status, address=address,
                           error=result.error)
    report = await api(request, "GET", "/subjects", query={"address": address})
    return await _show(request, address=address, notice="corrected",
                       report=report.data if report.ok else None)


@page("POST", "/people/erase", "admin", reauth=True)
async def erase(request: web.Request) -> web.StreamResponse:
    address = form(request).get("address", "").strip()
    result = await api(request, "POST", "/subjects/erase", body={"address": address})
    if not result.ok:
        return await _show(request, status=result.status, address=address,
                           error=result.error)
    return await _show(request, notice="erased" if result.data.get("completed")
                       else "erase_pending")
