"""KVKK deadlines: a data-subject request is answered within 30 days (optout.subjects), and
the business's owners hear about an open one 5 days before its deadline — once, through the
operator bot — while the overview shows every such request until it is done. Most open
requests are erasures made while the vault was locked: they complete at the next unlock."""
from __future__ import annotations

import logging
import time
from collections import Counter

from store import raw
from store.engine import Database

log = logging.getLogger(__name__)
ALERT_DAYS_BEFORE = 5
ALERT = "kvkk_deadline"  # the event the alerts port is told (bot.operator words it)


def due_soon(due_at: float, completed_at: float | None, now: float | None = None) -> bool:
    """Open, and its deadline at most ALERT_DAYS_BEFORE days off (or passed)."""
    now = time.time() if now is None else now
    return completed_at is None and due_at - ALERT_DAYS_BEFORE * 86400 <= now


async def warn_deadlines(db: Database, alerts, now: float | None = None) -> dict[str, int]:
    """Tells each business about its open requests that became due soon since the last run
    (`alerts.campaign_event(tenant_id, None, "kvkk_deadline", count)`, as campaigns.ports
    Alerts); returns how many per tenant. Each request is claimed in one statement before
    the alert, so of processes racing one tells; a claim whose alert raised is given back
    for the next run."""
    now = time.time() if now is None else now
    async with db.begin() as conn:
        claimed = await raw.fetch(
            conn, "UPDATE subject_requests SET alerted_at = ? WHERE completed_at IS NULL "
                  "AND alerted_at IS NULL AND due_at <= ? RETURNING id, tenant_id",
            (now, now + ALERT_DAYS_BEFORE * 86400))
    told: dict[str, int] = {}
    for tenant_id, count in Counter(tenant for _, tenant in claimed).items():
        try:  # one tenant's unreachable operator chat must not silence the others
            await alerts.campaign_event(tenant_id, None, ALERT, str(count))
            told[tenant_id] = count
        except Exception as exc:
            log.error("KVKK deadline alert failed", extra={"tenant_id": tenant_id,
                                                          "error": type(exc).__name__})
            ids = [request_id for request_id, tenant in claimed if tenant == tenant_id]
            async with db.begin() as conn:
                await raw.execute(conn, "UPDATE subject_requests SET alerted_at = NULL WHERE "
                                        f"id IN ({raw.marks(len(ids))})", tuple(ids))
    return told
