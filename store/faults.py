"""Which failures mean "the database cannot be used right now" (server down, connection lost,
disk full) rather than a bug or bad input. Classified here once, so the web layer answers 503
and the dispatcher waits and heals instead of giving up, both by the same rule."""
from __future__ import annotations

import errno
import sqlite3

from sqlalchemy import exc as sa_exc

UNREACHABLE = "unreachable"
DISK_FULL = "disk_full"
IO_ERROR = "io_error"

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_KINDS = {13: DISK_FULL, 10: IO_ERROR, 14: UNREACHABLE}  # FULL, IOERR, CANTOPEN
_SQLITE_TEXTS = (("database or disk is full", DISK_FULL), ("disk i/o error", IO_ERROR),
                 ("unable to open database file", UNREACHABLE))
# PostgreSQL SQLSTATEs: class 08 (connection exception), server shutting down or starting up,
# out of disk space.
_PG_KINDS = {"57P01": UNREACHABLE, "57P02": UNREACHABLE, "57P03": UNREACHABLE,
             "53100": DISK_FULL}
_OS_KINDS = {errno.ENOSPC: DISK_FULL, errno.EDQUOT: DISK_FULL, errno.EIO: IO_ERROR}


class DatabaseUnavailableError(Exception):
    """The database could not be reached or written; `kind` says how (unreachable,
    disk_full, io_error). The message is safe to show."""

    def __init__(self, kind: str):
        super().__init__(f"the database is unavailable ({kind})")
        self.kind = kind


def unavailable_kind(exc: BaseException) -> str | None:
    """unreachable / disk_full / io_error when `exc` (or what it wraps) says the database
    cannot be used right now; None for anything else (bugs, constraint violations, input)."""
    for error in _chain(exc):
        kind = _kind_of(error)
        if kind is not None:
            return kind
    return None


def is_unavailable(exc: BaseException) -> bool:
    return unavailable_kind(exc) is not None


def connection_kind(exc: BaseException) -> str:
    """The kind for an error raised while a connection was being obtained: any failure
    there, a refused TCP connection included, means the database is out of reach."""
    return unavailable_kind(exc) or UNREACHABLE


def _kind_of(error: BaseException) -> str | None:
    if isinstance(error, DatabaseUnavailableError):
        return error.kind
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return UNREACHABLE
    if isinstance(error, OSError) and error.errno in _OS_KINDS:
        return _OS_KINDS[error.errno]
    if isinstance(error, sqlite3.Error):
        return _sqlite_kind(error)
    state = getattr(error, "sqlstate", None)  # asyncpg errors and SQLAlchemy's wrappers
    if isinstance(state, str):
        return UNREACHABLE if state.startswith("08") else _PG_KINDS.get(state)
    return None


def _sqlite_kind(error: sqlite3.Error) -> str | None:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _SQLITE_KINDS:
        return _SQLITE_KINDS[code & 0xFF]
    text = str(error).lower()
    return next((kind for needle, kind in _SQLITE_TEXTS if needle in text), None)


def _chain(exc: BaseException):
    """The exception, what SQLAlchemy wrapped (`orig`) and its explicit causes, each once.
    Not `__context__`: a bug raised while handling an outage is still a bug."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        todo += [getattr(error, "orig", None), error.__cause__]
