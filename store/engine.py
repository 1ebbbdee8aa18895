"""The database engine: SQLite (WAL) by default, PostgreSQL (asyncpg) for scale, chosen by URL."""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import sqlite3
import weakref
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from store.faults import (
    DISK_FULL,
    UNREACHABLE,
    DatabaseUnavailableError,
    connection_kind,
    unavailable_kind,
)

log = logging.getLogger(__name__)
# Set while this task is inside Database.begin() (SQLite): catches nesting before it hangs.
_in_write: contextvars.ContextVar[bool] = contextvars.ContextVar("in_write", default=False)

SUPPORTED = ("sqlite+aiosqlite", "postgresql+asyncpg")
MIN_FREE_BYTES = 1 << 20  # /healthz calls a SQLite disk with less than this left full


class StoreError(Exception):
    """The database cannot be used; the message is safe to show (no password)."""


class Database:
    """One engine per process. `begin()` yields a connection inside a transaction."""

    def __init__(self, engine: AsyncEngine, sqlite_cache_mb: int = 2,
                 sqlite_bulk_cache_mb: int = 8):
        self.engine = engine
        self._cache_mb, self._bulk_cache_mb = sqlite_cache_mb, sqlite_bulk_cache_mb
        # On SQLite a writing transaction takes the write lock at BEGIN (see _sqlite_engine).
        self._writer = engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        # SQLite has one writer at a time: in-process writers queue here instead of polling
        # the file lock through busy_timeout sleeps (which cost tens of ms under load).
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        # The last "cannot use the database" failure (store.faults), until a write commits
        # again: a full disk still answers reads, so /healthz needs to know writes failed.
        self.fault: str | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction, committed when the block ends without an exception.
        Never open one inside another: on SQLite that would wait for itself."""
        if self._write_turn is None:
            async with self._session(self._writer, write=True) as conn:
                yield conn
            return
        if _in_write.get():
            raise RuntimeError("nested write transaction")
        async with self._write_turn:
            token = _in_write.set(True)
            try:
                async with self._session(self._writer, write=True) as conn:
                    yield conn
            finally:
                _in_write.reset(token)

    @asynccontextmanager
    async def bulk(self, conn: AsyncConnection) -> AsyncIterator[AsyncConnection]:
        """`conn` (in a `begin()` transaction) with a page cache of sqlite_bulk_cache_mb for
        the block (SQLite): a batch of an import dirties many pages of the blind-index
        B-trees, which a small cache would spill before the commit. Set back after it, so the
        pooled connections keep small caches (memory does not grow with the data)."""
        if self.dialect != "sqlite" or self._bulk_cache_mb <= self._cache_mb:
            yield conn
            return
        await conn.exec_driver_sql(f"PRAGMA cache_size=-{int(self._bulk_cache_mb) * 1024}")
        try:
            yield conn
        finally:
            await conn.exec_driver_sql(f"PRAGMA cache_size=-{int(self._cache_mb) * 1024}")

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (a deferred transaction on SQLite)."""
        async with self._session(self.engine, write=False) as conn:
            yield conn

    @asynccontextmanager
    async def _session(self, engine: AsyncEngine, write: bool) -> AsyncIterator[AsyncConnection]:
        conn = engine.connect()
        try:
            await conn.start()
        except Exception as exc:
            # A refused or lost connection surfaces here as a bare OSError or driver error:
            # named once, so callers see one DatabaseUnavailableError whatever the driver.
            self.fault = connection_kind(exc)
            raise DatabaseUnavailableError(self.fault) from exc
        # The transaction's end and the connection's return to the pool run to completion
        # even when the task is cancelled meanwhile (a shutdown cancelling a writer): cut off
        # half-way, SQLAlchemy gives up on the connection and terminates it (logging "Exception
        # during reset"), and a terminated SQLite connection only gives the write lock back
        # thanks to _SqliteConnection.close(). The cancellation is raised once they are done.
        try:
            if write:
                transaction = conn.begin()
                await transaction.start()
                try:
                    yield conn
                except BaseException as exc:
                    await _to_completion(transaction.__aexit__(type(exc), exc,
                                                               exc.__traceback__))
                    raise
                await _to_completion(transaction.__aexit__(None, None, None))
            else:
                yield conn
        except Exception as exc:
            self.fault = unavailable_kind(exc) or self.fault
            raise
        finally:
            await _to_completion(conn.close())
        if write or self.fault == UNREACHABLE:
            self.fault = None

    async def ping(self) -> None:
        async with self.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def health(self) -> str | None:
        """None when the database answers and, after a write failed for want of it (a full
        disk answers reads), takes a small write again; else the kind of failure."""
        try:
            await self.ping()
            if self.fault is not None:
                async with self.begin() as conn:
                    await conn.execute(text(
                        "UPDATE alembic_version SET version_num = version_num"))
        except Exception as exc:
            kind = unavailable_kind(exc)
            if kind is None:
                raise
            return kind
        return DISK_FULL if self._disk_nearly_full() else None

    def _disk_nearly_full(self) -> bool:
        """SQLite: under MIN_FREE_BYTES left beside the database file. A one-page write may
        still fit in space the WAL already holds, so the probe alone would say "fine"."""
        path = self.engine.url.database if self.dialect == "sqlite" else None
        if not path or path == ":memory:":
            return False
        try:
            found = os.statvfs(os.path.dirname(os.path.abspath(path)))
        except OSError:
            return False
        return found.f_bavail * found.f_frsize < MIN_FREE_BYTES

    async def close(self) -> None:
        await self.engine.dispose()


