"""Plain SQL for the few statements that run per message (claims, status writes, deliveries):
written once with `?` placeholders and sent to the driver as they are, because SQLAlchemy's
per-row parameter processing costs more than SQLite's own work on these paths."""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection


@functools.lru_cache(maxsize=256)
def _dollar(sql: str) -> str:
    counter = iter(range(1, 1_000_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def for_driver(conn: AsyncConnection, sql: str) -> str:
    """`sql` (with ? placeholders) in the connection driver's own parameter style."""
    return _dollar(sql) if conn.dialect.paramstyle == "numeric_dollar" else sql


def marks(n: int) -> str:
    return ",".join("?" * n)


async def execute_many(conn: AsyncConnection, sql: str, rows: Sequence[tuple]) -> None:
    if rows:
        await conn.exec_driver_sql(for_driver(conn, sql), list(rows))


def from_arrays(sql: str, types: Sequence[str]) -> str:
    """`sql`, an `INSERT … VALUES (?, …)` statement, reading its rows from one array per
    column instead (PostgreSQL `unnest`, one `?::type[]` each): a whole batch in one statement
    and one round trip, where asyncpg's executemany binds and runs the statement per row."""
    values = re.search(r"VALUES \((\s*\?\s*(?:,\s*\?\s*)*)\)", sql)
    if values is None or values.group(1).count("?") != len(types):
        raise ValueError("from_arrays needs an INSERT … VALUES statement with one ? per type")
    arrays = ", ".join(f"?::{t}[]" for t in types)
    return f"{sql[:values.start()]}SELECT * FROM unnest({arrays}){sql[values.end():]}"


async def execute_batch(conn: AsyncConnection, sql: str, rows: Sequence[tuple],
                        arrays_sql: str) -> None:
    """`sql` for each of `rows`; on PostgreSQL, when there are several (an import's batch),
    `arrays_sql` (a `from_arrays` form of it) once, with one list per column of `rows`."""
    if conn.dialect.name == "postgresql" and len(rows) > 1:
        await conn.exec_driver_sql(for_driver(conn, arrays_sql),
                                   tuple(list(c) for c in zip(*rows, strict=True)))
    else:
        await execute_many(conn, sql, rows)


def among(conn: AsyncConnection, column: str, values: Sequence, pg_type: str
          ) -> tuple[str, tuple]:
    """SQL for "`column` is one of `values`" and its parameters: one array parameter on
    PostgreSQL (one statement whatever the count, so its plan is cached once and stays an
    index lookup), an IN list on SQLite."""
    if conn.dialect.name == "postgresql":
        return f"{column} = ANY(?::{pg_type}[])", (list(values),)
    return f"{column} IN ({marks(len(values))})", tuple(values)


async def execute(conn: AsyncConnection, sql: str, params: tuple = ()) -> int:
    return (await conn.exec_driver_sql(for_driver(conn, sql), params)).rowcount


async def fetch(conn: AsyncConnection, sql: str, params: tuple = ()) -> list:
    return (await conn.exec_driver_sql(for_driver(conn, sql), params)).fetchall()


async def fetch_at_once(conn: AsyncConnection, sql: str, params: tuple = ()) -> list:
    """`fetch` for the dispatcher's per-round statements (claim, gate, results), as plain
    tuples. On SQLite the statement runs and its rows are read in ONE call on aiosqlite's
    thread; through SQLAlchemy's adapter it is four (cursor, execute, fetch, close), and each
    waits for the event loop's next turn — behind a round being planned or sent, for tens of
    ms, while the statement's transaction may hold the write lock. It runs in the
    connection's open transaction, or as a statement of its own if none is open yet.
    Driver errors come as the driver raises them (sqlite3.Error; store.faults knows them)."""
    if conn.dialect.name != "sqlite":
        return await fetch(conn, sql, params)
    driver = conn.sync_connection.connection.driver_connection  # aiosqlite.Connection
    return list(await driver.execute_fetchall(sql, params))


FOLD_BATCH = 20_000  # moves folded per transaction: a STOP never waits long for the write lock


async def take_oldest(conn: AsyncConnection, table: str, columns: str, limit: int) -> list:
    """Deletes and returns the `limit` oldest rows of a moves table (by id). DELETE …
    RETURNING hands each row to exactly one caller, even when two take at once."""
    return await fetch(conn, f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                             f"ORDER BY id LIMIT ?) RETURNING {columns}", (limit,))


async def in_batches(db, step, batch: int = FOLD_BATCH) -> int:
    """Runs `step(conn, batch)` in its own short transaction until it handles fewer than
    `batch` rows; the total."""
    total = 0
    while True:
        async with db.begin() as conn:
            n = await step(conn, batch)
        total += n
        if n < batch:
            return total
