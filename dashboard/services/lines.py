"""Sending lines as the owner sees them (never their credentials), and the sandbox's simulated
phones — what the lines/sandbox JSON API (dashboard.api.lines) and the pages both read. Changes
to lines go through bot.lines.LineAdmin (the `line_admin_key` component) directly."""
from __future__ import annotations

from bot import registry
from bot.lines import check_name
from bot.sandbox import simulate_receipts
from campaigns.lines import LineDeleteError, get_line, list_lines
from campaigns.ports import Line
from dashboard.inputs import field
from dashboard.keys import db_key, inbound_key, line_admin_key, sandbox_key
from dashboard.services import Context, ServiceError, ServiceNotFoundError, ServiceStateError
from dashboard.services.names import line_names, shown
from dashboard.services.values import address_param, line_fields, refuse_addresses


def line_view(line: Line, names: dict[str, str | None] | None = None) -> dict:
    """What the owner sees of a line: never its credentials; its channel's options. Its
    name from `names` (names.line_names; None while locked: "name_locked"), unless the line
    was just made and carries the name as typed."""
    options = line.options or {}
    spec = registry.find(line.channel)
    locked = not line.name and names is None
    found = {"id": line.id, "channel": line.channel,
             **shown(line.name or (names or {}).get(line.id), locked),
             "rate_per_second": line.rate_per_second, "state": line.state,
             "state_reason": line.state_reason,
             "webhook_path": f"/webhooks/{line.channel}/{line.id}"
             if spec is not None and spec.webhooks else None}
    visible = [f.name for f in spec.options] if spec is not None else []
    found.update({k: options[k] for k in visible if k in options})
    return found


async def view(ctx: Context, line: Line) -> dict:
    """line_view with the name opened while unlocked."""
    return line_view(line, await line_names(ctx, [line]))


async def lines(ctx: Context) -> list[dict]:
    """The tenant's lines (line_view), oldest first."""
    async with ctx[db_key].connect() as conn:
        found = await list_lines(conn, ctx.tenant_id)
    names = await line_names(ctx, found)
    return [line_view(line, names) for line in found]


async def sandbox_lines(ctx: Context) -> list[dict]:
    return [line for line in await lines(ctx) if line["channel"] == "sandbox"]


async def sandbox_received(ctx: Context, to: str | None, limit: int):
    """What simulated phones received, oldest first (the newest `limit`); VaultLockedError
    while locked (the texts are sealed)."""
    return await ctx[sandbox_key].received(ctx.tenant_id, to, limit)


async def line(ctx: Context, line_id: str) -> Line:
    """The tenant's line; ServiceNotFoundError."""
    async with ctx[db_key].connect() as conn:
        found = await get_line(conn, ctx.tenant_id, line_id)
    if found is None:
        raise ServiceNotFoundError("no such line")
    return found


async def sandbox_reply(ctx: Context, line_id: str, raw_from: str, text: str) -> dict:
    """A simulated person's reply on a sandbox line (STOP, BAŞLA, YARDIM, …), applied like a
    real one: {intent, duplicate, replied}."""
    found = await line(ctx, line_id)
    if found.channel != "sandbox":
        raise ServiceError("not_sandbox", "this line is not a sandbox line")
    address = address_param(raw_from, "sandbox", "from")
    outcome = await ctx[inbound_key].receive(found, address, text)
    return {"intent": outcome.intent.value if outcome.intent else None,
            "duplicate": outcome.duplicate, "replied": outcome.reply is not None}


def _values(body: dict, fields, required: bool = True) -> dict:
    """The spec's fields read from the body, each checked for its kind (a 400 naming it)."""
    return {f.name: field(body, f.name, f.kind, required=f.required and required)
            for f in fields if f.name in body or (f.required and required)}


async def add_line(ctx: Context, body: dict) -> dict:
    """A new line from the API's request body (channel, name, rate_per_second and the
    channel's fields); its line_view. Provider addresses are refused first (400
    address_not_allowed), an unknown channel is 400 unsupported_channel."""
    refuse_addresses(body, line_fields())
    channel = field(body, "channel", str)
    try:
        spec = registry.get(channel)
    except registry.UnknownChannelError as exc:
        raise ServiceError("unsupported_channel", str(exc)) from None
    name = check_name(field(body, "name", str))
    rate = field(body, "rate_per_second", float, required=False, default=None)
    values = _values(body, spec.credentials + spec.options)
    return await view(ctx, await ctx[line_admin_key].add(ctx.tenant_id, spec.name, name, rate,
                                                         values))


async def edit_line(ctx: Context, line_id: str, body: dict) -> dict:
    """Name, rate and the channel's editable fields (a token is a rotation); 400
    unknown_field for anything else, missing_field for nothing to change."""
    refuse_addresses(body, line_fields())
    found = await line(ctx, line_id)
    spec = registry.get(found.channel)
    editable = [f for f in spec.credentials + spec.options if f.editable]
    known = {"name", "rate_per_second", *(f.name for f in editable)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ServiceError("unknown_field", f"'{unknown[0]}' cannot be changed on a "
                                            f"{spec.name} line; editable: "
                                            f"{', '.join(sorted(known))}")
    changes = _values(body, editable, required=False)
    if "name" in body:
        changes["name"] = field(body, "name", str)
    if "rate_per_second" in body:
        changes["rate_per_second"] = field(body, "rate_per_second", float)
    if not changes:
        raise ServiceError("missing_field", "nothing to change; editable: "
                                            f"{', '.join(sorted(known))}")
    return await view(ctx, await ctx[line_admin_key].update(ctx.tenant_id, ctx.actor, found.id,
                                                            changes))


async def act(ctx: Context, line_id: str, action: str) -> dict:
    """pause, resume (with resumed_from: why it was paused) or archive (with
    paused_campaigns); the line_view after it."""
    admin = ctx[line_admin_key]
    if action == "pause":
        return await view(ctx, await admin.pause(ctx.tenant_id, ctx.actor, line_id))
    if action == "resume":
        resumed = await admin.resume(ctx.tenant_id, ctx.actor, line_id)
        return await view(ctx, resumed.line) | {"resumed_from": resumed.previous_reason}
    if action == "archive":
        found, paused = await admin.archive(ctx.tenant_id, ctx.actor, line_id)
        return await view(ctx, found) | {"paused_campaigns": paused}
    raise ValueError(action)


async def delete_line(ctx: Context, line_id: str) -> None:
    """409 line_in_use / last_sandbox_line (LineDeleteError's code) when it must stay."""
    try:
        await ctx[line_admin_key].delete(ctx.tenant_id, ctx.actor, line_id)
    except LineDeleteError as exc:
        raise ServiceStateError(exc.code, str(exc)) from None


async def sandbox_receipts(ctx: Context) -> tuple[int, int]:
    """The sandbox "provider" reports its sends: every sent message delivered, most of them
    read (bot.sandbox.simulate_receipts); (newly delivered, newly read)."""
    async with ctx[db_key].begin() as conn:
        return await simulate_receipts(conn, ctx.tenant_id)
