"""Sending lines: a tenant's WhatsApp numbers, Telegram bots and its sandbox line."""
from __future__ import annotations

import math
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.ports import Line
from optout.names import seal_name
from optout.outbound import ADDRESS_FORMAT
from store.tables import campaigns, lines, operators

SANDBOX_DEFAULT_RATE = 100.0
# The sandbox accepts any rate so the pipeline can be measured unthrottled. Each channel's own
# default and maximum are in its description (bot.registry).
SANDBOX_MAX_RATE = 1_000_000.0


DELETED = "deleted"
# Campaigns that still expect to send on their line: a line with one of them is not deleted.
SENDING_STATES = ("running", "scheduled", "paused", "waiting_unlock")


class LineInputError(ValueError):
    def __init__(self, message: str, code: str = "invalid_line"):
        super().__init__(message)
        self.code = code


class LineNotFoundError(LookupError):
    code = "not_found"


class LineStateError(ValueError):
    """The line cannot do that in its state (an archived line cannot be resumed): a 409."""

    def __init__(self, message: str, code: str = "line_state"):
        super().__init__(message)
        self.code = code


class LineDeleteError(ValueError):
    """The line cannot be deleted now; `code` says why (line_in_use, last_sandbox_line)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


async def add_line(conn: AsyncConnection, tenant_id: str, channel: str, name: str,
                   rate_per_second: float, wrapped_credentials: bytes | None = None,
                   options: dict | None = None) -> Line:
    sealed = await seal_name(conn, tenant_id, name)
    line = Line(id=str(uuid.uuid4()), tenant_id=tenant_id, channel=channel, name=name,
                rate_per_second=rate_per_second, state="active", options=options,
                created_at=time.time(), name_sealed=sealed)
    await conn.execute(lines.insert().values(
        id=line.id, tenant_id=tenant_id, channel=channel, name_sealed=sealed,
        rate_per_second=rate_per_second, state="active",
        wrapped_credentials=wrapped_credentials, credentials_format=ADDRESS_FORMAT,
        created_at=line.created_at, options=options))
    return line


async def add_sandbox_line(conn: AsyncConnection, tenant_id: str, name: str = "sandbox",
                           rate_per_second: float = SANDBOX_DEFAULT_RATE,
                           simulate: dict | None = None) -> Line:
    if not 0 < rate_per_second <= SANDBOX_MAX_RATE:
        raise LineInputError(f"rate_per_second must be above 0 and at most {SANDBOX_MAX_RATE:.0f}")
    options = {"simulate": simulation(simulate)} if simulate else None
    return await add_line(conn, tenant_id, "sandbox", name, rate_per_second, options=options)


_SIMULATION = {"latency_ms": (0, 60_000), "failure_rate": (0, 1),
               "enforced_rate_per_second": (0.001, SANDBOX_MAX_RATE)}


def simulation(simulate: dict) -> dict:
    """Sandbox provider behaviour: latency, random temporary failures, an enforced rate (429)."""
    if not isinstance(simulate, dict):
        raise LineInputError("'simulate' must be an object")
    checked = {}
    for key, value in simulate.items():
        if key not in _SIMULATION:
            raise LineInputError(f"unknown simulate option '{key}'; "
                                 f"known: {', '.join(_SIMULATION)}")
        low, high = _SIMULATION[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            raise LineInputError(f"simulate.{key} must be a number from {low} to {high}")
        checked[key] = float(value)
    return checked


def _line(row) -> Line:
    # The name is sealed: "" here, opened from name_sealed by readers holding the unlock.
    return Line(id=row.id, tenant_id=row.tenant_id, channel=row.channel, name="",
                rate_per_second=row.rate_per_second, state=row.state, options=row.options,
                state_reason=row.state_reason, created_at=row.created_at,
                name_sealed=None if row.name_sealed is None else bytes(row.name_sealed))


async def get_line(conn: AsyncConnection, tenant_id: str, line_id: str) -> Line | None:
    q = sa.select(lines).where(lines.c.tenant_id == tenant_id, lines.c.id == line_id,
                               lines.c.state != DELETED)
    row = (await conn.execute(q)).first()
    return _line(row) if row else None


async def list_lines(conn: AsyncConnection, tenant_id: str) -> list[Line]:
    q = sa.select(lines).where(lines.c.tenant_id == tenant_id,
                               lines.c.state != DELETED).order_by(lines.c.created_at)
    return [_line(r) for r in await conn.execute(q)]


async def delete_line(conn: AsyncConnection, line: Line, now: float | None = None) -> int:
    """Deletes a line: refused while a campaign still expects to send on it, and for the
    tenant's last sandbox line. Its credentials are destroyed and its operator chats
    unlinked; the row stays (state "deleted") because finished campaigns and message records
    name it. Its drafts are cancelled; returns how many."""
    busy = [r.id for r in await conn.execute(sa.select(campaigns.c.id).where(
        campaigns.c.line_id == line.id, campaigns.c.state.in_(SENDING_STATES)).limit(20))]
    if busy:
        raise LineDeleteError("line_in_use", "campaigns still sending on this line (cancel "
                                             f"them first): {', '.join(busy)}")
    if line.channel == "sandbox" and len([
            other for other in await list_lines(conn, line.tenant_id)
            if other.channel == "sandbox"]) <= 1:
        raise LineDeleteError("last_sandbox_line", "the last sandbox line is kept: it holds "
                                                   "no credentials and the sandbox needs it")
    now = time.time() if now is None else now
    drafts = await conn.execute(campaigns.update().where(
        campaigns.c.line_id == line.id, campaigns.c.state == "draft").values(
        state="cancelled", state_reason="line deleted", finished_at=now))
    await conn.execute(operators.delete().where(operators.c.line_id == line.id))
    await conn.execute(lines.update().where(lines.c.id == line.id).values(
        state=DELETED, state_reason=None, wrapped_credentials=None))
    return drafts.rowcount


async def active_lines(conn: AsyncConnection, line_ids: list[str]) -> list[Line]:
    if not line_ids:
        return []
    q = sa.select(lines).where(lines.c.id.in_(line_ids))
    return [_line(r) for r in await conn.execute(q)]


async def set_line_state(conn: AsyncConnection, line_id: str, state: str,
                         reason: str | None) -> None:
    await conn.execute(lines.update().where(lines.c.id == line_id).values(
        state=state, state_reason=reason))


async def add_provider_line(conn: AsyncConnection, tenant_id: str, channel: str, name: str,
                            rate_per_second: float | None, wrapped_credentials: bytes | None,
                            options: dict | None = None,
                            pacing: tuple[float, float] | None = None) -> Line:
    """A line of `channel` (a WhatsApp number, a Telegram bot…); its credentials arrive
    wrapped by the master key. `pacing` is the channel's (default, maximum) rate."""
    rate = pacing[0] if rate_per_second is None and pacing else rate_per_second
    check_rate(channel, rate, pacing[1] if pacing else math.inf)
    return await add_line(conn, tenant_id, channel, name, rate, wrapped_credentials, options)


