"""The sandbox channel: simulated phones. What it "delivers" is stored (sealed like everything
else) so a business can try the whole pipeline without a provider. Optionally it behaves like
a provider: latency, random temporary failures and an enforced rate answered with 429s."""
from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from campaigns.ports import (
    Line,
    OutboundMessage,
    RateLimited,
    SendResult,
    Sent,
    TemporaryFailure,
)
from campaigns.throttle import TokenBucket
from crypto.service import FieldCrypto
from optout.tenants import TenantDirectory
from store import raw
from store.engine import Database
from store.tables import sandbox_messages

# Deliveries are written in batches; a send's result returns before its row is durable, which
# is what a real provider does too (an outbox row then stays `sending` until flushed).
FLUSH_AT = 5000
_INSERT = ("INSERT INTO sandbox_messages (tenant_id, line_id, to_index, to_sealed, text_sealed, "
           "at) VALUES (?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True, slots=True)
class Delivered:
    to: str
    text: str
    at: float
    line_id: str


class SandboxChannel:
    def __init__(self, db: Database, fields: FieldCrypto, directory: TenantDirectory,
                 rng: random.Random | None = None):
        self._db, self._fields, self._directory = db, fields, directory
        self._rng = rng or random.Random()
        self._buffer: list[tuple] = []
        self._limits: dict[str, TokenBucket] = {}
        self._public_keys: dict[str, bytes] = {}
        self._lock = asyncio.Lock()
        self.rate_limited = 0  # 429s answered, for benchmarks

    async def send(self, line: Line, address: str, message: OutboundMessage) -> SendResult:
        started = time.time()  # when the "provider" got the message, before any await
        simulate = (line.options or {}).get("simulate") or {}
        refusal = self._simulated_refusal(line, simulate)
        if refusal is not None:
            return refusal
        if simulate.get("latency_ms"):
            await asyncio.sleep(simulate["latency_ms"] / 1000)
        sealer = await self._fields.shared_sealer(line.tenant_id,
                                                  await self._public_key(line.tenant_id))
        self._buffer.append((
            line.tenant_id, line.id, self._directory.index(line.tenant_id, address),
            sealer.seal_field(address.encode()), sealer.seal_field(message.text.encode()),
            started))
        if len(self._buffer) >= FLUSH_AT:
            await self.flush()
        return Sent(provider_id=f"sandbox-{uuid.uuid4()}")

    async def _public_key(self, tenant_id: str) -> bytes:
        key = self._public_keys.get(tenant_id)
        if key is None:
            async with self._db.connect() as conn:
                key = (await self._directory.profile(conn, tenant_id)).public_key
            self._public_keys[tenant_id] = key
        return key

    def _simulated_refusal(self, line: Line, simulate: dict) -> SendResult | None:
        rate = simulate.get("enforced_rate_per_second")
        if rate:
            bucket = self._limits.get(line.id)
            if bucket is None or bucket.rate != rate:
                bucket = self._limits[line.id] = TokenBucket(rate, now=time.monotonic())
            now = time.monotonic()
            wait = bucket.wait_time(now)
            if wait > 0:
                self.rate_limited += 1
                return RateLimited(retry_after=wait)
            bucket.take(now)
        if simulate.get("failure_rate") and self._rng.random() < simulate["failure_rate"]:
            return TemporaryFailure("simulated_failure")
        return None

    async def flush(self) -> None:
        async with self._lock:
            rows, self._buffer = self._buffer, []
            if rows:
                async with self._db.begin() as conn:
                    await raw.execute_many(conn, _INSERT, rows)

    async def received(self, tenant_id: str, to: str | None = None,
                       limit: int = 10_000) -> list[Delivered]:
        """What simulated phones received: the newest `limit` messages, listed oldest first;
        needs the vault unlocked."""
        await self.flush()
        q = sa.select(sandbox_messages).where(sandbox_messages.c.tenant_id == tenant_id)
        async with self._db.connect() as conn:
            if to is not None:
                index = (await self._directory.indexer(conn, tenant_id))(to)
                q = q.where(sandbox_messages.c.to_index == index)
            rows = list(await conn.execute(
                q.order_by(sandbox_messages.c.id.desc()).limit(limit)))[::-1]
        blobs = [bytes(b) for r in rows for b in (r.to_sealed, r.text_sealed)]
        opened = await self._fields.open_fields(tenant_id, blobs)
        return [Delivered(to=opened[2 * i].decode(), text=opened[2 * i + 1].decode(), at=r.at,
                          line_id=r.line_id) for i, r in enumerate(rows)]
