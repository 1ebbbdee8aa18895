"""API: a one-time code that links a Telegram chat to the tenant as its operator bot."""
from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from campaigns.lines import list_lines
from dashboard.auditing import audited
from dashboard.context import context_of
from dashboard.errors import ApiError, json_response
from dashboard.keys import TENANT, db_key, operator_desk_key
from dashboard.routing import Operation
from dashboard.services.names import line_names, shown


async def operator_link(request: web.Request) -> web.Response:
    async with request.app[db_key].connect() as conn:
        bots = [line for line in await list_lines(conn, request[TENANT])
                if line.channel == "telegram"]
    if not bots:
        raise ApiError(400, "no_telegram_line",
                       "add a Telegram line first: the operator bot talks through it")
    names = await line_names(context_of(request), bots)  # None while locked
    code, expires = await request.app[operator_desk_key].new_code(request[TENANT])
    await audited(request, "operator.link_code")
    return json_response({
        "code": code, "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
        "how": f"Send /link {code} to your Telegram bot within 10 minutes.",
        "bots": [{"line_id": line.id, **shown((names or {}).get(line.id), names is None)}
                 for line in bots]}, status=201)


OPERATIONS = [
    Operation("POST", "/api/v1/operator-link", operator_link,
              "One-time code (10 min) linking a Telegram chat as the tenant's operator: then "
              "/campaigns, /status ID, /pause ID, /resume ID and alerts in that chat",
              responses={201: "{code, expires_at, how}", 400: "No Telegram line"},
              role="admin"),
]
