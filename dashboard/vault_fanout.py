"""One unlock serves every process. Each `izinli serve` registers an ephemeral X25519 public key
with a heartbeat (dashboard.cluster_registry); an unlock made through any process seals the tenant
secret key to every live process (crypto.shares), stores those shares and announces them on the
bus; a process that joins later gets its share from one that holds the unlock. A lock deletes
every share of the tenant and is announced: each process locks on the notice, or within a
second from the tables when the notice was lost. Every share of an unlock carries the same
expiry by the database's clock, so auto-lock happens everywhere at once; custody changes reach
every process the same way.

The tables are the truth, notices only make it fast. `vault_epochs` counts, per tenant, the
unlocks, locks and custody changes made through the cluster; updating its row serialises them
per tenant, and a process applies a notice or a share only when it is newer than what it has
applied, so a late notice never undoes a later change, and a share put back after a lock does
not open again in a process that locked.

On SQLite (one process) nothing is stored or announced: unlock, lock and custody act on this
process's keyring alone, by the same rules."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncConnection

from accounts import SERVICE_TTL
from campaigns.leases import db_now
from crypto.errors import CorruptDataError, VaultLockedError
from crypto.master import MasterKey
from crypto.shares import Share, holds_key_of, seal_share
from crypto.vault import Keyring
from dashboard import cluster_registry
from dashboard.cluster_registry import ProcessRegistry
from optout.tenants import hold_lookup_key
from store import raw
from store.bus import Bus
from store.engine import Database
from store.faults import is_unavailable
from store.tenants import set_custody

log = logging.getLogger(__name__)

TOPIC = "vault"
FULL_CHECK_BEATS = 10  # holders check every live process has its share at least this often
_CHUNK = 500


class VaultFanout:
    """Unlock, lock and custody for this process and, on PostgreSQL, every other one."""

    def __init__(self, db: Database, bus: Bus, keyring: Keyring, master: MasterKey,
                 shared: bool | None = None):
        self.db, self.bus, self.keyring, self.master = db, bus, keyring, master
        self.shared = db.dialect == "postgresql" if shared is None else shared
        self.registry = ProcessRegistry(master)
        self.process_id = self.registry.process_id
        self._member = False  # registered (started); a CLI command shares without being one
        self._followed: dict[str, tuple[int, float]] = {}  # tenant -> (epoch, expires_at)
        self._ended: dict[str, int] = {}  # tenant -> epochs up to this one never open here
        self._seen: dict[str, int] = {}  # tenant -> newest lock/custody event applied here
        self._serial = asyncio.Lock()  # one change of this process's vault state at a time
        self._task: asyncio.Task | None = None
        self._peers: frozenset[str] = frozenset()
        self._beats = 0
        self._down = False

    # --- what the API calls -------------------------------------------------------------

    async def unlock(self, tenant_id: str, secret_key: bytes, ttl_seconds: float) -> float:
        """Holds the key here for `ttl_seconds` and shares it with every live process; the
        expiry instant on this process's monotonic clock."""
        if not self.shared:
            return self.keyring.unlock(tenant_id, secret_key, ttl_seconds)
        async with self._serial:
            async with self.db.begin() as conn:
                epoch, now = await self._bump(conn, tenant_id, "unlock")
                share = Share(secret_key, epoch, now + ttl_seconds)
                await self._replace_shares(conn, tenant_id, share)
                await self.bus.publish(conn, TOPIC, f"unlock {tenant_id} {epoch}")
            self._follow(tenant_id, share, ttl_seconds)  # unless a lock committed after it
        return self.keyring.expires_at(tenant_id) or 0.0

    async def lock(self, tenant_id: str) -> None:
        """Locks here at once, then everywhere: the shares are deleted and the lock announced."""
        self._end(tenant_id, self._followed.get(tenant_id, (0, 0.0))[0])
        if not self.shared:
            return
        async with self._serial:
            async with self.db.begin() as conn:
                epoch, _ = await self._bump(conn, tenant_id, "lock")
                await raw.execute(conn, "DELETE FROM vault_shares WHERE tenant_id = ?",
                                  (tenant_id,))
                await self.bus.publish(conn, TOPIC, f"lock {tenant_id} {epoch}")
            self._seen[tenant_id] = max(epoch, self._seen.get(tenant_id, 0))
            self._end(tenant_id, epoch)

    async def change_custody(self, tenant_id: str, custody: str, ttl_seconds: float) -> None:
        """Switches custody while unlocked (VaultLockedError otherwise). `service`: every
        process unlocks from the master key for SERVICE_TTL. `passphrase`: the unlock goes on
        for `ttl_seconds`, shared like any unlock."""
        secret = self.keyring.get(tenant_id).secret_key()
        wrapped = self.master.wrap(secret) if custody == "service" else None
        async with self._serial:
            epoch, share = 0, None
            async with self.db.begin() as conn:
                await set_custody(conn, tenant_id, custody, wrapped)
                # the lookup key follows: master-wrapped only under `service`
                await hold_lookup_key(conn, self.master, tenant_id, secret, custody)
                if self.shared:
                    epoch, now = await self._bump(conn, tenant_id, "custody")
                    if custody == "passphrase":
                        share = Share(secret, epoch, now + ttl_seconds)
                    await self._replace_shares(conn, tenant_id, share)
                    await self.bus.publish(conn, TOPIC, f"custody {tenant_id} {epoch}")
            self._seen[tenant_id] = max(epoch, self._seen.get(tenant_id, 0))
            if custody == "service":
                self._to_service(tenant_id, secret, epoch)
            elif share is not None:
                self._follow(tenant_id, share, ttl_seconds)
            else:
                self.keyring.unlock(tenant_id, secret, ttl_seconds)

    # --- membership ---------------------------------------------------------------------

    async def start(self) -> None:
        """Registers this process, opens the shares it finds, and keeps beating."""
        if not self.shared or self._task is not None:
            return
        self.bus.subscribe(TOPIC, self._heard)
        self.bus.on_reconnect(self._catch_up)
        async with self.db.connect() as conn:  # events before this start are history
            rows = await raw.fetch(conn, "SELECT tenant_id, epoch FROM vault_epochs")
        self._seen = {tenant_id: int(epoch) for tenant_id, epoch in rows}
        self._member = True
        try:
            await self.tick()
        except Exception as exc:  # the beats keep trying; the server still starts
            log.warning("vault fan-out not joined yet", extra={"error": type(exc).__name__})
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Leaves the cluster: this process's row and shares go at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._member:
            return
        self._member = False
        try:
            async with self.db.begin() as conn:
                await self.registry.leave(conn)
        except Exception as exc:  # the others purge them once this row has expired
            log.warning("vault shares not removed", extra={"error": type(exc).__name__})

    async def tick(self) -> None:
        """One beat: heartbeat, purge of the dead and expired, this process's shares opened
        or followed, and (when the live set changed) shares sealed to processes lacking one."""
        async with self._serial:
            try:
                async with self.db.begin() as conn:  # one transaction a second per process
                    peers, made = await self.registry.beat(conn)
                    if made:  # new here, or back after being taken for dead
                        await self.bus.publish(conn, TOPIC, "join - 0")
                    found = await self._read_own(conn)
            except Exception:
                self.registry.beat_done(False)
                raise
            self.registry.beat_done(True)
            self._apply_own(*found)
        self._beats += 1
        if peers != self._peers or self._beats % FULL_CHECK_BEATS == 0:
            self._peers = peers
            await self.share_with_missing()

    async def share_with_missing(self) -> None:
        """Seals each unlock this process follows to the live processes that lack it."""
        if not self._followed:
            return
        async with self.db.connect() as conn:
            live = await self.registry.live(conn)
            followed = list(self._followed)
            have: set[tuple[str, str]] = set()
            for start in range(0, len(followed), _CHUNK):
                part = followed[start:start + _CHUNK]
                have.update((t, p) for t, p in await raw.fetch(
                    conn, "SELECT tenant_id, process_id FROM vault_shares WHERE tenant_id IN "
                          f"({raw.marks(len(part))})", tuple(part)))
        for tenant_id in followed:
            missing = {p: k for p, k in live.items() if (tenant_id, p) not in have}
            if missing and tenant_id in self._followed:
                await self._share(tenant_id, missing)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(cluster_registry.BEAT_SECONDS)
            try:
                await self.tick()
                self._down = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the type only: driver texts can quote parameters
                if not is_unavailable(exc):
                    log.error("vault fan-out beat failed", extra={"error": type(exc).__name__})
                elif not self._down:
                    self._down = True
                    log.warning("vault fan-out waits for the database")

    # --- this process's shares ----------------------------------------------------------

    async def _reconcile(self, only: str | None = None) -> None:
        """Opens this process's new shares and locks the unlocks whose share is gone.
        Caller holds _serial."""
        async with self.db.connect() as conn:
            found = await self._read_own(conn, only)
        self._apply_own(*found)

    async def _read_own(self, conn: AsyncConnection, only: str | None = None
                        ) -> tuple[list, dict[str, int], dict[str, bytes]]:
        """This process's shares newer than what it holds (with what opening them needs), the
        tenants it follows whose share is gone (with their epoch now), and which of those are
        now in service custody."""
        where, params = "process_id = ?", (self.process_id,)
        if only is not None:
            where, params = where + " AND tenant_id = ?", (*params, only)
        present = {t: int(e) for t, e in await raw.fetch(
            conn, f"SELECT tenant_id, epoch FROM vault_shares WHERE {where}", params)}
        fresh = [t for t, e in present.items() if e > self._floor(t)]
        blobs = await self._blobs(conn, fresh) if fresh else []
        vanished = [t for t in self._followed if t not in present and only in (None, t)]
        if not vanished:
            return blobs, {}, {}
        marks = raw.marks(len(vanished))
        epochs = {t: int(e) for t, e in await raw.fetch(
            conn, f"SELECT tenant_id, epoch FROM vault_epochs WHERE tenant_id IN ({marks})",
            tuple(vanished))}
        return blobs, {t: epochs.get(t, 0) for t in vanished}, await self._custody(conn, vanished)

    def _apply_own(self, blobs: list, vanished: dict[str, int], custody: dict[str, bytes]
                   ) -> None:
        for tenant_id, now_epoch in vanished.items():  # locked, expired, custody changed,
            if tenant_id not in self._followed:        # or this process was taken for dead
                continue  # ended meanwhile (a lock notice)
            epoch = self._followed[tenant_id][0]
            if tenant_id in custody:
                self._to_service_wrapped(tenant_id, custody[tenant_id], epoch)
            elif now_epoch > epoch:
                self._end(tenant_id, epoch)  # replaced or locked: this epoch never again
            else:  # still the tenant's unlock (this row was purged, or it expired): a holder
                self._end(tenant_id, epoch - 1)  # may seal it to this process once more
        for row in blobs:
            self._open(*row)

    async def _blobs(self, conn: AsyncConnection, tenant_ids: list[str]) -> list[tuple]:
        found = []
        for start in range(0, len(tenant_ids), _CHUNK):
            part = tenant_ids[start:start + _CHUNK]
            found += await raw.fetch(conn, (
                f"SELECT s.tenant_id, s.epoch, s.sealed, t.public_key, {db_now(conn)} "
                "FROM vault_shares s JOIN tenants t ON t.id = s.tenant_id "
                f"WHERE s.process_id = ? AND s.tenant_id IN ({raw.marks(len(part))})"),
                (self.process_id, *part))
        return found

    async def _custody(self, conn: AsyncConnection, tenant_ids: list[str]) -> dict[str, bytes]:
        """The master-wrapped secret of those tenants now in `service` custody."""
        marks = raw.marks(len(tenant_ids))
        rows = await raw.fetch(conn, "SELECT id, service_wrapped_secret FROM tenants WHERE "
                                     f"custody = 'service' AND id IN ({marks})", tuple(tenant_ids))
        return {tenant_id: bytes(wrapped) for tenant_id, wrapped in rows if wrapped}

    def _open(self, tenant_id: str, epoch, sealed, public_key, now) -> None:
        epoch = int(epoch)
        try:
            share = self.registry.keys.open_share(bytes(sealed), tenant_id, self.process_id)
            if share.epoch != epoch or not holds_key_of(share, bytes(public_key)):
                raise CorruptDataError("vault share does not match its row or tenant")
        except CorruptDataError as exc:
            log.error("vault share refused", extra={"tenant_id": tenant_id,
                                                    "error": type(exc).__name__})
            self._ended[tenant_id] = max(epoch, self._ended.get(tenant_id, 0))
            return
        remaining = share.expires_at - float(now)
        if remaining > 0 and self._follow(tenant_id, share, remaining):
            log.info("vault unlocked through another process", extra={"tenant_id": tenant_id})

    def _floor(self, tenant_id: str) -> int:
        """Shares of this epoch or older are not opened (again) here."""
        return max(self._ended.get(tenant_id, 0), self._followed.get(tenant_id, (0, 0.0))[0])

    def _follow(self, tenant_id: str, share: Share, ttl_seconds: float) -> bool:
        if share.epoch <= self._ended.get(tenant_id, 0):
            return False  # a lock newer than this unlock was applied meanwhile
        self.keyring.unlock(tenant_id, share.secret_key, ttl_seconds)
        self._followed[tenant_id] = (share.epoch, share.expires_at)
        return True

    def _end(self, tenant_id: str, epoch: int) -> None:
        self.keyring.lock(tenant_id)
        self._followed.pop(tenant_id, None)
        self._ended[tenant_id] = max(epoch, self._ended.get(tenant_id, 0))

    def _to_service(self, tenant_id: str, secret_key: bytes, epoch: int) -> None:
        """Unattended from now on: unlocked for SERVICE_TTL, no longer following shares."""
        self._followed.pop(tenant_id, None)
        self._ended[tenant_id] = max(epoch, self._ended.get(tenant_id, 0))
        self.keyring.unlock(tenant_id, secret_key, SERVICE_TTL)

    def _to_service_wrapped(self, tenant_id: str, wrapped: bytes, epoch: int) -> None:
        try:
            secret = self.master.unwrap(wrapped)
        except CorruptDataError:  # a damaged row leaves that tenant locked, as at start
            log.error("service custody unlock failed", extra={"tenant_id": tenant_id})
            self._end(tenant_id, epoch)
            return
        self._to_service(tenant_id, secret, epoch)

    # --- sharing ------------------------------------------------------------------------

    async def _bump(self, conn: AsyncConnection, tenant_id: str, event: str) -> tuple[int, float]:
        """The tenant's next epoch, and the database's now. Holds the tenant's epoch row
        until commit: unlocks, locks and custody changes of one tenant happen one at a time."""
        rows = await raw.fetch(conn, (
            "INSERT INTO vault_epochs (tenant_id, epoch, event) VALUES (?, 1, ?) "
            "ON CONFLICT (tenant_id) DO UPDATE SET epoch = vault_epochs.epoch + 1, "
            f"event = excluded.event RETURNING epoch, {db_now(conn)}"), (tenant_id, event))
        return int(rows[0][0]), float(rows[0][1])

    async def _replace_shares(self, conn: AsyncConnection, tenant_id: str,
                              share: Share | None) -> None:
        await raw.execute(conn, "DELETE FROM vault_shares WHERE tenant_id = ?", (tenant_id,))
        if share is None:
            return
        targets = await self.registry.live(conn)
        if self._member:
            targets[self.process_id] = self.registry.keys.public_key
        await self._insert(conn, tenant_id, share, targets)

    async def _share(self, tenant_id: str, missing: dict[str, bytes]) -> None:
        epoch, expires_at = self._followed[tenant_id]
        try:
            secret = self.keyring.get(tenant_id).secret_key()
        except VaultLockedError:
            return  # expired here: the purge ends it everywhere
        async with self._serial, self.db.begin() as conn:
            rows = await raw.fetch(conn, "UPDATE vault_epochs SET epoch = epoch WHERE "
                                         f"tenant_id = ? RETURNING epoch, {db_now(conn)}",
                                   (tenant_id,))
            if not rows or int(rows[0][0]) != epoch or expires_at <= float(rows[0][1]):
                return  # locked or replaced meanwhile: not ours to hand out any more
            await self._insert(conn, tenant_id, Share(secret, epoch, expires_at), missing,
                               " ON CONFLICT (tenant_id, process_id) DO NOTHING")
            await self.bus.publish(conn, TOPIC, f"unlock {tenant_id} {epoch}")

    async def _insert(self, conn: AsyncConnection, tenant_id: str, share: Share,
                      targets: dict[str, bytes], conflict: str = "") -> None:
        rows = []
        for process_id, public_key in targets.items():
            try:
                sealed = seal_share(public_key, tenant_id, process_id, share)
            except Exception as exc:  # a damaged row must not stop the others' unlock
                log.error("vault share not sealed", extra={"error": type(exc).__name__})
                continue
            rows.append((tenant_id, process_id, share.epoch, sealed, share.expires_at))
        await raw.execute_many(conn, "INSERT INTO vault_shares (tenant_id, process_id, epoch, "
                                     f"sealed, expires_at) VALUES (?, ?, ?, ?, ?){conflict}",
                               rows)

    # --- notices ------------------------------------------------------------------------

    def _heard(self, payload: str) -> None:
        event, tenant_id, epoch = payload.split(" ")
        self._apply(event, tenant_id, int(epoch))

    def _apply(self, event: str, tenant_id: str, epoch: int) -> None:
        if event == "join":
            self.bus.spawn(self.share_with_missing())
        elif event == "unlock":  # the share itself says whether it is new
            self.bus.spawn(self._guarded_reconcile(tenant_id))
        elif epoch > self._seen.get(tenant_id, 0):
            self._seen[tenant_id] = epoch
            if event == "lock":
                self._end(tenant_id, epoch)  # at once, before any await
            elif event == "custody":
                self.bus.spawn(self._custody_changed(tenant_id, epoch))

    async def _guarded_reconcile(self, tenant_id: str) -> None:
        async with self._serial:
            await self._reconcile(tenant_id)

    async def _custody_changed(self, tenant_id: str, epoch: int) -> None:
        async with self._serial:
            async with self.db.connect() as conn:
                wrapped = (await self._custody(conn, [tenant_id])).get(tenant_id)
            if wrapped:
                self._to_service_wrapped(tenant_id, wrapped, epoch)
                return
            await self._reconcile(tenant_id)
            if tenant_id not in self._followed:  # passphrase custody and no share here
                self._end(tenant_id, epoch - 1)  # a share of this epoch may still come

    async def _catch_up(self) -> None:
        """After the bus was away: the events missed meanwhile, then a beat."""
        async with self.db.connect() as conn:
            rows = await raw.fetch(conn, "SELECT tenant_id, epoch, event FROM vault_epochs")
        for tenant_id, epoch, event in rows:
            if int(epoch) > self._seen.get(tenant_id, 0) and event != "unlock":
                self._apply(event, tenant_id, int(epoch))
        await self.tick()

