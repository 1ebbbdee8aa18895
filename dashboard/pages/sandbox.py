"""The sandbox: every simulated phone's inbox (what sandbox lines sent it), and a reply
form per phone that simulates the person answering (DUR, BAŞLA, YARDIM, …)."""
from __future__ import annotations

from aiohttp import web

from crypto.errors import VaultLockedError
from dashboard.context import context_of
from dashboard.pages.failures import shown
from dashboard.pages.web import USER, error_page, forget_reads, form, page, render
from dashboard.services import lines as line_services
from dashboard.services.values import iso

OUTCOMES = ("stop", "start", "help", "none", "duplicate")
INBOX_LIMIT = 300  # the newest messages; a sandbox campaign to thousands stays one page


def inboxes(messages: list[dict]) -> list[dict]:
    """Messages grouped by recipient, newest phone first, newest message first."""
    phones: dict[str, dict] = {}
    for message in reversed(messages):  # the API lists oldest first
        phone = phones.setdefault(message["to"], {"phone": message["to"],
                                                  "line_id": message["line_id"],
                                                  "messages": []})
        phone["messages"].append(message)
    return list(phones.values())


@page("GET", "/sandbox")
async def sandbox(request: web.Request) -> web.StreamResponse:
    ctx = context_of(request)
    locked = False
    try:
        received = await line_services.sandbox_received(ctx, None, INBOX_LIMIT)
    except VaultLockedError:
        received, locked = [], True
    phones = inboxes([{"to": d.to, "text": d.text, "at": iso(d.at), "line_id": d.line_id}
                      for d in received])
    outcome = request.query.get("outcome")
    receipts = [int(n) for n in request.query.get("receipts", "").split("-")
                if n.isascii() and n.isdigit() and len(n) < 10][:2]
    return render(request, "sandbox.html", phones=phones, locked=locked, error=None,
                  outcome=outcome if outcome in OUTCOMES else None,
                  receipts=receipts if len(receipts) == 2 else None,
                  sandbox_lines=await line_services.sandbox_lines(ctx),
                  can_reply=request[USER].can("operator"))


@page("POST", "/sandbox/reply", "operator")
async def reply(request: web.Request) -> web.StreamResponse:
    data = form(request)
    try:
        result = await line_services.sandbox_reply(context_of(request), data.get("line_id", ""),
                                     data.get("from", ""), data.get("text", ""))
    except Exception as exc:
        failed = shown(request, exc)
        if failed is None:
            raise
        return error_page(request, failed[0], failed[2])
    outcome = ("duplicate" if result["duplicate"] else result["intent"] or "none")
    raise web.HTTPSeeOther(f"/sandbox?outcome={outcome}")


@page("POST", "/sandbox/receipts", "operator")
async def receipts(request: web.Request) -> web.StreamResponse:
    """Simulates the provider's receipts for the sandbox's sends: delivered, and most read."""
    ctx = context_of(request)
    delivered, read = await line_services.sandbox_receipts(ctx)
    forget_reads(ctx.tenant_id)
    raise web.HTTPSeeOther(f"/sandbox?receipts={delivered}-{read}")
