"""Deleting a business: its campaigns stopped, its vault locked everywhere, every row of it
gone (store.purge) with its wrapped keys, its audit entries blanked in place, and one
operator-level audit entry (tenant_id NULL, so it outlives the tenant) that says when, by
whom, and which entries were blanked — ids and counts only, never the business's name.

What was sealed under the tenant key is unreadable once its wraps are gone (crypto-shredding):
a copy of the database made earlier still holds the wraps, and opens with the passphrase or
the recovery code of that time (README, "Deleting a business")."""
from __future__ import annotations

import logging
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa

from accounts import AccountError, tenant_row
from accounts.users import SessionCache
from campaigns import service as campaigns
from optout import audit
from store.engine import Database
from store.purge import delete_tenant_rows, scrub
from store.tables import campaigns as campaign_table
from store.tables import users

log = logging.getLogger(__name__)

# Every campaign state that may still send, or start sending later.
_LIVE = ("draft", "scheduled", "running", "paused", "waiting_unlock")


@dataclass(frozen=True)
class Deleted:
    tenant_id: str
    rows: int  # rows deleted over all tables
    campaigns_stopped: int
    audit_entries_redacted: int


def name_matches(typed: str, name: str) -> bool:
    """The business name typed to confirm, as stored (spaces around and Unicode form aside)."""
    def norm(text: str) -> str:
        return unicodedata.normalize("NFC", text.strip())
    return bool(typed.strip()) and norm(typed) == norm(name)


async def delete_tenant(db: Database, tenant_id: str, typed_name: str, actor: str,
                        lock: Callable[[str], Awaitable[None]],
                        sessions: SessionCache | None = None) -> Deleted:
    """Deletes the tenant for good. `typed_name` must be its name (AccountError
    name_mismatch otherwise; NotFoundError for an unknown tenant); `lock` locks its vault in
    every process (dashboard.vault_fanout, or a keyring's lock)."""
    row = await tenant_row(db, tenant_id)
    if not name_matches(typed_name, row.name):
        raise AccountError("the business name typed does not match", "name_mismatch")
    stopped = await _stop_campaigns(db, tenant_id)
    await lock(tenant_id)  # a send already planned finds the vault locked and is dropped
    async with db.begin() as conn:
        user_ids = [r.id for r in await conn.execute(
            sa.select(users.c.id).where(users.c.tenant_id == tenant_id))]
        deleted = await delete_tenant_rows(conn, tenant_id)
        redacted = await audit.redact_tenant(conn, tenant_id)
        blanked = sum(last - first + 1 for first, last in redacted)
        await audit.record(conn, None, actor, audit.DELETION, tenant=tenant_id,
                           rows=sum(deleted.values()), campaigns_stopped=stopped,
                           redacted=redacted)
        if sessions is not None:
            for user_id in user_ids:
                await sessions.announce(conn, user_id=user_id)
    await scrub(db)
    log.warning("tenant deleted", extra={"tenant_id": tenant_id, "actor": actor,
                                         "rows": sum(deleted.values())})
    return Deleted(tenant_id, sum(deleted.values()), stopped, blanked)


async def _stop_campaigns(db: Database, tenant_id: str) -> int:
    """Cancels what may still send, first: the dispatcher picks no new work from it."""
    table = campaign_table
    async with db.begin() as conn:
        ids = [r.id for r in await conn.execute(sa.select(table.c.id).where(
            table.c.tenant_id == tenant_id, table.c.state.in_(_LIVE)))]
        await campaigns.set_state(conn, ids, "cancelled", "business deleted", _LIVE)
    return len(ids)
