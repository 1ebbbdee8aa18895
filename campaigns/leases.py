"""Line leases: at most one process dispatches a line at a time. The lease rows themselves
(holder, fencing token, expiry by the database's clock) are store.leases, shared with the other
duties that need one holder across processes; here is what the dispatcher and the pollers keep
of a lease they hold. A process takes a line that has no lease or whose lease expired, which
increments the token; it renews about every second; the dispatcher's claims and result writes
name the token, so once another process took the line over they change nothing."""
from __future__ import annotations

from dataclasses import dataclass

from store.leases import (
    CURRENT_SQL,
    acquire,
    db_now,
    live_sql,
    new_holder,
    release,
    renew,
)

__all__ = ["CURRENT_SQL", "Keeper", "Lease", "acquire", "db_now", "live_sql", "new_holder",
           "release", "renew"]


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
    taken_at: float = 0.0  # monotonic, after the acquire's commit: earlier renewals may miss it

    def valid(self, now: float) -> bool:
        return not self.lost and now < self.valid_until


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
