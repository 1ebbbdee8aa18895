"""The dispatcher's per-round statements reach the SQLite driver in one call
(store.raw.fetch_at_once)."""
from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text

from store import raw
from store.engine import open_database
from store.faults import DISK_FULL, unavailable_kind


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
