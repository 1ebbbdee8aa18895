"""Inbound kept sealed while a vault is locked (issue 17 item 1).

Under `passphrase` custody the blind-index key is the tenant's: while its vault is locked no
process can compute the index of an incoming number, so a STOP, another reply, a provider's
opt-out or a refusal pulled from İYS cannot be matched then. It is not dropped: `keep` seals
what arrived (JSON, crypto_box_seal to the tenant public key, which needs no secret; format in
docs/crypto.md) into `sealed_inbound`, with a hash of the provider's id so a retried delivery
is kept once. The confirmation reply to a STOP still goes out at once (the caller has the
number; keyword detection needs no index).

At the next unlock `apply` opens the items and applies them, in arrival order, each in the
transaction that deletes it (DELETE … RETURNING: of two processes applying at once, the second
finds the row gone and skips it; a crash mid-way leaves the rest for the next try).

"Before any campaign leaves waiting_unlock": the dispatcher asks `held` which of its tenants
still have items (applying them first when the tenant is unlocked in its own process) and sends
nothing for those. The queue is the truth, not a notice: whichever process unlocks first, and
whatever a still-locked process adds meanwhile, no process sends for a tenant whose queue is
not empty. A background loop (`run`) also applies it in every process soon after an unlock,
so the dashboard shows those STOPs without waiting for a campaign."""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import nacl.bindings
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.errors import CorruptDataError, VaultLockedError
from crypto.fields import FieldSealer
from crypto.service import FieldCrypto
from optout.tenants import TenantDirectory, TenantProfile
from optout.watch import RevocationWatch
from store import raw
from store.engine import Database

log = logging.getLogger(__name__)

BATCH = 200
RUN_SECONDS = 1.0
_CHUNK = 500


@dataclass
class Applying:
    """What a handler gets to apply one item inside the transaction that deletes it."""
    conn: AsyncConnection
    profile: TenantProfile
    sealer: FieldSealer
    index: Callable[[str], bytes]
    watch: RevocationWatch


Handler = Callable[[Applying, dict], Awaitable[None]]


def dedup_of(tenant_id: str, provider_id: str) -> bytes:
    """16 bytes that recognise a retried delivery without storing the provider's id (a
    WhatsApp message id can carry the sender's number)."""
    return hashlib.blake2b(f"{tenant_id}\x00{provider_id}".encode(), digest_size=16,
                           person=b"izinli-inbound").digest()


def seal_item(public_key: bytes, op: str, payload: dict) -> bytes:
    """crypto_box_seal of the UTF-8 JSON {"v": 1, "op": …, …payload} to the tenant."""
    body = json.dumps({"v": 1, "op": op, **payload}, ensure_ascii=False).encode()
    return nacl.bindings.crypto_box_seal(body, public_key)


