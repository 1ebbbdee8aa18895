"""The audit log, newest first, with simple paging (`?before=<seq>`). Dashboard users are
shown by e-mail; entries hold ids, counts and states, never recipients' data."""
from __future__ import annotations

from aiohttp import web

from dashboard.inputs import MAX_INT
from dashboard.pages.web import page, render
from dashboard.services import accounts, context_of
from dashboard.services import audit as service
from dashboard.services.values import iso

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
    ctx = context_of(request)
    seq = int(before) if before.isascii() and before.isdigit() else None
    found = await service.audit_entries(ctx, seq if seq and seq <= MAX_INT else None,
                                        PAGE_SIZE)
    emails = {u.id: u.email for u in await accounts.list_users(ctx)}
    entries = [{"seq": e.seq, "at": iso(e.at), "actor": e.actor, "action": e.action,
                "detail": e.detail, "who": actor_label(e.actor, emails),
                "details": sorted((k, shown(v)) for k, v in e.detail.items())}
               for e in found.entries]
    return render(request, "audit.html", entries=entries, next_before=found.next_before,
                  paged=bool(before))