async def _to_completion(cleanup: Coroutine[Any, Any, None]) -> None:
    """Awaits `cleanup` in a task of its own, to its end even if the calling task is
    cancelled meanwhile; that cancellation is raised afterwards (as SQLAlchemy's own
    AsyncConnection.__aexit__ does for its close)."""
    task = asyncio.ensure_future(cleanup)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
        else:
            break
    if cancelled is not None:
        raise cancelled


def dialect_insert(conn: AsyncConnection, table):
    """INSERT with ON CONFLICT support (upserts) for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def safe_url(url: str) -> str:
    """The URL as it may appear in a message: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


def open_database(url: str, echo: bool = False, sqlite_cache_mb: int = 2,
                  sqlite_bulk_cache_mb: int = 8) -> Database:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError("store.url is not a database URL") from None
    if parsed.drivername not in SUPPORTED:
        raise StoreError(f"store.url uses driver '{parsed.drivername}'; "
                         f"supported: {', '.join(SUPPORTED)}")
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            private_sqlite_files(parsed.database)
        return Database(_sqlite_engine(url, echo, sqlite_cache_mb), sqlite_cache_mb,
                        sqlite_bulk_cache_mb)
    engine = create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10,
                                 max_overflow=10)
    return Database(engine)


def private_sqlite_files(path: str) -> None:
    """The database file readable by its owner only (0600). SQLite gives the -wal and -shm
    files the main file's mode when it creates them, so creating the main file 0600 before
    SQLite does covers all three; files left looser by an older version are tightened. (A
    path that cannot be created is left for SQLite to report when it connects.)"""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(OSError):
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)


class _SqliteConnection(sqlite3.Connection):
    """A sqlite3 connection whose close() always gives the write lock back.

    A task cancelled in the middle of a statement (dispatcher.stop, a timer or bus task
    cancelled at shutdown, a wait_for timing out) does not get to roll back: SQLAlchemy
    treats the CancelledError like a lost connection and terminates it, closing it at once
    without a ROLLBACK and without closing its cursor. When the statement had started to
    return rows (a SELECT or a RETURNING still being read, cancelled between aiosqlite's
    execute and fetchall), sqlite3_close_v2() cannot free a connection with an unfinished
    statement: the connection becomes a "zombie" that keeps its open transaction, and so the
    database's write lock, until that cursor is garbage-collected. The cursor hangs off the
    CancelledError's traceback, which the cancelled task keeps, so every other writer waited
    out busy_timeout and failed with "database is locked" (seen at shutdown: leases not
    released, the last audit checkpoint failing). Closing the connection's cursors and rolling
    back first makes close() a real close, whichever way SQLAlchemy or aiosqlite calls it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cursors: weakref.WeakSet[sqlite3.Cursor] = weakref.WeakSet()

    def cursor(self, *args, **kwargs):  # also what execute() uses to make its cursor
        cursor = super().cursor(*args, **kwargs)
        self._cursors.add(cursor)
        return cursor

    def close(self) -> None:
        for cursor in list(self._cursors):
            with contextlib.suppress(sqlite3.Error):
                cursor.close()  # resets its statement, so the close below is not deferred
        with contextlib.suppress(sqlite3.Error):
            if self.in_transaction:
                self.rollback()  # releases the write lock even if a statement escaped us
        super().close()


def _sqlite_engine(url: str, echo: bool, cache_mb: int) -> AsyncEngine:
    # SQLite has one writer anyway, but readers run side by side (WAL): the dashboard's pages
    # read concurrently. Pooled connections stay open (each keeps its own page cache); an
    # overflow connection is opened, set up and closed per use, which under load cost more
    # than the reads themselves (measured with `izinli bench dashboard`).
    # LIFO: the connection used last is used next. SQLite empties a connection's page cache
    # whenever another connection has written since its last use, so with FIFO every
    # checkout started cold; a dispatcher alternating reads and writes now mostly reuses one or
    # two warm connections.
    engine = create_async_engine(url, echo=echo,
                                 connect_args={"timeout": 30, "factory": _SqliteConnection},
                                 pool_size=6, max_overflow=10, pool_use_lifo=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn, _record):
        # The driver's own implicit BEGIN is turned off so the "begin" hook below decides.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Page cache per pooled connection (each holds up to this much memory); an import's
        # batch raises its own for its transaction (Database.bulk).
        cursor.execute(f"PRAGMA cache_size=-{int(cache_mb) * 1024}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):
        # Writers take the lock at BEGIN, so two writers queue on busy_timeout instead of
        # failing with "database is locked" when a deferred transaction tries to upgrade.
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine
