"""What Meta says about a WhatsApp number or account, applied to its lines: the messaging limit
(the rolling 24 h unique-recipient cap) follows `phone_number_quality_update`; a flagged
number, or a restricted, disabled or violating account, pauses its lines with the reason.
Nothing here resumes a line: after an unflag or a reinstatement the owner resumes it."""
from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.lines import list_lines, set_line_state
from campaigns.ports import Line
from campaigns.throttle import WHATSAPP_TIERS, warmup_limit
from store.tables import lines

# Meta's messaging limits (current_limit / max_daily_conversations_per_business); None is
# unlimited. TIER_50 and TIER_2K are older names; TIER_NOT_SET (never sent yet) changes nothing.
META_LIMITS: dict[str, int | None] = {
    "TIER_50": 50, "TIER_250": 250, "TIER_1K": 1_000, "TIER_2K": 2_000, "TIER_10K": 10_000,
    "TIER_100K": 100_000, "TIER_UNLIMITED": None}
# account_update restrictions that leave business-initiated messages possible.
HARMLESS_RESTRICTIONS = frozenset({"RESTRICTED_ADD_PHONE_NUMBER_ACTION"})
PAUSING_BAN_STATES = frozenset({"DISABLE", "SCHEDULE_FOR_DISABLE"})

_NOT_RESUMED = "kendiliğinden sürmez, hattı siz sürdürün (not resumed automatically)"
REASONS = {
    "quality_flagged": "WhatsApp numaranın kalitesini düşük buldu (FLAGGED); " + _NOT_RESUMED,
    "account_restricted": "WhatsApp hesabı kısıtladı ({detail}); " + _NOT_RESUMED,
    "account_disabled": "WhatsApp hesabı kapattı ({detail}); " + _NOT_RESUMED,
    "account_violation": "WhatsApp politika ihlali bildirdi ({detail}); " + _NOT_RESUMED,
    "account_deleted": "WhatsApp hesabı silindi; " + _NOT_RESUMED,
}


@dataclass(frozen=True)
class TierChange:
    tier: int  # index into WHATSAPP_TIERS: the largest tier not above the limit
    limit: int | None  # Meta's exact limit; None is unlimited


def tier_change(current_limit: str | None) -> TierChange | None:
    """The line's new messaging limit, or None when the value names none we know."""
    if current_limit not in META_LIMITS:
        return None
    limit = META_LIMITS[current_limit]
    if limit is None:
        return TierChange(len(WHATSAPP_TIERS) - 1, None)
    fitting = [i for i, cap in enumerate(WHATSAPP_TIERS) if cap is not None and cap <= limit]
    return TierChange(max(fitting, default=0), limit)


def daily_limit(options: dict | None) -> int | None:
    """The line's 24 h unique-recipient cap (None: unlimited): Meta's exact limit as last
    reported, while the tier it was recorded with is still the line's (an owner's later
    change of messaging_tier wins); else the tier's."""
    options = options or {}
    tier = int(options.get("messaging_tier", 0))
    meta = options.get("meta_limit")
    if isinstance(meta, dict) and meta.get("tier") == tier:
        limit = meta.get("limit")
        if limit is None or (isinstance(limit, int) and limit > 0):
            return limit
    return warmup_limit(tier)


def quality_pause(event: str) -> str | None:
    """The pause reason for a `phone_number_quality_update` event; None: no pause."""
    return _reason("quality_flagged") if event == "FLAGGED" else None


def account_pause(event: str, ban_state: str | None, restrictions: tuple[str, ...],
                  violation: str | None) -> str | None:
    """The pause reason for an `account_update`; None when sending is unaffected (a
    reinstatement, a harmless restriction, pricing or partner news)."""
    if event == "ACCOUNT_RESTRICTION":
        blocking = [r for r in restrictions if r not in HARMLESS_RESTRICTIONS]
        if restrictions and not blocking:
            return None
        return _reason("account_restricted", ", ".join(blocking) or "ACCOUNT_RESTRICTION")
    if event == "DISABLED_UPDATE":
        if ban_state not in PAUSING_BAN_STATES:
            return None  # REINSTATE: the owner resumes the line when ready
        return _reason("account_disabled", ban_state)
    if event == "ACCOUNT_VIOLATION":
        return _reason("account_violation", violation or "ACCOUNT_VIOLATION")
    if event == "ACCOUNT_DELETED":
        return _reason("account_deleted")
    return None


def _reason(code: str, detail: str | None = None) -> str:
    text = REASONS[code].format(detail=(detail or "")[:60])
    return f"{code}: {text}"[:200]


def same_number(line: Line, display_phone_number: str | None) -> bool:
    """Whether a number-level event is about this line: by the display number when the line
    knows its own (options.display_phone_number); else the event reached this line's
    webhook, so it is taken as this line's."""
    known = (line.options or {}).get("display_phone_number")
    if not known or not display_phone_number:
        return True
    return _digits(str(known)) == _digits(display_phone_number)


def same_account(line: Line, waba_id: str | None) -> bool:
    known = (line.options or {}).get("waba_id")
    return not known or not waba_id or str(known) == waba_id


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


async def apply_tier(conn: AsyncConnection, line_id: str, change: TierChange,
                     event: str) -> None:
    """Records Meta's limit in the line's options: the dispatcher rebuilds the line's cap
    from it (and from the outbox) at its next round. The exact limit is kept with the tier
    it was read with, so an owner's later change of messaging_tier takes precedence."""
    row = (await conn.execute(sa.select(lines.c.options).where(lines.c.id == line_id))).first()
    if row is None:
        return
    options = dict(row.options or {})
    options["messaging_tier"] = change.tier
    options["meta_limit"] = {"tier": change.tier, "limit": change.limit, "event": event,
                             "at": int(time.time())}
    await conn.execute(lines.update().where(lines.c.id == line_id).values(options=options))


async def account_lines(conn: AsyncConnection, line: Line, waba_id: str | None) -> list[Line]:
    """The lines an account-level event stops: the receiving line and the tenant's other
    active WhatsApp lines recorded with the same WABA id."""
    found = [line]
    if waba_id:
        found += [other for other in await list_lines(conn, line.tenant_id)
                  if other.id != line.id and other.channel == "whatsapp"
                  and str((other.options or {}).get("waba_id") or "") == waba_id]
    return found


async def pause(conn: AsyncConnection, targets: list[Line], reason: str) -> list[str]:
    """Pauses the active (or already paused) lines with the reason; returns their ids.
    An archived or deleted line is left as it is."""
    current = {r.id: r.state for r in await conn.execute(sa.select(
        lines.c.id, lines.c.state).where(lines.c.id.in_([t.id for t in targets])))}
    paused = [t.id for t in targets if current.get(t.id) in ("active", "paused")]
    for line_id in paused:
        await set_line_state(conn, line_id, "paused", reason)
    return paused
