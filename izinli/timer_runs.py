"""Cluster-wide timers run once per due time. Every process fires the timer at the same
wall-clock instants (interval triggers aligned to the epoch, so processes started at different
moments share their phase), and only the process whose claim of (job, slot) inserts the row
runs it (table timer_runs, migration 0021). A run still going (finished_at NULL, started less
than `busy_seconds` ago) also holds off the next slots, so a slow run is not overlapped by
another process's, as APScheduler's max_instances=1 does within one process; a process that
died mid-run holds them off only that long. On PostgreSQL the check and the insert are
serialized per job by a transaction-scoped advisory lock; the primary key alone settles two
claims of one slot. SQLite has one process, and the same statements serve it."""
from __future__ import annotations

import functools
import logging
import time
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.leases import db_now, new_holder
from store import raw
from store.engine import Database

log = logging.getLogger(__name__)

KEEP_SLOTS = 100  # rows kept per job: who ran the last runs, for the operator
_LOCK_CLASS = 0x697A  # this application's advisory-lock namespace ("iz")


def slot_of(when: float, period: float) -> int:
    """The due time a run at `when` belongs to, as a multiple of `period`: triggers fire at
    those multiples, so rounding absorbs a run that starts late (by up to half a period)."""
    return round(when / period)


def busy_seconds(period: float) -> float:
    """How long an unfinished run holds off the next ones (about one period, at most an hour,
    plus a minute): a process that died mid-run costs one due time, not every later one."""
    return min(period, 3600.0) + 60.0


async def claim(conn: AsyncConnection, job: str, slot: int, holder: str,
                busy: float) -> bool:
    """True when this caller runs `job` for `slot`: nobody claimed the slot and no run of
    the job started less than `busy` seconds ago is still unfinished."""
    now = db_now(conn)
    if conn.dialect.name == "postgresql":
        await raw.execute(conn, "SELECT pg_advisory_xact_lock(?, hashtext(?))",
                          (_LOCK_CLASS, job))
    rows = await raw.fetch(conn, (
        "INSERT INTO timer_runs (job, slot, holder, started_at) "
        f"SELECT ?, CAST(? AS BIGINT), ?, {now} WHERE NOT EXISTS (SELECT 1 FROM timer_runs "
        f"WHERE job = ? AND finished_at IS NULL AND started_at > {now} - ?) "
        "ON CONFLICT (job, slot) DO NOTHING RETURNING slot"),
        (job, slot, holder, job, float(busy)))
    if rows:
        await raw.execute(conn, "DELETE FROM timer_runs WHERE job = ? AND slot < ?",
                          (job, slot - KEEP_SLOTS))
    return bool(rows)


async def finish(conn: AsyncConnection, job: str, slot: int, holder: str) -> None:
    await raw.execute(conn, f"UPDATE timer_runs SET finished_at = {db_now(conn)} "
                            "WHERE job = ? AND slot = ? AND holder = ?", (job, slot, holder))


class ClusterOnce:
    """Wraps a job so it runs once per due time across the processes sharing the database;
    counts what this process ran and left to another (for tests, benchmarks and logs)."""

    def __init__(self, db: Database, holder: str | None = None):
        self.db = db
        self.holder = holder or new_holder()
        self.ran: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    def wrap(self, job: str, period: float, work):
        @functools.wraps(work)
        async def run(*args):
            return await self.run(job, period, work, *args)
        return run

    async def run(self, job: str, period: float, work, *args):
        """`work(*args)` if this process claims the current due time of `job`, else None."""
        slot = slot_of(time.time(), period)
        async with self.db.begin() as conn:
            mine = await claim(conn, job, slot, self.holder, busy_seconds(period))
        if not mine:
            self.skipped[job] += 1
            return None
        self.ran[job] += 1
        try:
            return await work(*args)
        finally:
            try:
                async with self.db.begin() as conn:
                    await finish(conn, job, slot, self.holder)
            except Exception as exc:  # the row then holds off the next run for busy_seconds
                log.error("timer run not marked finished", extra={
                    "job": job, "error": type(exc).__name__})
