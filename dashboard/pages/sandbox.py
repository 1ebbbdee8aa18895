"""The sandbox: every simulated phone's inbox (what sandbox lines sent it), and a reply
form per phone that simulates the person answering (DUR, BAŞLA, YARDIM, …)."""
from __future__ import annotations

from aiohttp import web

from dashboard.web import USER, api, error_page, form, page, render

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
    result = await api(request, "GET", "/sandbox/messages", query={"limit": INBOX_LIMIT})
    locked = result.status == 423
    error = None if result.ok or locked else (result.error or str(result.status))
    phones = inboxes(result.data.get("messages", [])) if result.ok else []
    lines = ((await api(request, "GET", "/lines")).data or {}).get("lines", [])
    outcome = request.query.get("outcome")
    return render(request, "sandbox.html", phones=phones, locked=locked, error=error,
                  outcome=outcome if outcome in OUTCOMES else None,
                  sandbox_lines=[line for line in lines if line.get("channel") == "sandbox"],
                  can_reply=request[USER].can("operator"))


@page("POST", "/sandbox/reply", "operator")
async def reply(request: web.Request) -> web.StreamResponse:
    data = form(request)
    result = await api(request, "POST", "/sandbox/inbound", body={
        "line_id": data.get("line_id", ""), "from": data.get("from", ""),
        "text": data.get("text", "")})
    if not result.ok:
        return error_page(request, result.status, result.error or str(result.status))
    outcome = ("duplicate" if result.data.get("duplicate")
               else result.data.get("intent") or "none")
    raise web.HTTPSeeOther(f"/sandbox?outcome={outcome}")
