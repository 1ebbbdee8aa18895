"""The database engine: SQLite (WAL) by default, PostgreSQL (asyncpg) for scale, chosen by URL."""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

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
# SQLite copies its write-ahead log back into the database file (a checkpoint) from a thread
# of the Database's own instead of inside whichever commit finds the log past 1,000 pages:
# that commit took 10-20 ms longer while holding the write lock (a fifth of a flat-out
# dispatcher's time). The thread looks every CHECKPOINT_SECONDS and checkpoints once
# CHECKPOINT_WRITES transactions have committed since its last one, or after
# CHECKPOINT_IDLE_SECONDS with fewer: a checkpoint syncs the files, which a trickle of small
# writes should not pay ten times a second. Commits still checkpoint by themselves past
# FALLBACK_AUTOCHECKPOINT pages, should the thread fall behind or be stopped.
# It never opens the -wal or -shm file itself: closing any descriptor of a file drops every
# POSIX lock this process holds on it, SQLite's included, and without its lock on the WAL
# index another process's connection takes the index for abandoned, truncates it and starts
# it again under this one (seen as SIGBUS in sqlite3WalFindFrame on a full tmpfs).
CHECKPOINT_SECONDS = 0.1
CHECKPOINT_WRITES = 4
CHECKPOINT_IDLE_SECONDS = 2.0
FALLBACK_AUTOCHECKPOINT = 4000


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
        self._checkpointer: _Checkpointer | None = None  # started by the first write

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
        if self._checkpointer is None:
            self._checkpointer = _Checkpointer.start_for(self.engine.url.database)
            if self._checkpointer is not None:  # a Database dropped unclosed stops it too
                weakref.finalize(self, self._checkpointer.stopping.set)
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
                if self._checkpointer is not None:
                    self._checkpointer.commits += 1
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

    async def stop_checkpoints(self) -> None:
        """Stops the background checkpoints until the next write (SQLite): commits then
        checkpoint by themselves, as with a bare driver (`izinli bench dispatch`'s floor)."""
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)

    async def close(self) -> None:
        await self.stop_checkpoints()
        await self.engine.dispose()


class _Checkpointer:
    """Checkpoints a SQLite database's WAL from a thread with its own connection (PASSIVE: it
    waits for no reader or writer and copies what it can) when CHECKPOINT_WRITES commits or
    CHECKPOINT_IDLE_SECONDS call for it. The C library releases the GIL meanwhile, so on a
    second core it costs the event loop nothing. Stops on `stop()`, or when its Database is
    garbage-collected unclosed."""

    def __init__(self, path: str):
        self._path = path
        self.commits = 0  # write transactions committed; counted by the Database
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="izinli-sqlite-checkpoint",
                                        daemon=True)

    @classmethod
    def start_for(cls, path: str | None) -> _Checkpointer | None:
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        checkpointer = cls(path)
        checkpointer._thread.start()
        return checkpointer

    def _run(self) -> None:
        conn, failing = None, False
        done, last = 0, time.monotonic()  # commits checkpointed, and when
        try:
            while not self.stopping.wait(CHECKPOINT_SECONDS):
                waiting = self.commits - done
                if not (waiting >= CHECKPOINT_WRITES or (
                        waiting > 0 and time.monotonic() - last >= CHECKPOINT_IDLE_SECONDS)):
                    continue
                done, last = done + waiting, time.monotonic()
                try:
                    if conn is None:  # mode=rw: never creates a file that has gone
                        conn = sqlite3.connect(f"file:{quote(self._path)}?mode=rw", uri=True,
                                               timeout=0, isolation_level=None)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    failing = False
                except sqlite3.Error as exc:
                    # Another process's checkpoint running ("locked"/"busy") is routine; a
                    # full disk or a lost file is said once, until a checkpoint works again.
                    text = str(exc).lower()
                    if not failing and "locked" not in text and "busy" not in text:
                        log.warning("WAL checkpoint failed", extra={
                            "kind": unavailable_kind(exc) or type(exc).__name__})
                        failing = True
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(timeout=5)


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
        cursor.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_AUTOCHECKPOINT}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):
        # Writers take the lock at BEGIN, so two writers queue on busy_timeout instead of
        # failing with "database is locked" when a deferred transaction tries to upgrade.
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine
