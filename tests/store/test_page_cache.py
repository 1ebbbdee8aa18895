"""SQLite page caches: small on every pooled connection, larger only for the transaction of an
import's batch (Database.bulk), so memory does not grow with the data the service reads."""
from __future__ import annotations

import contextlib

from store.engine import open_database


async def _cache_kib(conn) -> int:
    return -(await conn.exec_driver_sql("PRAGMA cache_size")).scalar()


async def test_a_bulk_transaction_has_the_larger_cache_and_gives_it_back(tmp_path):
    db = open_database(f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}", sqlite_cache_mb=2,
                       sqlite_bulk_cache_mb=8)
    try:
        async with db.begin() as conn:
            assert await _cache_kib(conn) == 2 * 1024
            async with db.bulk(conn):
                assert await _cache_kib(conn) == 8 * 1024
            assert await _cache_kib(conn) == 2 * 1024
        try:
            async with db.begin() as conn, db.bulk(conn):
                raise LookupError("a batch that fails")
        except LookupError:
            pass
        # Every pooled connection (the one that ran the failed batch among them) is back to
        # the small cache: held at once, they are all distinct.
        async with contextlib.AsyncExitStack() as stack:
            held = [await stack.enter_async_context(db.connect()) for _ in range(3)]
            assert [await _cache_kib(c) for c in held] == [2 * 1024] * 3
    finally:
        await db.close()
