"""A list's Telegram invitation ("Telegram davet bağlantısı"): make the t.me link of a Telegram
line for the list, show it with its QR code to print or post, and revoke it. The page calls
the same service as the API (bot.telegram_invites)."""
from __future__ import annotations

from aiohttp import web

from bot.telegram_invites import InviteError
from dashboard.api.invites import invites_of, svg_response
from dashboard.context import context_of
from dashboard.keys import ACTOR, TENANT
from dashboard.pages.web import USER, error_page, form, page, render
from dashboard.services import audience
from dashboard.services import lines as line_services


async def _page(request: web.Request, status: int = 200, error: str | None = None
                ) -> web.Response:
    list_id = request.match_info["id"]
    ctx = context_of(request)
    found = next((item for item in await audience.lists(ctx) if item["id"] == list_id), None)
    if found is None:
        return error_page(request, 404, "Liste bulunamadı. / No such list.")
    telegram = [line for line in await line_services.lines(ctx) if line["channel"] == "telegram"]
    names = {line["id"]: line["name"] for line in telegram}
    invites = [i for i in await invites_of(request.app).listed(request[TENANT], list_id)
               if i.line_id in names]  # a deleted line's invite reaches no bot
    return render(request, "telegram_invite.html", status=status, list=found, error=error,
                  invites=invites, line_names=names,
                  free_lines=[line for line in telegram
                              if line["id"] not in {i.line_id for i in invites}],
                  can_change=request[USER].can("operator"))


@page("GET", "/contacts/lists/{id}/telegram")
async def invite_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


@page("POST", "/contacts/lists/{id}/telegram", "operator")
async def create_invite(request: web.Request) -> web.StreamResponse:
    list_id = request.match_info["id"]
    try:
        await invites_of(request.app).create(request[TENANT], list_id,
                                             form(request).get("line_id", ""), request[ACTOR])
    except InviteError as exc:
        return await _page(request, exc.status if exc.status < 500 else 400, exc.message)
    raise web.HTTPSeeOther(f"/contacts/lists/{list_id}/telegram")


@page("POST", "/contacts/lists/{id}/telegram/revoke", "operator")
async def revoke_invite(request: web.Request) -> web.StreamResponse:
    list_id = request.match_info["id"]
    try:
        await invites_of(request.app).revoke(request[TENANT], list_id,
                                             form(request).get("line_id") or None,
                                             request[ACTOR])
    except InviteError as exc:
        return await _page(request, exc.status, exc.message)
    raise web.HTTPSeeOther(f"/contacts/lists/{list_id}/telegram")


@page("GET", "/contacts/lists/{id}/telegram-invite.svg")
async def invite_svg(request: web.Request) -> web.StreamResponse:
    try:
        invite = await invites_of(request.app).find(
            request[TENANT], request.match_info["id"], request.query.get("line_id") or None)
    except InviteError as exc:
        return error_page(request, exc.status, exc.message)
    return svg_response(invite, request.query.get("download") == "1")
