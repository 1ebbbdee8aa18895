"""KVKK data-subject requests (admins): look a person up by phone and see what is held, export
it, correct their name, erase them; and the request log with its 30-day deadlines. Lookups are
POSTed so phone numbers stay out of URLs and access logs. Export and erasure need the password
re-entered. Through dashboard.services.subjects, like the /subjects API."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp import web

from crypto.errors import VaultLockedError
from dashboard.context import context_of
from dashboard.pages.failures import shown
from dashboard.pages.web import error_page, form, page, render
from dashboard.services import accounts as account_services
from dashboard.services import subjects as subject_services


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
    ctx = context_of(request)
    now = datetime.now(UTC)
    requests = [{**r, "due_state": _due_state(r, now)}
                for r in await subject_services.requests(ctx)]
    unlocked = (await account_services.vault_status(ctx)).unlocked
    return render(request, "people.html", status=status, address=address, report=report,
                  error=error, notice=notice, locked=locked or not unlocked,
                  requests=requests)


async def _refused(request: web.Request, exc: Exception, address: str) -> web.StreamResponse:
    """The page again with the service's refusal; a fault propagates."""
    if isinstance(exc, VaultLockedError):
        return await _show(request, status=423, address=address, locked=True)
    failed = shown(request, exc)
    if failed is None:
        raise exc
    return await _show(request, status=failed[0], address=address, error=failed[2])


@page("GET", "/people", "admin")
async def people_page(request: web.Request) -> web.StreamResponse:
    return await _show(request)


@page("POST", "/people", "admin")
async def lookup(request: web.Request) -> web.StreamResponse:
    address = form(request).get("address", "").strip()
    try:
        report = await subject_services.access(context_of(request), address)
    except Exception as exc:
        return await _refused(request, exc, address)
    return await _show(request, address=address, report=report)


@page("POST", "/people/export", "admin", reauth=True)
async def export(request: web.Request) -> web.StreamResponse:
    address = form(request).get("address", "").strip()
    try:
        done = await subject_services.export(context_of(request), address)
    except Exception as exc:
        failed = shown(request, exc)
        if failed is None:
            raise
        return error_page(request, failed[0], failed[2])
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return web.Response(
        body=json.dumps(done.document, ensure_ascii=False, indent=2).encode(),
        content_type="application/json", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="kvkk-export-{stamp}.json"'})


@page("POST", "/people/correct", "admin")
async def correct(request: web.Request) -> web.StreamResponse:
    data = form(request)
    address = data.get("address", "").strip()
    ctx = context_of(request)
    try:
        await subject_services.correct(ctx, address, name=data.get("name", "").strip())
    except Exception as exc:
        return await _refused(request, exc, address)
    try:
        report = await subject_services.access(ctx, address)
    except VaultLockedError:
        report = None
    return await _show(request, address=address, notice="corrected", report=report)


@page("POST", "/people/erase", "admin", reauth=True)
async def erase(request: web.Request) -> web.StreamResponse:
    address = form(request).get("address", "").strip()
    try:
        done = await subject_services.erase(context_of(request), address)
    except Exception as exc:
        return await _refused(request, exc, address)
    return await _show(request, notice="erased" if done["completed"] else "erase_pending")
