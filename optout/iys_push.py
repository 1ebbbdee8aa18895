"""The İYS push: one run drains a tenant's whole upload queue in consecutive bulk requests (at
most 1,000 records each, a few awaiting their results at a time, one request on the wire at a
time, honouring İYS's 429 Retry-After) until the queue is empty, the vault locks or İYS asks us
to stop. The records and their claims are optout.iys_queue.

Exclusive per tenant across processes: a run holds the lease "iys:<tenant>" (store.leases:
fencing token, expiry by the database's clock, renewed while it runs). A lease rather than a
PostgreSQL advisory lock: it works the same on SQLite, it cannot vanish unnoticed with a dropped
connection while the process carries on, it needs no connection pinned for a run that may last
minutes, and its token fences the claims, so a process that lost it takes nothing more.

Each record is uploaded once, and nothing is `sent` that İYS did not confirm:
- İYS answered with a requestId: it is kept on the records and polled (now, or by a later run
  after a crash or a slow İYS) until each record is accepted (`sent`) or refused (`failed`).
- The request provably never reached İYS's processing (unreachable, 429, 503, or the request
  refused as a whole): the claim is undone and the records go with a later request.
- The answer was lost (timeout, connection dropped, another 5xx): İYS may or may not have the
  records. They stay claimed, nothing more of those numbers goes up, and once `reconcile_after`
  has passed (İYS processes bulk requests asynchronously: give it time) each record is looked up
  with a status query: held exactly as sent (status and consentDate) → `sent`; else → queued
  again.
Why not simply send again (at least once)? İYS's data would survive it — a repeated ONAY or RET
is refused, never applied twice ("tekrar onay ... tekrar ret eklenemez") — but the refusal would
mark `failed` a record İYS in fact holds, and its codes are not documented well enough to read
as "already there". Asking İYS is exact, and costs one query per record only after a loss."""
from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass

from crypto.errors import VaultLockedError
from crypto.service import FieldCrypto
from optout.iys import (
    NOT_FOUND,
    Accepted,
    AuthFailed,
    Failure,
    IysClient,
    IysError,
    Rejected,
    Retry,
    backoff_delay,
    may_have_been_taken,
    with_backoff,
)
from optout.iys_queue import Batch, UploadQueue
from store.engine import Database
from store.leases import HeldLease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushSettings:
    bulk_limit: int = 1000  # records per bulk request (İYS's batch limit)
    outstanding: int = 3  # bulk requests awaiting their results at a time
    lease_seconds: float = 30.0  # renewed every third of it while a run lasts
    reconcile_after: float = 600.0  # a lost answer is looked up in İYS after this long
    poll_for: float = 300.0  # a request İYS has not finished by then is polled next run
    post_attempts: int = 5  # for a request İYS turned away (429, 503, unreachable)
    max_backoff: float = 60.0


_POLL_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)  # after the request; then every 5 s
_IDLE = 0.5  # the longest wait with nothing to do (a record waiting for its second)


