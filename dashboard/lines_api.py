"""API: sending lines, and the sandbox's simulated phones (inbound replies, received messages)."""
from __future__ import annotations

from aiohttp import web

from campaigns.lines import add_sandbox_line, get_line, list_lines
from campaigns.ports import Line
from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.keys import TENANT, db_key, inbound_key, sandbox_key
from dashboard.routing import Operation
from optout.addresses import normalise_address


def line_json(line: Line) -> dict:
    return {"id": line.id, "channel": line.channel, "name": line.name,
            "rate_per_second": line.rate_per_second, "state": line.state,
            "simulate": (line.options or {}).get("simulate")}


async def get_lines(request: web.Request) -> web.Response:
    async with request.app[db_key].connect() as conn:
        found = await list_lines(conn, request[TENANT])
    return json_response({"lines": [line_json(line) for line in found]})


async def post_line(request: web.Request) -> web.Response:
    body = await json_body(request)
    channel = field(body, "channel", str)
    name = field(body, "name", str).strip()
    if not name or len(name) > 200:
        raise ApiError(400, "invalid_field", "'name' must be 1 to 200 characters")
    if channel != "sandbox":
        raise ApiError(400, "unsupported_channel",
                       f"channel '{channel}' cannot be added yet; only 'sandbox' lines exist")
    rate = field(body, "rate_per_second", float, required=False, default=100.0)
    simulate = field(body, "simulate", dict, required=False, default=None)
    async with request.app[db_key].begin() as conn:
        line = await add_sandbox_line(conn, request[TENANT], name, rate, simulate)
    return json_response(line_json(line), status=201)


async def tenant_line(request: web.Request, line_id: str) -> Line:
    async with request.app[db_key].connect() as conn:
        line = await get_line(conn, request[TENANT], line_id)
    if line is None:
        raise ApiError(404, "not_found", "no such line")
    return line


def address_param(raw: str | None, channel: str, name: str) -> str:
    if not raw or not raw.strip():
        raise ApiError(400, "missing_field", f"'{name}' is required")
    address = normalise_address(raw, channel)
    if address is None:
        raise ApiError(400, "invalid_address", f"'{name}' is not a valid {channel} address")
    return address


async def sandbox_inbound(request: web.Request) -> web.Response:
    body = await json_body(request)
    line = await tenant_line(request, field(body, "line_id", str))
    if line.channel != "sandbox":
        raise ApiError(400, "not_sandbox", "this line is not a sandbox line")
    address = address_param(field(body, "from", str), "sandbox", "from")
    text = field(body, "text", str)
    outcome = await request.app[inbound_key].receive(line, address, text)
    return json_response({"intent": outcome.intent.value if outcome.intent else None,
                              "duplicate": outcome.duplicate,
                              "replied": outcome.reply is not None})


async def sandbox_messages(request: web.Request) -> web.Response:
    raw = request.query.get("to")
    to = address_param(raw, "sandbox", "to") if raw is not None else None
    delivered = await request.app[sandbox_key].received(request[TENANT], to)
    return json_response({"messages": [
        {"to": d.to, "text": d.text, "at": iso(d.at), "line_id": d.line_id} for d in delivered]})


def iso(ts: float | None) -> str | None:
    from datetime import UTC, datetime
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


LINE_SCHEMA = {"type": "object", "required": ["channel", "name"], "properties": {
    "channel": {"enum": ["sandbox"]}, "name": {"type": "string"},
    "rate_per_second": {"type": "number"},
    "simulate": {"type": "object", "properties": {
        "latency_ms": {"type": "number"}, "failure_rate": {"type": "number"},
        "enforced_rate_per_second": {"type": "number"}}}}}

OPERATIONS = [
    Operation("GET", "/api/v1/lines", get_lines, "The tenant's sending lines"),
    Operation("POST", "/api/v1/lines", post_line, "Add a sending line (sandbox for now)",
              body=LINE_SCHEMA, responses={201: "Line created", 400: "Invalid line"}),
    Operation("POST", "/api/v1/sandbox/inbound", sandbox_inbound,
              "Simulate a recipient's reply on a sandbox line (STOP, BAŞLA, YARDIM, …)",
              body={"type": "object", "required": ["line_id", "from", "text"], "properties": {
                  "line_id": {"type": "string"}, "from": {"type": "string"},
                  "text": {"type": "string"}}},
              responses={200: "Applied", 404: "No such line"}),
    Operation("GET", "/api/v1/sandbox/messages", sandbox_messages,
              "What simulated phones received (needs the vault unlocked)", query=("to",),
              responses={200: "Messages", 423: "Vault is locked"}),
]
