"""SQLite's WAL is checkpointed by a thread of the Database's own, not inside commits
(store.engine._Checkpointer), and the dispatcher's per-round statements reach the driver in
one call (store.raw.fetch_at_once)."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from store import raw
from store.engine import CHECKPOINT_FRAMES, FALLBACK_AUTOCHECKPOINT, open_database
from store.faults import DISK_FULL, unavailable_kind

THREAD = "izinli-sqlite-checkpoint"


def _checkpointers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == THREAD)


async def _filled(db, rows: int) -> None:
    async with db.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, "
                                "b BLOB NOT NULL)"))
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO blobs (b) VALUES (randomblob(2000))"),
                           [{}] * rows)


async def test_the_wal_reaches_the_database_file_without_a_commit_checkpointing(tmp_path):
    path = str(tmp_path / "c.db")
    db = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        await _filled(db, 600)  # ~310 pages: far below the commits' own threshold
        assert CHECKPOINT_FRAMES < 300 < FALLBACK_AUTOCHECKPOINT
        deadline = time.monotonic() + 5
        while os.path.getsize(path) < 300 * 2000:  # what only a checkpoint writes there
            assert time.monotonic() < deadline, "the WAL was never checkpointed"
            await asyncio.sleep(0.05)
    finally:
        await db.close()


async def test_close_stops_the_thread_and_reads_alone_never_start_one(tmp_path):
    before = _checkpointers()
    db = open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    async with db.connect() as conn:
        await conn.execute(text("SELECT 1"))
    assert _checkpointers() == before
    await _filled(db, 1)
    assert _checkpointers() == before + 1
    await db.close()
    assert _checkpointers() == before


async def test_a_checkpoint_that_cannot_run_is_said_once(tmp_path, caplog):
    """A lost database file (or a full disk) fails each checkpoint: one warning, not ten a
    second, and the file is never created again by the checkpointer."""
    path = tmp_path / "c.db"
    db = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.begin() as conn:  # starts the checkpointer; it has not connected yet
            await conn.execute(text("PRAGMA user_version = 1"))
        path.rename(tmp_path / "moved.db")
        await _filled(db, 600)  # pages waiting: it tries at once
        await asyncio.sleep(0.5)
        warned = [r for r in caplog.records if r.getMessage() == "WAL checkpoint failed"]
        assert len(warned) == 1
        assert not path.exists()
    finally:
        await db.close()


async def test_fetch_at_once_runs_in_the_open_transaction(tmp_path):
    db = open_database(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
    try:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)"))
        with pytest.raises(RuntimeError):
            async with db.begin() as conn:
                assert await raw.fetch_at_once(
                    conn, "INSERT INTO t (n) VALUES (?), (?) RETURNING n", (1, 2)) == [(1,), (2,)]
                raise RuntimeError("rolled back")
        async with db.connect() as conn:
            assert await raw.fetch_at_once(conn, "SELECT count(*) FROM t") == [(0,)]
            with pytest.raises(sqlite3.OperationalError):
                await raw.fetch_at_once(conn, "SELECT * FROM missing")
    finally:
        await db.close()


def test_driver_errors_from_the_direct_path_are_classified():
    full = sqlite3.OperationalError("database or disk is full")
    assert unavailable_kind(full) == DISK_FULL
