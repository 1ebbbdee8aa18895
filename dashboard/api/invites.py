"""API: Telegram invitations of a contact list — the t.me deep link, its QR code (SVG) and
revoking it (bot.telegram_invites)."""
from __future__ import annotations

from aiohttp import web

from bot.telegram_invites import Invite, InviteError, TelegramInvites, qr_svg
from dashboard.errors import ApiError, json_response, parse_body
from dashboard.keys import TENANT, actor_of, channels_key, db_key
from dashboard.models import request_model, rule
from dashboard.routing import Operation


def invites_of(app: web.Application) -> TelegramInvites:
    """The service over the app's database and Telegram channel (no state of its own)."""
    return TelegramInvites(app[db_key], app[channels_key]["telegram"])


def invite_json(invite: Invite) -> dict:
    return {"id": invite.id, "link": invite.link, "token": invite.token,
            "qr_svg_url": f"/api/v1/lists/{invite.list_id}/telegram-invite.svg"
                          f"?line_id={invite.line_id}",
            "list_id": invite.list_id, "line_id": invite.line_id,
            "bot_username": invite.bot_username, "created_at": invite.created_at}


async def _call(work):
    try:
        return await work
    except InviteError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


def _line_query(request: web.Request) -> str | None:
    value = request.query.get("line_id")
    if value is not None and not value.strip():
        raise ApiError(400, "invalid_field", "'line_id' must not be empty")
    return value


@request_model
class CreateInvite:
    line_id: str = rule(str, description="a Telegram line of the tenant")


@request_model
class RevokeInvites:
    line_id: str | None = rule(str, default=None, description="only this line's invites")


async def post_invite(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateInvite)
    invite, made = await _call(invites_of(request.app).create(
        request[TENANT], request.match_info["id"], body.line_id, actor_of(request)))
    return json_response(invite_json(invite), status=201 if made else 200)


async def get_invite(request: web.Request) -> web.Response:
    invite = await _call(invites_of(request.app).find(
        request[TENANT], request.match_info["id"], _line_query(request)))
    return json_response(invite_json(invite))


async def get_invite_svg(request: web.Request) -> web.Response:
    invite = await _call(invites_of(request.app).find(
        request[TENANT], request.match_info["id"], _line_query(request)))
    return svg_response(invite, request.query.get("download") in ("1", "true"))


def svg_response(invite: Invite, download: bool = False) -> web.Response:
    headers = {"Content-Disposition": 'attachment; filename="telegram-davet.svg"'} \
        if download else {}
    return web.Response(body=qr_svg(invite.link), content_type="image/svg+xml",
                        headers=headers)


async def post_revoke(request: web.Request) -> web.Response:
    body = await parse_body(request, RevokeInvites)
    revoked = await _call(invites_of(request.app).revoke(
        request[TENANT], request.match_info["id"], body.line_id, actor_of(request)))
    return json_response({"revoked": [invite.id for invite in revoked]})


INVITE_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "string"}, "link": {"type": "string"}, "token": {"type": "string"},
    "qr_svg_url": {"type": "string"}, "list_id": {"type": "string"},
    "line_id": {"type": "string"}, "bot_username": {"type": "string"},
    "created_at": {"type": "number"}}}

OPERATIONS = [
    Operation("POST", "/api/v1/lists/{id}/telegram-invite", post_invite,
              "The list's Telegram invite for a Telegram line: a t.me deep link "
              "(https://t.me/<bot>?start=<token>, the token random) and its QR code. Pressing "
              "it opens the bot's consent offer; the person's tap joins this list, with the "
              "invite in the consent's evidence. 201 when made now, 200 with the active one "
              "(a printed link keeps working until it is revoked). The bot's username comes "
              "from Telegram (getMe): 502 telegram_unavailable when it does not answer",
              model=CreateInvite,
              responses={200: "The active invite", 201: "Invite made",
                         400: "Not a Telegram line", 404: "No such list or line",
                         502: "Telegram did not answer"},
              response_schemas={200: INVITE_SCHEMA, 201: INVITE_SCHEMA}),
    Operation("GET", "/api/v1/lists/{id}/telegram-invite", get_invite,
              "The list's active Telegram invite (for `line_id`, or its only one)",
              query=("line_id",), responses={200: "The invite", 404: "None active"},
              response_schemas={200: INVITE_SCHEMA}),
    Operation("GET", "/api/v1/lists/{id}/telegram-invite.svg", get_invite_svg,
              "The invite link as a QR code (image/svg+xml) to print or post; "
              "`download=1` asks the browser to save it",
              query=("line_id", "download"),
              responses={200: "SVG image", 404: "None active"}),
    Operation("POST", "/api/v1/lists/{id}/telegram-invite/revoke", post_revoke,
              "Revokes the list's active invites (only `line_id`'s when given). A revoked "
              "link still opens the bot, with the plain consent offer that joins no list; "
              "those who joined stay. Audited as telegram_invite.revoke",
              model=RevokeInvites, responses={200: "Revoked invite ids", 404: "No such list"}),
]
