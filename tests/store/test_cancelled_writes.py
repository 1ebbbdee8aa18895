"""A writer cancelled in the middle of a statement (a shutdown cancelling the dispatcher's line
tasks, a timer, a bus task) must not keep the database's write lock: the next writer gets in
at once, not after busy_timeout (30 s) with "database is locked" (store.engine, _SqliteConnection).
"""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from sqlalchemy import text

SCRATCH = "cancel_probe"


async def _scratch_table(db) -> None:
    async with db.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {SCRATCH} (id INTEGER PRIMARY KEY, n INTEGER)"))
        await conn.execute(text(f"INSERT INTO {SCRATCH} (id, n) VALUES (1, 0), (2, 0), (3, 0)"))


async def _cancelled_mid_statement(db) -> BaseException:
    """A write transaction that has updated rows and is cancelled while its next statement has
    started returning rows (on SQLite: between aiosqlite's execute and fetch, where the
    shutdown in CI caught it). Returns the CancelledError, kept alive as the cancelled task's
    owner keeps it (the dispatcher keeps its line tasks)."""
    inside, go_on = threading.Event(), threading.Event()

    def hold(value):  # runs in aiosqlite's thread: the statement is mid-way until go_on
        inside.set()
        go_on.wait(5)
        return value

    async def writer() -> None:
        async with db.begin() as conn:
            await conn.execute(text(f"UPDATE {SCRATCH} SET n = n + 1"))
            if db.dialect == "sqlite":
                raw = await conn.get_raw_connection()
                await raw.driver_connection.create_function("hold", 1, hold)
                await conn.execute(text(f"SELECT hold(id) FROM {SCRATCH}"))
            else:
                inside.set()
                await conn.execute(text("SELECT pg_sleep(10)"))

    task = asyncio.create_task(writer())
    deadline = time.monotonic() + 5
    while not inside.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert inside.is_set(), "the writer never reached its statement"
    await asyncio.sleep(0.1)  # PostgreSQL: pg_sleep under way
    task.cancel()
    go_on.set()  # SQLite: the statement's first row is out, the rest never read
    try:
        await task
    except asyncio.CancelledError as exc:
        return exc
    raise AssertionError("the writer was not cancelled")


def _sqlite_lock_free(path: str) -> bool:
    probe = sqlite3.connect(path, isolation_level=None, timeout=1.0)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # "database is locked" after a second
        return False
    finally:
        probe.close()


async def test_a_writer_cancelled_mid_statement_leaves_no_lock_behind(db):
    await _scratch_table(db)
    kept = await _cancelled_mid_statement(db)
    started = time.monotonic()
    if db.dialect == "sqlite":
        # Probed from a connection of its own with a 1 s timeout: the engine's writers would
        # wait out the 30 s busy_timeout before saying "database is locked".
        assert await asyncio.to_thread(_sqlite_lock_free, db.engine.url.database), \
            "the cancelled writer's connection still holds the write lock"
    async with asyncio.timeout(3), db.begin() as conn:
        if db.dialect == "postgresql":  # the cancelled writer's row locks are gone too
            await conn.execute(text("SET LOCAL lock_timeout = '1s'"))
        await conn.execute(text(f"UPDATE {SCRATCH} SET n = n + 10 WHERE id = 1"))
    assert time.monotonic() - started < 2
    async with db.connect() as conn:  # the cancelled transaction was rolled back
        assert (await conn.execute(text(f"SELECT n FROM {SCRATCH} WHERE id = 2"))).scalar() == 0
        assert (await conn.execute(text(f"SELECT n FROM {SCRATCH} WHERE id = 1"))).scalar() == 10
    del kept


async def test_a_writer_cancelled_while_it_ends_commits_or_rolls_back_cleanly(db, caplog):
    """Cancelled during its commit or its connection's return to the pool, a writer's cleanup
    runs to its end (the cancellation is raised after): no connection torn down half-way
    ("Exception during reset"), nothing left locked."""
    await _scratch_table(db)
    for delay in (i * 0.0003 for i in range(20)):  # landing in different places
        async def writer():
            async with db.begin() as conn:
                await conn.execute(text(f"UPDATE {SCRATCH} SET n = n + 1 WHERE id = 3"))
            async with db.connect() as conn:
                await conn.execute(text(f"SELECT n FROM {SCRATCH}"))
        task = asyncio.create_task(writer())
        await asyncio.sleep(delay)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        async with asyncio.timeout(3), db.begin() as conn:
            await conn.execute(text(f"UPDATE {SCRATCH} SET n = n WHERE id = 3"))
    assert "Exception during reset" not in caplog.text

