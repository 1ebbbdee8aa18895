"""Every row of one tenant, removed (a business deleted), and the space they held scrubbed.

Tables are found in the live database, not only in store.tables: a table a later migration
adds with a `tenant_id` column is covered without a change here. Rows that name the tenant
only through a parent (counters keyed by campaign or list, line leases, webhook redeliveries)
go first, by subquery, and so do the rows whose triggers write counter moves (outbox,
list_members), so no move is written back after its counters are gone. The audit log is not
touched here: its entries are chained, optout.audit redacts them in place."""
from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store import tables
from store.engine import Database

log = logging.getLogger(__name__)

KEEP = ("tenants", "audit_log", "alembic_version")
_CAMPAIGNS = "SELECT id FROM campaigns WHERE tenant_id = :t"
_LISTS = "SELECT id FROM contact_lists WHERE tenant_id = :t"
_LINES = "SELECT id FROM lines WHERE tenant_id = :t"
# (table, condition) in this order, before the generic pass.
_FIRST = (
    ("outbox", "tenant_id = :t"),
    ("list_members", f"list_id IN ({_LISTS})"),
    ("outbox_moves", "tenant_id = :t"),
    ("campaign_counts", f"campaign_id IN ({_CAMPAIGNS})"),
    ("list_member_moves", f"list_id IN ({_LISTS})"),
    ("webhook_deliveries", f"line_id IN ({_LINES})"),
    ("line_leases", f"line_id IN ({_LINES}) OR line_id IN (SELECT 'poll:' || id FROM lines "
                    "WHERE tenant_id = :t) OR line_id = :iys"),
)


async def tenant_tables(conn: AsyncConnection) -> list[str]:
    """Tables of the live database with a `tenant_id` column, children before parents (as
    store.tables orders them; tables it does not know first), the tenants table excluded."""
    def read(sync) -> list[str]:
        inspector = sa.inspect(sync)
        return [t for t in inspector.get_table_names()
                if any(c["name"] == "tenant_id" for c in inspector.get_columns(t))]
    found = set(await conn.run_sync(read)) - set(KEEP)
    known = [t.name for t in reversed(tables.metadata.sorted_tables) if t.name in found]
    return sorted(found - set(known)) + known


async def delete_tenant_rows(conn: AsyncConnection, tenant_id: str) -> dict[str, int]:
    """Deletes every row of the tenant but its audit entries, the tenants row last; rows
    deleted per table. Inside the caller's transaction."""
    deleted: dict[str, int] = {}
    for table, where in _FIRST:
        params = {"t": tenant_id, "iys": f"iys:{tenant_id}"}  # optout.iys_sync's lease
        result = await conn.execute(sa.text(f"DELETE FROM {table} WHERE {where}"),
                                    {k: v for k, v in params.items() if f":{k}" in where})
        deleted[table] = result.rowcount
    for table in await tenant_tables(conn):
        result = await conn.execute(sa.text(f"DELETE FROM {table} WHERE tenant_id = :t"),
                                    {"t": tenant_id})
        deleted[table] = deleted.get(table, 0) + result.rowcount
    result = await conn.execute(tables.tenants.delete().where(tables.tenants.c.id == tenant_id))
    deleted["tenants"] = result.rowcount
    return {t: n for t, n in deleted.items() if n}


# How often a scrub tries to empty the WAL, 50 ms apart, while another checkpoint holds it.
TRUNCATE_ATTEMPTS = 20
# Small tables whose rows held keys or master-wrapped values: rewritten on PostgreSQL, so the
# deleted versions of their rows do not linger in the table files until a vacuum reuses them.
_REWRITE = ("tenants", "users", "tenant_settings", "lines", "operators")


async def scrub(db: Database) -> None:
    """Leaves no copy of deleted rows in the database files. SQLite: VACUUM rewrites the file
    (free pages and in-page leftovers of earlier row versions included) and the WAL is
    emptied; it holds the write lock for its duration (seconds per GB). PostgreSQL: VACUUM
    FULL of the small key-holding tables; the big tables' deleted rows are sealed under keys
    that no longer exist. Neither reaches backups or PostgreSQL's WAL archive."""
    autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:
        if db.dialect != "sqlite":
            for table in _REWRITE:
                await conn.exec_driver_sql(f"VACUUM FULL {table}")
            return
        # The driver's connection itself: VACUUM cannot run inside the transaction
        # SQLAlchemy would open (store.engine begins every one explicitly).
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute("VACUUM")
        # A checkpoint under way elsewhere (every process's background one: store.engine)
        # makes this one busy at once, without waiting: tried again for up to a second.
        for attempt in range(TRUNCATE_ATTEMPTS):
            cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy = (await cursor.fetchone())[0]
            await cursor.close()
            if not busy:
                break
            if attempt + 1 < TRUNCATE_ATTEMPTS:
                await asyncio.sleep(0.05)
    if busy:
        log.warning("the WAL could not be emptied after a deletion (readers were busy); the "
                    "next checkpoint does it")
