"""The audit log, newest first, with simple paging (`?before=<seq>`). Dashboard users are
shown by e-mail; entries hold ids, counts and states, never recipients' data."""
from __future__ import annotations

from aiohttp import web

from dashboard.web import api, error_page, page, render

PAGE_SIZE = 50


def shown(value) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "—" if value is None else str(value)


def actor_label(actor: str, emails: dict[str, str]) -> str:
    kind, _, ident = actor.partition(":")
    if kind == "user" and ident in emails:
        return emails[ident]
    return actor


@page("GET", "/audit")
async def audit_page(request: web.Request) -> web.StreamResponse:
    before = request.query.get("before", "")
    result = await api(request, "GET", "/audit", query={
        "before": before if before.isdigit() else None, "limit": PAGE_SIZE})
    if not result.ok:
        return error_page(request, result.status, result.error)
    people = await api(request, "GET", "/users")
    emails = {u["id"]: u["email"] for u in (people.data or {}).get("users", [])} \
        if people.ok else {}
    entries = [{**e, "who": actor_label(e["actor"], emails),
                "details": sorted((k, shown(v)) for k, v in e["detail"].items())}
               for e in result.data["entries"]]
    return render(request, "audit.html", entries=entries,
                  next_before=result.data["next_before"], paged=bool(before))
