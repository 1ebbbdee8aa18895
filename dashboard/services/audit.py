"""The audit log, newest first (ids, counts and states only — no personal data): what the
/audit API and the audit page both read."""
from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from dashboard.keys import db_key
from dashboard.services import Context
from store.tables import audit_log


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    action: str
    detail: dict


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None  # pages on; None at the end


def _detail(text: str) -> dict:
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {"value": found}


async def audit_entries(ctx: Context, before: int | None = None, limit: int = 50
                        ) -> AuditPage:
    """Entries with a sequence number below `before` (all when None), newest first."""
    q = sa.select(audit_log.c.seq, audit_log.c.at, audit_log.c.actor, audit_log.c.action,
                  audit_log.c.detail).where(audit_log.c.tenant_id == ctx.tenant_id)
    if before is not None:
        q = q.where(audit_log.c.seq < before)
    q = q.order_by(audit_log.c.seq.desc()).limit(limit + 1)
    async with ctx[db_key].connect() as conn:
        rows = list(await conn.execute(q))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage([AuditEntry(r.seq, r.at, r.actor, r.action, _detail(r.detail))
                      for r in rows], rows[-1].seq if more and rows else None)