class Drain:
    """One run over one tenant's queue, under the tenant's lease held by this process."""

    def __init__(self, db: Database, fields: FieldCrypto, tenant_id: str, client: IysClient,
                 lease: HeldLease, settings: PushSettings):
        self.tenant_id, self.client, self.lease, self.settings = tenant_id, client, lease, settings
        self.counts: Counter[str] = Counter()
        self.queue = UploadQueue(db, fields, tenant_id, lease, self.counts)
        self.outstanding: list[Batch] = []
        self.posting = True
        self.stopped_by = "done"
        self._not_before = 0.0  # İYS asked us to wait (429 Retry-After, back-off)

    async def run(self) -> Counter[str]:
        await self._resume()
        while self.lease.valid():
            progressed = await self._post_next() if self._may_post() else False
            for batch in [b for b in self.outstanding if b.next_poll <= time.monotonic()]:
                await self._poll(batch)
            if not self.outstanding and not self.posting:
                break
            if not progressed:
                await asyncio.sleep(self._idle())
        if not self.lease.valid():
            self.stopped_by = "lease_lost"
        self.counts["unconfirmed"] += sum(len(b.ids) - len(b.done) for b in self.outstanding)
        return self.counts

    def _may_post(self) -> bool:
        return self.posting and len(self.outstanding) < self.settings.outstanding

    def _idle(self) -> float:
        soonest = min((b.next_poll for b in self.outstanding), default=math.inf)
        return max(0.01, min(_IDLE, soonest - time.monotonic()))

    def _stop(self, why: str) -> None:
        if self.posting:
            self.posting, self.stopped_by = False, why

    async def _post_next(self) -> bool:
        try:
            batch, why = await self.queue.take(self.settings.bulk_limit)
        except VaultLockedError:  # locked meanwhile: what is in flight is seen through
            batch, why = None, "locked"
        if batch is None:
            # "blocked" ends with the run's own requests; "deferred" is a second's wait.
            if why in ("empty", "locked", "lease_lost") or (
                    why == "blocked" and not self.outstanding):
                self._stop(why)
            return why == "again"
        return await self._post(batch)

    async def _post(self, batch: Batch) -> bool:
        for attempt in range(self.settings.post_attempts):
            await self._pace()
            try:
                request_id = await self.client.add_bulk(batch.records)
            except IysError as error:
                failure = error.outcome
            else:
                await self.queue.keep_request(batch, request_id)
                batch.next_poll = time.monotonic() + _POLL_DELAYS[0]
                self.outstanding.append(batch)
                return True
            if may_have_been_taken(failure):
                log.warning("iys bulk answer lost; its records wait for a reconciliation",
                            extra={"tenant_id": self.tenant_id, "records": len(batch.ids)})
                self.counts["unconfirmed"] += len(batch.ids)
                self._stop("answer_lost")
                return False
            if not isinstance(failure, Retry):
                break
            self._back_off(failure, attempt)
        await self.queue.unclaim(batch)
        self._stop(_reason(failure))
        return False

    async def _pace(self) -> None:
        wait = self._not_before - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def _back_off(self, retry: Retry, attempt: int) -> None:
        delay = backoff_delay(retry, attempt, 0.5, random.random(), self.settings.max_backoff)
        self._not_before = max(self._not_before, time.monotonic() + delay)

    async def _poll(self, batch: Batch) -> None:
        await self._pace()
        batch.polls += 1
        try:
            results = await self.client.bulk_result(batch.request_id, len(batch.ids))
        except IysError as error:
            await self._poll_failed(batch, error.outcome)
            return
        final = [(r.index, r.outcome) for r in results
                 if r.index not in batch.done and isinstance(r.outcome, Accepted | Rejected)]
        if final:
            await self.queue.write(batch, final)
        if len(batch.done) == len(batch.ids):
            self.outstanding.remove(batch)
        elif time.monotonic() - batch.posted_at > self.settings.poll_for:
            self._leave(batch)  # its requestId is kept: the next run polls it again
        else:
            delay = _POLL_DELAYS[batch.polls] if batch.polls < len(_POLL_DELAYS) else 5.0
            batch.next_poll = time.monotonic() + delay

    async def _poll_failed(self, batch: Batch, failure: Failure) -> None:
        if isinstance(failure, Retry):
            self._back_off(failure, min(batch.polls, 6))
            batch.next_poll = self._not_before
            if time.monotonic() - batch.posted_at > self.settings.poll_for:
                self._leave(batch)
            return
        if isinstance(failure, Rejected) and failure.code == NOT_FOUND:
            await self.queue.forget_request(batch)  # asked about record by record later
        self._leave(batch)
        if isinstance(failure, AuthFailed):
            self._stop("auth_failed")

    def _leave(self, batch: Batch) -> None:
        self.outstanding.remove(batch)
        self.counts["unconfirmed"] += len(batch.ids) - len(batch.done)

    async def _resume(self) -> None:
        """What earlier runs left claimed: their requests are polled again; records whose
        answer was lost long enough ago are looked up in İYS; younger ones wait."""
        try:
            left = await self.queue.left_in_flight(self.settings.reconcile_after)
        except VaultLockedError:
            self._stop("locked")
            return
        for batch in left:
            if batch.request_id is not None:
                self.outstanding.append(batch)
            elif not batch.overdue:
                self.counts["unconfirmed"] += len(batch.ids)
            elif not await self._reconcile(batch):
                return

    async def _reconcile(self, batch: Batch) -> bool:
        """Asks İYS about each record of a request whose answer was lost: held exactly as
        sent → `sent`; anything else → queued again. False when İYS cannot be asked now."""
        held, requeue = [], []
        for index, record in enumerate(batch.records):
            if record is None:
                requeue.append(index)  # it fails as unusable when taken again
                continue
            try:
                current = await with_backoff(lambda r=record: self.client.status(
                    r.recipient, r.type, r.recipient_type), attempts=3)
            except IysError:
                self._stop("reconcile_failed")
                self.counts["unconfirmed"] += len(batch.ids)
                return False
            same = current is not None and current.status == record.status and math.floor(
                current.consent_date.timestamp()) == math.floor(record.consent_date.timestamp())
            (held if same else requeue).append(index)
        await self.queue.write(batch, [(i, Accepted("reconciled")) for i in held])
        await self.queue.unclaim(batch, requeue)
        self.counts["requeued"] += len(requeue)
        return True


def _reason(failure: Failure) -> str:
    if isinstance(failure, AuthFailed):
        return "auth_failed"
    if isinstance(failure, Rejected):
        return f"rejected:{failure.code}"
    return f"retry:{failure.reason}"
