"""Line leases: at most one process dispatches a line at a time. A lease row per line holds
the holder, a fencing token and an expiry measured by the DATABASE's clock (process clocks may
disagree; the database is the one truth every process shares). A process takes a line that has
no lease or whose lease expired, which increments the token; it renews about every second;
the dispatcher's claims and result writes name the token, so once another process took the
line over they change nothing."""
from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from store import raw

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


@dataclass
class Lease:
    """A lease this process holds. `valid_until` is on the process's monotonic clock: the
    start of the last successful acquire or renewal plus the lease's life, minus a margin.
    The database's expiry is later than that (its clock read happened after our start),
    so a send this process starts while `valid` cannot overlap another holder's sends."""
    line_id: str
    token: int
    valid_until: float
    lost: bool = False

    def valid(self, now: float) -> bool:
        return not self.lost and now < self.valid_until


async def acquire(conn: AsyncConnection, line_id: str, holder: str,
                  seconds: float) -> int | None:
    """Takes the line when it has no lease or its lease has expired: the fencing token of the
    new lease (one more than the last), or None while another holder's lease is live."""
    now = db_now(conn)
    rows = await raw.fetch(conn, (
        "INSERT INTO line_leases (line_id, holder, token, expires_at) "
        f"VALUES (?, ?, 1, {now} + ?) ON CONFLICT (line_id) DO UPDATE "
        "SET holder = excluded.holder, token = line_leases.token + 1, "
        f"expires_at = excluded.expires_at WHERE line_leases.expires_at <= {now} "
        "RETURNING token"), (line_id, holder, float(seconds)))
    return int(rows[0][0]) if rows else None


async def renew(conn: AsyncConnection, holder: str, seconds: float) -> dict[str, int]:
    """Extends every lease this holder still has, in one statement: {line_id: token}. A lease
    that expired without being taken over is extended too (nobody else acted on it, and its
    token still fences); one taken over has another holder and is not in the answer."""
    rows = await raw.fetch(conn, f"UPDATE line_leases SET expires_at = {db_now(conn)} + ? "
                                 "WHERE holder = ? RETURNING line_id, token",
                           (float(seconds), holder))
    return {line_id: int(token) for line_id, token in rows}


async def release(conn: AsyncConnection, line_id: str, token: int) -> bool:
    """Ends the lease at once (clean shutdown, line idle) so a peer can take the line without
    waiting for the expiry. The row stays: the next holder's token must be larger."""
    return await raw.execute(conn, "UPDATE line_leases SET holder = '', expires_at = 0 "
                                   "WHERE line_id = ? AND token = ?", (line_id, token)) == 1


def live_sql(conn: AsyncConnection) -> str:
    """A condition true while the lease (line_id = ?, token = ?) is current and unexpired."""
    return ("EXISTS (SELECT 1 FROM line_leases WHERE line_id = ? AND token = ? "
            f"AND expires_at > {db_now(conn)})")


# The token alone: a result write after the lease merely expired, with nobody having taken
# the line over, is still right (what was sent is recorded `sent`, not turned `unknown`).
CURRENT_SQL = "EXISTS (SELECT 1 FROM line_leases WHERE line_id = ? AND token = ?)"


class Keeper:
    """Leases on a changing set of keys for a standing duty (a Telegram bot's long polling:
    one poller per bot across processes). Each `hold` renews what this process has, takes
    what is free and gives back what it no longer wants, in one transaction."""

    def __init__(self, db, seconds: float = 5.0, prefix: str = "poll:"):
        self.db, self.seconds, self.prefix = db, seconds, prefix
        self.holder = new_holder()
        self._tokens: dict[str, int] = {}

    async def hold(self, wanted: set[str]) -> set[str]:
        """Of `wanted` (line ids), those this process holds now."""
        keys = {self.prefix + w for w in wanted}
        async with self.db.begin() as conn:
            current = await renew(conn, self.holder, self.seconds)
            held = {k for k in keys if k in current and current[k] == self._tokens.get(k)}
            for key in sorted(keys - held):
                token = await acquire(conn, key, self.holder, self.seconds)
                if token is not None:
                    self._tokens[key] = token
                    held.add(key)
            for key in set(current) - keys:
                await release(conn, key, current[key])
        self._tokens = {k: self._tokens[k] for k in held}
        return {k[len(self.prefix):] for k in held}

    async def release_all(self) -> None:
        async with self.db.begin() as conn:
            for key, token in self._tokens.items():
                await release(conn, key, token)
        self._tokens = {}