class InboundBacklog:
    def __init__(self, db: Database, fields: FieldCrypto, directory: TenantDirectory,
                 watch: RevocationWatch):
        self.db, self.fields, self.directory, self.watch = db, fields, directory, watch
        self._handlers: dict[str, Handler] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def on(self, op: str, handler: Handler) -> None:
        """`handler` applies items of kind `op` (bot.inbound, optout.iys_sync register)."""
        self._handlers[op] = handler

    async def keep(self, tenant_id: str, public_key: bytes, op: str, payload: dict,
                   provider_id: str | None = None, conn: AsyncConnection | None = None
                   ) -> bool:
        """Seals one item for the tenant's next unlock; False when an item with the same
        provider id is already waiting (a retried delivery)."""
        row = (tenant_id, dedup_of(tenant_id, provider_id) if provider_id else None,
               seal_item(public_key, op, payload), time.time())
        sql = ("INSERT INTO sealed_inbound (tenant_id, dedup, sealed, received_at) "
               "VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, dedup) DO NOTHING")
        if conn is not None:
            kept = await raw.execute(conn, sql, row) == 1
        else:
            async with self.db.begin() as own:
                kept = await raw.execute(own, sql, row) == 1
        log.info("inbound kept sealed while locked", extra={"tenant_id": tenant_id, "op": op,
                                                             "duplicate": not kept})
        return kept

    async def pending(self, tenant_ids: Iterable[str]) -> set[str]:
        """Those of the tenants with sealed inbound not applied yet."""
        ids, found = list(dict.fromkeys(tenant_ids)), set()
        if not ids:
            return found
        async with self.db.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                part = ids[start:start + _CHUNK]
                found.update(r[0] for r in await raw.fetch(
                    conn, "SELECT DISTINCT tenant_id FROM sealed_inbound WHERE tenant_id IN "
                          f"({raw.marks(len(part))})", tuple(part)))
        return found

    async def held(self, tenant_ids: Iterable[str]) -> set[str]:
        """Those of the tenants nothing may be sent for yet: sealed inbound still waiting.
        What this process can apply (the tenant unlocked here) is applied first."""
        still, tried = set(), []
        for tenant_id in await self.pending(tenant_ids):
            if not self.fields.keyring.is_unlocked(tenant_id):
                still.add(tenant_id)
                continue
            try:
                await self.apply(tenant_id)
                tried.append(tenant_id)
            except VaultLockedError:
                still.add(tenant_id)
            except Exception as exc:  # the type only: an item must not leak into the log
                log.error("sealed inbound not applied", extra={"tenant_id": tenant_id,
                                                               "error": type(exc).__name__})
                still.add(tenant_id)
        # A process still locked may have added more meanwhile: asked again, not assumed.
        return still | (await self.pending(tried) if tried else set())

    async def apply(self, tenant_id: str) -> int:
        """Applies the tenant's sealed inbound in arrival order; how many items this process
        applied. VaultLockedError when the tenant is locked here."""
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            unlocked = self.fields.keyring.get(tenant_id)
            async with self.db.connect() as conn:
                profile = await self.directory.profile(conn, tenant_id)
            sealer = await self.fields.shared_sealer(tenant_id, profile.public_key)
            applied = corrupt = 0
            while True:
                async with self.db.connect() as conn:
                    ids = [r[0] for r in await raw.fetch(
                        conn, "SELECT id FROM sealed_inbound WHERE tenant_id = ? ORDER BY id "
                              f"LIMIT {BATCH}", (tenant_id,))]
                if not ids:
                    break
                for item_id in ids:
                    async with self.db.begin() as conn:
                        taken = await raw.fetch(conn, "DELETE FROM sealed_inbound WHERE id = ? "
                                                      "RETURNING sealed", (item_id,))
                        if not taken:
                            continue  # another process applied it
                        try:
                            item = json.loads(unlocked.open_sealed(bytes(taken[0][0])))
                            handler = self._handlers[item.pop("op")]
                        except (CorruptDataError, ValueError, KeyError, TypeError):
                            corrupt += 1  # not ours (forged or damaged): nothing to apply
                            continue
                        item.pop("v", None)
                        index = await self.directory.indexer(conn, tenant_id)
                        await handler(Applying(conn, profile, sealer, index, self.watch), item)
                        applied += 1
            if corrupt:
                log.error("sealed inbound items that did not open dropped",
                          extra={"tenant_id": tenant_id, "count": corrupt})
            if applied:
                log.info("sealed inbound applied", extra={"tenant_id": tenant_id,
                                                          "count": applied})
            return applied

    async def apply_unlocked(self) -> int:
        """Applies the backlog of every tenant unlocked in this process."""
        tenants = await self.pending(self.fields.keyring.unlocked_ids())
        done = 0
        for tenant_id in tenants:
            try:
                done += await self.apply(tenant_id)
            except VaultLockedError:
                continue
        return done

    async def run(self, every: float = RUN_SECONDS) -> None:
        """Applies soon after each unlock, in every process (the dispatcher does not wait for
        this: it asks `held` before sending)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.apply_unlocked()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sealed inbound not applied yet", extra={
                    "error": type(exc).__name__})
