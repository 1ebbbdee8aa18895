"""Names a business typed (lists, campaigns, lines, API keys) as the owner reads them: sealed
at rest (optout.names), opened while the vault is unlocked. Locked, a name is None and the
answer says `"name_locked": true`; pages show labels.NAME_LOCKED instead."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from campaigns.ports import Line
from dashboard.keys import db_key, fields_key
from dashboard.services import Context
from optout.names import open_names
from store.tables import lines as lines_table

# A bot's subscriber list made while locked has no name of its own: it reads as this.
SUBSCRIBERS = "Telegram: {line}"


def shown(name: str | None, locked: bool) -> dict:
    """The API's pair: {"name": …, "name_locked": …}."""
    return {"name": None if locked else name, "name_locked": locked}


async def opened(ctx: Context, blobs: Sequence[bytes | None]) -> list[str | None] | None:
    """The names in order; None while the vault is locked."""
    return await open_names(ctx[fields_key], ctx.tenant_id, blobs)


async def line_names(ctx: Context, found: Iterable[Line]) -> dict[str, str | None] | None:
    """{line id: name} of these lines (a line just made carries its name); None if locked."""
    found = list(found)
    names = await opened(ctx, [None if line.name else line.name_sealed for line in found])
    if names is None:
        return None
    return {line.id: line.name or name for line, name in zip(found, names, strict=True)}


async def list_names(ctx: Context, rows) -> list[str | None] | None:
    """The names of contact list rows (name_sealed, subscribers_of); None while locked. A
    bot's subscriber list without a name of its own reads "Telegram: <line name>"."""
    rows = list(rows)
    bots = sorted({r.subscribers_of for r in rows if r.subscribers_of and not r.name_sealed})
    bot_blobs: dict[str, bytes | None] = {}
    if bots:
        async with ctx[db_key].connect() as conn:
            bot_blobs = {r.id: r.name_sealed for r in await conn.execute(sa.select(
                lines_table.c.id, lines_table.c.name_sealed).where(
                lines_table.c.tenant_id == ctx.tenant_id, lines_table.c.id.in_(bots)))}
    blobs = [r.name_sealed or bot_blobs.get(r.subscribers_of) for r in rows]
    names = await opened(ctx, blobs)
    if names is None:
        return None
    return [SUBSCRIBERS.format(line=name or "") if r.subscribers_of and not r.name_sealed
            else name for r, name in zip(rows, names, strict=True)]


# The OpenAPI description of a sealed name in an answer (lists, campaigns, lines, API keys).
NAME_PROPERTIES = {
    "name": {"type": ["string", "null"], "description": (
        "as the business typed it; null while the vault is locked (names are sealed to the "
        "tenant key like contact data)")},
    "name_locked": {"type": "boolean", "description": (
        "true while the vault is locked: the name is sealed and `name` is null; unlock to "
        "read it")},
}


def named_schema(key: str | None = None) -> dict:
    """An answer holding one named object (key None) or an array of them under `key`."""
    item = {"type": "object", "required": ["id", "name", "name_locked"],
            "properties": {"id": {"type": "string"}, **NAME_PROPERTIES}}
    if key is None:
        return item
    return {"type": "object", "required": [key],
            "properties": {key: {"type": "array", "items": item}}}
