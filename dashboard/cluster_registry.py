"""Who is in the cluster: every running `izinli serve` has a row in `cluster_processes` with its
ephemeral X25519 public key (crypto.shares.ProcessKeys), a proof keyed by the master key that a
cluster member wrote the row, and a heartbeat expiry by the database's clock. A process silent
for LIFE_SECONDS is gone: any live process deletes its row and the vault shares sealed to it.
Used by dashboard.vault_fanout, which seals unlocks to the processes listed here."""
from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.leases import db_now, new_holder
from crypto.master import MasterKey
from crypto.shares import ProcessKeys, process_proof, proof_holds
from store import raw

log = logging.getLogger(__name__)

BEAT_SECONDS = 1.0  # heartbeat period
LIFE_SECONDS = 5.0  # a process silent this long is gone


class ProcessRegistry:
    """This process's row (`beat`, `leave`) and the live others (`live`)."""

    def __init__(self, master: MasterKey):
        self.master = master
        self.process_id = new_holder()
        self.keys = ProcessKeys()  # the secret half never leaves this object
        self._healthy_since: float | None = None
        self._forged: set[str] = set()  # rows whose proof failed, said once each

    async def beat(self, conn: AsyncConnection) -> tuple[frozenset[str], bool]:
        """Renews this process's row, making it when missing; purges the dead once this
        process has beaten for LIFE_SECONDS (after an outage, everyone gets time to beat
        again first). (live process ids, whether the row was (re)made)."""
        now = db_now(conn)
        made = not await raw.execute(conn, "UPDATE cluster_processes SET expires_at = "
                                           f"{now} + ? WHERE id = ?",
                                     (LIFE_SECONDS, self.process_id))
        if made:  # first beat, or the others took this process for dead
            await raw.execute(conn, (
                "INSERT INTO cluster_processes (id, public_key, proof, started_at, expires_at) "
                f"VALUES (?, ?, ?, {now}, {now} + ?) ON CONFLICT (id) DO UPDATE "
                "SET expires_at = excluded.expires_at"),
                (self.process_id, self.keys.public_key,
                 process_proof(self.master, self.process_id, self.keys.public_key),
                 LIFE_SECONDS))
        if (self._healthy_since is not None
                and time.monotonic() - self._healthy_since >= LIFE_SECONDS):
            await _delete_rows(conn, "cluster_processes", "id", f"expires_at <= {now}")
            await delete_shares(conn, f"expires_at <= {now} OR NOT EXISTS (SELECT 1 FROM "
                                      "cluster_processes p WHERE p.id = s.process_id)")
        return frozenset(await self.live(conn)), made

    def beat_done(self, ok: bool) -> None:
        """Called after each beat's transaction: health counts from the first good beat."""
        if not ok:
            self._healthy_since = None
        elif self._healthy_since is None:
            self._healthy_since = time.monotonic()

    async def live(self, conn: AsyncConnection) -> dict[str, bytes]:
        """Live processes (id -> public key) whose row a holder of the master key made."""
        rows = await raw.fetch(conn, "SELECT id, public_key, proof FROM cluster_processes "
                                     f"WHERE expires_at > {db_now(conn)}")
        live = {}
        for process_id, key, proof in rows:
            if proof_holds(self.master, process_id, bytes(key), bytes(proof)):
                live[process_id] = bytes(key)
            elif process_id not in self._forged:
                if len(self._forged) > 1000:
                    self._forged.clear()
                self._forged.add(process_id)
                log.error("process row ignored: its proof does not check (another master "
                          "key?); it gets no vault shares", extra={"process_id": process_id})
        return live

    async def leave(self, conn: AsyncConnection) -> None:
        """A clean shutdown: this process's row and shares go at once."""
        await raw.execute(conn, "DELETE FROM cluster_processes WHERE id = ?",
                          (self.process_id,))
        await delete_shares(conn, "process_id = ?", (self.process_id,))


async def delete_shares(conn: AsyncConnection, where: str, params: tuple = ()) -> None:
    """Deletes vault shares (alias `s` in `where`) without waiting for rows another
    transaction holds (PostgreSQL): a purge never blocks an unlock nor deadlocks with one;
    what it skipped, the next beat gets."""
    skip = " FOR UPDATE OF s SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    await raw.execute(conn, "DELETE FROM vault_shares WHERE (tenant_id, process_id) IN "
                            "(SELECT s.tenant_id, s.process_id FROM vault_shares s "
                            f"WHERE {where}{skip})", params)


async def _delete_rows(conn: AsyncConnection, table: str, key: str, where: str) -> None:
    skip = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    await raw.execute(conn, f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} "
                            f"WHERE {where}{skip})")