def check_rate(channel: str, rate: float | None, ceiling: float) -> float:
    if rate is None or not 0 < rate <= ceiling:
        raise LineInputError(f"rate_per_second for {channel} must be above 0 and at most "
                             f"{ceiling:.0f}")
    return rate


async def wrapped_credentials(conn: AsyncConnection, line_id: str) -> bytes | None:
    q = sa.select(lines.c.wrapped_credentials).where(lines.c.id == line_id)
    row = (await conn.execute(q)).first()
    return None if row is None or row[0] is None else bytes(row[0])


async def line_by_id(conn: AsyncConnection, line_id: str) -> Line | None:
    """Any tenant's line (webhooks arrive by line id, before we know the tenant)."""
    row = (await conn.execute(sa.select(lines).where(
        lines.c.id == line_id, lines.c.state != DELETED))).first()
    return _line(row) if row else None


async def lines_of_channel(conn: AsyncConnection, channel: str) -> list[Line]:
    q = sa.select(lines).where(lines.c.channel == channel, lines.c.state == "active")
    return [_line(r) for r in await conn.execute(q)]


ARCHIVED = "archived"
ARCHIVE_REASON = "line archived"
# Campaigns an archived line pauses: nothing of theirs is sent until the owner moves them.
_ARCHIVE_PAUSES = ("running", "scheduled", "waiting_unlock")


async def update_line(conn: AsyncConnection, line_id: str, **values) -> None:
    """Writes the given columns (name, rate_per_second, options, wrapped_credentials); a
    name is sealed (optout.names)."""
    if "name" in values:
        tenant_id = (await conn.execute(sa.select(lines.c.tenant_id).where(
            lines.c.id == line_id))).scalar_one()
        values["name_sealed"] = await seal_name(conn, tenant_id, values.pop("name"))
    if values:
        await conn.execute(lines.update().where(lines.c.id == line_id).values(**values))


async def archive_line(conn: AsyncConnection, line: Line) -> list[str]:
    """The line stops sending for good (it stays listed, with its history): the campaigns
    still expecting to send on it are paused with the reason; returns their ids."""
    paused = [r.id for r in await conn.execute(sa.select(campaigns.c.id).where(
        campaigns.c.line_id == line.id, campaigns.c.state.in_(_ARCHIVE_PAUSES)))]
    if paused:
        await conn.execute(campaigns.update().where(
            campaigns.c.id.in_(paused), campaigns.c.state.in_(_ARCHIVE_PAUSES)).values(
            state="paused", state_reason=ARCHIVE_REASON))
    await set_line_state(conn, line.id, ARCHIVED, ARCHIVE_REASON)
    return paused
