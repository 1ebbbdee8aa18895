"""Suppressions: addresses that must not be messaged (opted out, blocked, erasure, complaint,
manual), per consent type or for everything ("*")."""
from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.engine import dialect_insert
from store.tables import suppressions

KINDS = ("opted_out", "blocked", "erasure", "complaint", "manual")
EVERYTHING = "*"
# When several apply, the gate reports the one that explains most to the business.
PRECEDENCE = {"opted_out": 0, "blocked": 1, "erasure": 2, "complaint": 3, "manual": 4}


class SuppressionInputError(ValueError):
    code = "invalid_suppression"


async def suppress(conn: AsyncConnection, tenant_id: str, address_index: bytes, scope: str,
                   kind: str, source: str, address_sealed: bytes | None) -> None:
    """Adds (or re-dates) a suppression; idempotent."""
    if kind not in KINDS:
        raise SuppressionInputError(f"kind must be one of {', '.join(KINDS)}")
    stmt = dialect_insert(conn, suppressions).values(
        tenant_id=tenant_id, address_index=address_index, scope=scope, kind=kind,
        source=source[:200], address_sealed=None if kind == "erasure" else address_sealed,
        created_at=time.time())
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=["tenant_id", "address_index", "scope"],
        set_={"kind": stmt.excluded.kind, "source": stmt.excluded.source,
              "address_sealed": stmt.excluded.address_sealed,
              "created_at": stmt.excluded.created_at}))


async def lift(conn: AsyncConnection, tenant_id: str, address_index: bytes, scope: str,
               kinds: tuple[str, ...] = ("opted_out",)) -> int:
    """Removes suppressions of the given kinds (a START lifts only an opt-out)."""
    result = await conn.execute(suppressions.delete().where(
        suppressions.c.tenant_id == tenant_id, suppressions.c.address_index == address_index,
        suppressions.c.scope == scope, suppressions.c.kind.in_(kinds)))
    return result.rowcount


async def export_rows(conn: AsyncConnection, tenant_id: str) -> list[sa.Row]:
    q = sa.select(suppressions).where(suppressions.c.tenant_id == tenant_id).order_by(
        suppressions.c.created_at)
    return list(await conn.execute(q))
