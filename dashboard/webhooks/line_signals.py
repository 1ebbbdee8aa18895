"""WhatsApp account-level webhooks (`phone_number_quality_update`, `account_update`) applied
to lines: the messaging tier follows Meta's limit, and a flagged number or a restricted,
disabled or violating account pauses its lines with the reason (campaigns.quality)."""
from __future__ import annotations

import asyncio
import logging

from bot.whatsapp_webhook import AccountUpdate, QualityUpdate
from campaigns import quality
from campaigns.lines import line_by_id
from campaigns.ports import Line
from store.engine import Database

log = logging.getLogger(__name__)
_alerting: set[asyncio.Task] = set()


async def apply(db: Database, line: Line, event: QualityUpdate | AccountUpdate,
                alerts=None) -> int:
    """1 when the event changed a line, else 0 (about another number or account, or news
    that changes nothing here)."""
    async with db.begin() as conn:
        fresh = await line_by_id(conn, line.id)
        if fresh is None or not quality.same_account(fresh, event.waba_id):
            return 0
        if isinstance(event, QualityUpdate):
            if not quality.same_number(fresh, event.display_phone_number):
                return 0
            change = quality.tier_change(event.current_limit)
            if change is not None:
                await quality.apply_tier(conn, fresh.id, change, event.event)
            reason = quality.quality_pause(event.event)
            targets = [fresh]
        else:
            change = None
            reason = quality.account_pause(event.event, event.ban_state, event.restrictions,
                                           event.violation)
            targets = await quality.account_lines(conn, fresh, event.waba_id)
        paused = await quality.pause(conn, targets, reason) if reason else []
    log.info("whatsapp line signal", extra={"line_id": line.id, "event": event.event,
                                            "tier": change.tier if change else None,
                                            "paused": len(paused)})
    if paused and alerts is not None:
        _alert(alerts, line.tenant_id, reason)
    return int(bool(paused) or change is not None)


def _alert(alerts, tenant_id: str, reason: str) -> None:
    """Tells the owner in the background; an alert never fails the webhook."""
    async def send() -> None:
        try:
            await alerts.campaign_event(tenant_id, None, "line_paused", reason)
        except Exception as exc:
            log.warning("alert not sent", extra={"error": type(exc).__name__})
    task = asyncio.create_task(send())
    _alerting.add(task)
    task.add_done_callback(_alerting.discard)
