"""Sending lines: the list, adding a sandbox, WhatsApp Cloud API or Telegram line, and deleting
one. Credentials go to the API once and are never shown again (nor echoed on an error)."""
from __future__ import annotations

from aiohttp import web

from dashboard.web import USER, api, form, page, render

# What each channel's form sends besides `channel` and `name`; secrets are never echoed.
FIELDS = {
    "sandbox": (),
    "whatsapp": ("phone_number_id", "access_token", "app_secret", "verify_token"),
    "telegram": ("bot_token",),
}
SECRET = {"access_token", "app_secret", "verify_token", "bot_token"}
TIERS = ("250", "2.000", "10.000", "100.000", "∞")


async def _page(request: web.Request, status: int = 200, error: str | None = None,
                values: dict | None = None) -> web.Response:
    lines = ((await api(request, "GET", "/lines")).data or {}).get("lines", [])
    return render(request, "lines.html", status=status, lines=lines, error=error,
                  values=values or {}, tiers=TIERS, can_add=request[USER].can("admin"))


@page("GET", "/lines")
async def line_list(request: web.Request) -> web.StreamResponse:
    return await _page(request)


@page("POST", "/lines", "admin")
async def add_line(request: web.Request) -> web.StreamResponse:
    data = form(request)
    channel = data.get("channel", "")
    if channel not in FIELDS:
        return await _page(request, 400, "Bilinmeyen kanal. / Unknown channel.")
    body: dict = {"channel": channel, "name": data.get("name", "")}
    for name in FIELDS[channel]:
        if data.get(name, "").strip():  # a blank field is a missing one, as the API says
            body[name] = data[name].strip()
    if channel == "whatsapp" and data.get("messaging_tier", "").isdigit():
        body["messaging_tier"] = int(data["messaging_tier"])
    result = await api(request, "POST", "/lines", body=body)
    if not result.ok:
        kept = {k: v for k, v in data.items() if k not in SECRET and k != "csrf"}
        return await _page(request, result.status if result.status < 500 else 400,
                           result.error or str(result.status), kept)
    raise web.HTTPSeeOther("/lines")


@page("POST", "/lines/{id}/delete", "admin")
async def delete_line(request: web.Request) -> web.StreamResponse:
    """The API refuses (409, with the reason shown here) while campaigns still use the line."""
    result = await api(request, "DELETE", f"/lines/{request.match_info['id']}")
    if not result.ok:
        return await _page(request, result.status if result.status < 500 else 400,
                           result.error or str(result.status))
    raise web.HTTPSeeOther("/lines")
