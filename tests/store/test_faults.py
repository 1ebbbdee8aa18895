"""store.faults: which errors mean "the database cannot be used right now" — the one rule the
web layer (503) and the dispatcher (wait and heal) both follow."""
from __future__ import annotations

import asyncio
import errno
import sqlite3
import threading

import asyncpg.exceptions as pg
import pytest
from sqlalchemy import exc as sa_exc

from store.engine import open_database
from store.faults import DatabaseUnavailableError, is_unavailable, unavailable_kind


def _wrapped(orig: Exception, cls=sa_exc.OperationalError, invalidated: bool = False):
    return cls("UPDATE outbox …", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(("error", "kind"), [
    (_wrapped(sqlite3.OperationalError("database or disk is full")), "disk_full"),
    (_wrapped(sqlite3.OperationalError("disk I/O error")), "io_error"),
    (_wrapped(sqlite3.OperationalError("unable to open database file")), "unreachable"),
    (_wrapped(pg.ConnectionDoesNotExistError("closed mid-operation"), sa_exc.DBAPIError,
              invalidated=True), "unreachable"),
    (_wrapped(pg.CannotConnectNowError("the database system is starting up"),
              sa_exc.DBAPIError), "unreachable"),
    (_wrapped(pg.DiskFullError("could not extend file"), sa_exc.DBAPIError), "disk_full"),
    (OSError(errno.ENOSPC, "No space left on device"), "disk_full"),
    (DatabaseUnavailableError("unreachable"), "unreachable"),
])
def test_outage_errors_are_classified(error, kind):
    assert unavailable_kind(error) == kind
    try:  # as the web layer sees it: raised again further up, the cause kept
        raise RuntimeError("a round failed") from error
    except RuntimeError as outer:
        assert unavailable_kind(outer) == kind


@pytest.mark.parametrize("error", [
    _wrapped(sqlite3.IntegrityError("UNIQUE constraint failed"), sa_exc.IntegrityError),
    _wrapped(pg.UniqueViolationError("duplicate key"), sa_exc.IntegrityError),
    _wrapped(sqlite3.OperationalError("no such table: outbox")),
    ConnectionRefusedError(errno.ECONNREFUSED, "refused"),  # e.g. a provider, not the database
    ValueError("bad input"),
])
def test_bugs_and_input_are_not_outages(error):
    assert not is_unavailable(error)


def test_bug_while_handling_an_outage_is_a_bug():
    try:
        try:
            raise DatabaseUnavailableError("unreachable")
        except DatabaseUnavailableError:
            raise KeyError("bug")  # noqa: B904 — the point: context, not cause
    except KeyError as exc:
        assert not is_unavailable(exc)


async def test_unreachable_database_is_named_not_raised():
    db = open_database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(DatabaseUnavailableError) as raised:
            async with db.connect():
                pass
        assert raised.value.kind == "unreachable"
        assert await db.health() == "unreachable"
    finally:
        await db.close()


async def test_sqlite_that_cannot_open_is_unreachable(tmp_path):
    before = set(threading.enumerate())
    db = open_database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'izinli.db'}")
    try:
        assert await db.health() == "unreachable"
    finally:
        await db.close()
    # aiosqlite stops a connection that failed to open from its worker thread, which then
    # answers on this test's event loop: let it finish before the loop closes, or it reports
    # "Event loop is closed" in whichever test runs next.
    started = [t for t in threading.enumerate() if t not in before]
    for _ in range(500):
        if not any(t.is_alive() for t in started):
            break
        await asyncio.sleep(0.01)
