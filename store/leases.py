"""Leases: at most one process holds a key (a line, a bot's polling, a tenant's İYS upload) at a
time. A row per key in `line_leases` holds the holder, a fencing token and an expiry measured by
the DATABASE's clock (process clocks may disagree; the database is the one truth every process
shares). A process takes a key that has no lease or whose lease expired, which increments the
token; it renews while it works; writes made under the lease name the token, so once another
process took the key over they change nothing."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection

from store import raw

log = logging.getLogger(__name__)

# Epoch seconds by the database's own clock. clock_timestamp(), not now(): now() is frozen at
# the start of the transaction, which may have begun before a long wait for a lock.
_PG_NOW = "extract(epoch FROM clock_timestamp())"
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def db_now(conn: AsyncConnection) -> str:
    """SQL for "now" in epoch seconds on the connection's database."""
    return _PG_NOW if conn.dialect.name == "postgresql" else _SQLITE_NOW


def new_holder() -> str:
    """This process's name in lease rows: host and pid for the operator, plus a random part
    so a restarted process never mistakes its dead predecessor's lease for its own."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


async def acquire(conn: AsyncConnection, key: str, holder: str, seconds: float) -> int | None:
    """Takes the key when it has no lease or its lease has expired: the fencing token of the
    new lease (one more than the last), or None while another holder's lease is live."""
    # Two statements, not one INSERT … ON CONFLICT DO UPDATE … WHERE: PostgreSQL locks the
    # conflicting row even when the WHERE is false, so a failed take-over attempt held up the
    # live holder's renewal (seen losing leases under load). An UPDATE locks only rows it
    # changes, and a second taker re-checks the expiry after the first one's commit.
    now = db_now(conn)
    rows = await raw.fetch(conn, (
        "INSERT INTO line_leases (line_id, holder, token, expires_at) "
        f"VALUES (?, ?, 1, {now} + ?) ON CONFLICT (line_id) DO NOTHING RETURNING token"),
        (key, holder, float(seconds)))
    if not rows:
        rows = await raw.fetch(conn, (
            f"UPDATE line_leases SET holder = ?, token = token + 1, expires_at = {now} + ? "
            f"WHERE line_id = ? AND expires_at <= {now} RETURNING token"),
            (holder, float(seconds), key))
    return int(rows[0][0]) if rows else None


async def renew(conn: AsyncConnection, holder: str, seconds: float) -> dict[str, int]:
    """Extends every lease this holder still has, in one statement: {key: token}. A lease
    that expired without being taken over is extended too (nobody else acted on it, and its
    token still fences); one taken over has another holder and is not in the answer."""
    rows = await raw.fetch(conn, f"UPDATE line_leases SET expires_at = {db_now(conn)} + ? "
                                 "WHERE holder = ? RETURNING line_id, token",
                           (float(seconds), holder))
    return {key: int(token) for key, token in rows}


async def release(conn: AsyncConnection, key: str, token: int) -> bool:
    """Ends the lease at once (clean shutdown, work done) so a peer can take the key without
    waiting for the expiry. The row stays: the next holder's token must be larger."""
    return await raw.execute(conn, "UPDATE line_leases SET holder = '', expires_at = 0 "
                                   "WHERE line_id = ? AND token = ?", (key, token)) == 1


def live_sql(conn: AsyncConnection) -> str:
    """A condition true while the lease (key = ?, token = ?) is current and unexpired."""
    return ("EXISTS (SELECT 1 FROM line_leases WHERE line_id = ? AND token = ? "
            f"AND expires_at > {db_now(conn)})")


# The token alone: a result write after the lease merely expired, with nobody having taken
# the key over, is still right (what was sent is recorded `sent`, not turned `unknown`).
CURRENT_SQL = "EXISTS (SELECT 1 FROM line_leases WHERE line_id = ? AND token = ?)"


class HeldLease:
    """A lease held for the length of a task (a tenant's İYS upload), renewed in the
    background: `valid()` until it is lost to another holder or runs out unrenewed."""

    def __init__(self, db, key: str, holder: str, seconds: float):
        self.db, self.key, self.holder, self.seconds = db, key, holder, seconds
        self.token: int | None = None
        self.lost = False
        self._valid_until = 0.0

    def valid(self) -> bool:
        return not self.lost and time.monotonic() < self._valid_until

    async def _acquire(self) -> bool:
        started = time.monotonic()
        async with self.db.begin() as conn:
            self.token = await acquire(conn, self.key, self.holder, self.seconds)
        # The database's expiry is later than this (its clock was read after `started`).
        self._valid_until = started + self.seconds - min(_MARGIN, self.seconds / 5)
        return self.token is not None

    async def _keep(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.seconds / 3)
            started = time.monotonic()
            try:
                async with self.db.begin() as conn:
                    held_now = await renew(conn, self.holder, self.seconds)
            except Exception as exc:  # the database is away: validity runs out by itself
                log.warning("lease renewal failed", extra={"error": type(exc).__name__})
                continue
            if held_now.get(self.key) != self.token:
                self.lost = True
                log.warning("lease lost to another holder", extra={"key": self.key})
            else:
                self._valid_until = started + self.seconds - min(_MARGIN, self.seconds / 5)

    async def _release(self) -> None:
        assert self.token is not None
        with contextlib.suppress(Exception):  # it expires by itself anyway
            async with self.db.begin() as conn:
                await release(conn, self.key, self.token)


_MARGIN = 1.0  # of a lease's life not counted on (at most a fifth): a renewal takes time


@contextlib.asynccontextmanager
async def held(db, key: str, holder: str, seconds: float) -> AsyncIterator[HeldLease | None]:
    """The lease on `key` for the block, renewed meanwhile and released at the end; None
    while another holder has it."""
    lease = HeldLease(db, key, holder, seconds)
    if not await lease._acquire():
        yield None
        return
    keeper = asyncio.get_running_loop().create_task(lease._keep())
    try:
        yield lease
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await lease._release()
