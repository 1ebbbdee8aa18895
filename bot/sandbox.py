"""The sandbox channel: simulated phones. What it "delivers" is stored (sealed like everything
else) so a business can try the whole pipeline without a provider. Optionally it behaves like
a provider: latency, random temporary failures and an enforced rate answered with 429s."""
from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from campaigns.outbox import mark_receipts
from campaigns.ports import (
    Line,
    OutboundMessage,
    RateLimited,
    SendResult,
    Sent,
    TemporaryFailure,
    Unavailable,
)
from campaigns.throttle import TokenBucket
from crypto.service import FieldCrypto
from optout.tenants import TenantDirectory
from store import raw
from store.engine import Database
from store.faults import is_unavailable
from store.tables import sandbox_messages

log = logging.getLogger(__name__)

# A delivery is committed before its send returns Sent, as a real provider keeps a message the
# moment it answers: a crash then leaves `unknown` rows that were in fact delivered, as in
# production. Sends in flight together share one commit (group commit): while one batch is
# being written the next gathers, so throughput costs one commit per batch, not per message.
FLUSH_WAIT = 10.0
_INSERT = ("INSERT INTO sandbox_messages (tenant_id, line_id, to_index, to_sealed, text_sealed, "
           "at) VALUES (?, ?, ?, ?, ?, ?)")
