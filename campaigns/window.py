"""The WhatsApp 24 h customer-service window: free text reaches a person only within 24 h of
their last message to the line; outside it only an approved template may go (Graph answers
131047). This module records inbound per (line, blind index), reads a claimed batch's window
in one query, counts a list's people inside it, and decides per recipient what to send."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.engine import dialect_insert
from store.tables import contacts, inbound_window, lines, list_members

# A row's skip reason: free text for a person whose window is closed (not a failure).
OUTSIDE_WINDOW = "outside_window"
# Channels whose providers deliver free text only inside a window, with its length in seconds
# (WhatsApp: 24 h). The channel registry (bot.registry) declares them: campaigns cannot
# import bot/.
_WINDOWS: dict[str, float] = {}
# campaigns.outside_window: what people outside the window get.
SKIP, FALLBACK_TEMPLATE = "skip", "template"
MODES = (SKIP, FALLBACK_TEMPLATE)
# What one recipient is sent.
TEXT, TEMPLATE = "text", "template"


def declare(channel: str, seconds: float | None) -> None:
    if seconds:
        _WINDOWS[channel] = float(seconds)
    else:
        _WINDOWS.pop(channel, None)


def window_of(channel: str) -> float | None:
    """How long a person's window stays open on `channel`; None: the channel has none."""
    return _WINDOWS.get(channel)


class WindowModeError(ValueError):
    code = "invalid_field"


def check_mode(outside_window: str | None, has_template: bool) -> str | None:
    """The stored mode for a campaign, or WindowModeError. Without a template free text can
    only skip those outside ("skip", the default); "template" needs the campaign's approved
    template; a template without "template" keeps the plain rule: the template to everyone."""
    if outside_window is None:
        return None
    if outside_window not in MODES:
        raise WindowModeError("'outside_window' must be \"skip\" or \"template\"")
    if outside_window == FALLBACK_TEMPLATE and not has_template:
        raise WindowModeError("'outside_window': \"template\" needs a 'whatsapp_template' to "
                              "send to people outside the 24 h window")
    if outside_window == SKIP and has_template:
        raise WindowModeError("'outside_window': \"skip\" with a 'whatsapp_template' would "
                              "never use the template: leave it out (the template goes to "
                              "everyone) or use \"template\" (free text inside the window)")
    return None if outside_window == SKIP else outside_window


def uses_window(has_template: bool, outside_window: str | None) -> bool:
    """True when the campaign sends free text to someone, so the window matters."""
    return not has_template or outside_window == FALLBACK_TEMPLATE


def choose(has_template: bool, outside_window: str | None, inside: bool) -> str | None:
    """TEXT, TEMPLATE or None (skipped as outside_window) for one recipient of a window
    channel: free text inside the window; outside it the template when the campaign falls
    back to it, else nothing. A campaign with a template and no fallback sends the template
    to everyone (a template may be sent at any time)."""
    if has_template and outside_window != FALLBACK_TEMPLATE:
        return TEMPLATE
    if inside:
        return TEXT
    return TEMPLATE if has_template else None


async def note_inbound(conn: AsyncConnection, tenant_id: str, line_id: str,
                       address_index: bytes, at: float) -> None:
    """The person wrote to the line at `at` (the provider's time): their window runs from
    then. Only moves forward, so an older webhook arriving late changes nothing."""
    stmt = dialect_insert(conn, inbound_window).values(
        line_id=line_id, address_index=address_index, tenant_id=tenant_id,
        last_inbound_at=float(at))
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=["line_id", "address_index"],
        set_={"last_inbound_at": stmt.excluded.last_inbound_at},
        where=inbound_window.c.last_inbound_at < stmt.excluded.last_inbound_at))


async def inside(conn: AsyncConnection, line_id: str, indexes: Sequence[bytes],
                 since: float) -> set[bytes]:
    """Of `indexes`, those who wrote to the line at or after `since`: one query a batch."""
    if not indexes:
        return set()
    q = sa.select(inbound_window.c.address_index).where(
        inbound_window.c.line_id == line_id,
        inbound_window.c.address_index.in_(list(dict.fromkeys(indexes))),
        inbound_window.c.last_inbound_at >= since)
    return {bytes(r[0]) for r in await conn.execute(q)}


async def count_inside(conn: AsyncConnection, line_id: str, list_id: str,
                       since: float) -> tuple[int, int]:
    """(inside the window since `since`, all) of a list's people (erased ones left out)."""
    members = sa.select(sa.func.count()).select_from(list_members.join(
        contacts, contacts.c.id == list_members.c.contact_id)).where(
        list_members.c.list_id == list_id, contacts.c.erased_at.is_(None))
    within = members.join_from(contacts, inbound_window, sa.and_(
        inbound_window.c.line_id == line_id,
        inbound_window.c.address_index == contacts.c.address_index)).where(
        inbound_window.c.last_inbound_at >= since)
    return (await conn.execute(within)).scalar() or 0, (await conn.execute(members)).scalar() or 0


async def for_campaign(conn: AsyncConnection, row, now: float) -> dict | None:
    """{"inside", "of"}: how many of the campaign's list are inside their window on its line
    right now, for a WhatsApp campaign that sends free text; None for any other."""
    return await estimate(conn, row.line_id, row.list_id, row.channel_template is not None,
                          row.outside_window, now)


async def estimate(conn: AsyncConnection, line_id: str, list_id: str, has_template: bool,
                   outside_window: str | None, now: float) -> dict | None:
    channel = (await conn.execute(sa.select(lines.c.channel).where(
        lines.c.id == line_id))).scalar()
    seconds = window_of(channel) if channel else None
    if seconds is None or not uses_window(has_template, outside_window):
        return None
    within, total = await count_inside(conn, line_id, list_id, now - seconds)
    return {"inside": within, "of": total}