# PostgreSQL: a flush's rows in one statement (one array per column), not one per message.
_INSERT_ARRAYS = raw.from_arrays(_INSERT, ("text", "text", "bytea", "bytea", "bytea", "float8"))


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
        # (rows, their commit) to write: one entry per send_many call
        self._waiting: list[tuple[list[tuple], asyncio.Future]] = []
        self._writer: asyncio.Task | None = None
        self._limits: dict[str, TokenBucket] = {}
        self._public_keys: dict[str, bytes] = {}
        self.rate_limited = 0  # 429s answered, for benchmarks

    async def send(self, line: Line, address: str, message: OutboundMessage) -> SendResult:
        (result,) = await self.send_many(line, [(address, message)])
        return result

    async def send_many(self, line: Line,
                        messages: Sequence[tuple[str, OutboundMessage]]) -> list[SendResult]:
        """Sends that start together (campaigns.ports.BatchChannel): each is refused or kept
        as one send would be, and the kept ones share one commit, so a batch costs one
        future and one wake-up instead of one per message."""
        started = time.time()  # when the "provider" got the messages, before any await
        simulate = (line.options or {}).get("simulate") or {}
        results: list[SendResult | None] = [self._simulated_refusal(line, simulate)
                                            for _ in messages]
        if simulate.get("latency_ms"):
            await asyncio.sleep(simulate["latency_ms"] / 1000)
        sealer = await self._fields.shared_sealer(line.tenant_id,
                                                  await self._public_key(line.tenant_id))
        # A confirmation sent while the vault is locked has no index: the number is only
        # sealed (`received` finds it by opening the sealed number).
        index = (functools.partial(self._directory.index, line.tenant_id)
                 if self._directory.can_index(line.tenant_id) else lambda _: None)
        kept = [m for m, refused in zip(messages, results, strict=True) if refused is None]
        sealed = iter(sealer.seal_many([part for address, message in kept
                                        for part in (address.encode(), message.text.encode())]))
        rows = [(line.tenant_id, line.id, message.recipient_index or index(address),
                 next(sealed), next(sealed), started) for address, message in kept]
        try:
            if rows:
                await self._store(rows)
        except Exception as exc:  # the "provider" could not keep them: nothing was delivered
            log.warning("sandbox delivery not stored", extra={"line_id": line.id,
                                                              "error": type(exc).__name__})
            return [r or Unavailable("sandbox_store_error") for r in results]
        batch = uuid.uuid4().hex  # one random part per batch, a counter within it
        return [r or Sent(provider_id=f"sandbox-{batch}-{i}") for i, r in enumerate(results)]

    async def _store(self, rows: list[tuple]) -> None:
        """Returns once `rows` are committed, together with the rows of the sends around
        them."""
        committed = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, committed))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        # Shielded: a cancelled send (a stopping dispatcher) still lets its row be written, as
        # a provider that took a message does not forget it when the caller hangs up.
        await asyncio.shield(committed)

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            failure = None
            try:
                await self._keep([row for rows, _ in batch for row in rows])
            except Exception as exc:
                failure = exc
            for _, committed in batch:
                if committed.done():
                    continue
                if failure is None:
                    committed.set_result(None)
                else:
                    committed.set_exception(failure)

    async def _keep(self, rows: list[tuple]) -> None:
        """Commits the rows. While our own database is unavailable (a full disk, a stopped
        server) the "provider" holds them, as a send waiting for its answer, rather than
        failing messages a real provider would have taken; a retry skips rows whose commit
        went through although its answer was lost, so nobody receives a message twice."""
        delays = iter((0.1, 0.2, 0.5, 1.0))
        retrying = False
        while True:
            try:
                async with self._db.begin() as conn:
                    await raw.execute_batch(conn, _INSERT, await self._not_kept(conn, rows)
                                            if retrying else rows, _INSERT_ARRAYS)
                return
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                retrying = True
                await asyncio.sleep(next(delays, 2.0))

    @staticmethod
    async def _not_kept(conn, rows: list[tuple]) -> list[tuple]:
        """The rows a failed commit did not keep after all (rare): one read per send batch,
        whose rows share their tenant, line and time, by ix_sandbox_messages_at. A stored
        delivery without an index (sent while locked) may be any of the batch's."""
        found: dict[tuple, set] = {}
        for tenant_id, line_id, _, _, _, at in rows:
            if (tenant_id, line_id, at) not in found:
                found[tenant_id, line_id, at] = {index for (index,) in await raw.fetch(
                    conn, "SELECT to_index FROM sandbox_messages WHERE tenant_id = ? "
                          "AND at = ? AND line_id = ?", (tenant_id, at, line_id))}
        return [row for row in rows
                if not found[row[0], row[1], row[5]] & {row[2], None}]

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
        """Waits for deliveries still being written (every send already waits for its own),
        at most FLUSH_WAIT seconds: a database that is down must not hold up a shutdown."""
        writer = self._writer
        if writer is not None and not writer.done():
            await asyncio.wait({writer}, timeout=FLUSH_WAIT)

    async def close(self) -> None:
        """Stops writing: rows still waiting (the database down at shutdown) are not kept, and
        their sends, like a provider's that never answered, end `unknown` after a restart."""
        await self.flush()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def received(self, tenant_id: str, to: str | None = None,
                       limit: int = 10_000) -> list[Delivered]:
        """What simulated phones received: the newest `limit` messages, listed oldest first;
        needs the vault unlocked."""
        await self.flush()
        q = sa.select(sandbox_messages).where(sandbox_messages.c.tenant_id == tenant_id)
        async with self._db.connect() as conn:
            if to is not None:
                index = (await self._directory.indexer(conn, tenant_id))(to)
                q = q.where(sa.or_(sandbox_messages.c.to_index == index,
                                   sandbox_messages.c.to_index.is_(None)))
            rows = list(await conn.execute(
                q.order_by(sandbox_messages.c.at.desc(), sandbox_messages.c.id.desc())
                .limit(limit)))[::-1]
        blobs = [bytes(b) for r in rows for b in (r.to_sealed, r.text_sealed)]
        opened = await self._fields.open_fields(tenant_id, blobs)
        found = [Delivered(to=opened[2 * i].decode(), text=opened[2 * i + 1].decode(), at=r.at,
                           line_id=r.line_id) for i, r in enumerate(rows)]
        return found if to is None else [d for d in found if d.to == to]


# Simulated receipts ("on demand": the sandbox page's button). A real provider reports a
# message delivered and then, for most people, read; the sandbox does the same for what its
# lines sent: every `sent` message becomes `delivered`, and seven in ten `read` (by row id, so
# a run is repeatable). Sending itself is untouched, so benchmarks pay nothing for it.
READ_SHARE_OF_TEN = 7


async def simulate_receipts(conn, tenant_id: str) -> tuple[int, int]:
    """Marks the tenant's sandbox sends delivered and (most) read, in the caller's
    transaction; (newly delivered, newly read)."""
    return await mark_receipts(conn, tenant_id, "sandbox", READ_SHARE_OF_TEN)
