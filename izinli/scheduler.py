"""Timers (APScheduler drives timers only; the tables are the truth and jobs are rebuilt from
them at start): campaigns due at send_at, the vault auto-lock sweep, the daily retention purge."""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from campaigns import audiences, service
from crypto.vault import Keyring
from optout import audit, retention
from optout.retention import RetentionPolicy
from store.engine import Database
from store.faults import is_unavailable

log = logging.getLogger(__name__)
LOCK_SWEEP_SECONDS = 30
FOLD_SECONDS = 5  # counters: moves not folded yet are read by every count
ERASURE_SECONDS = 60
DUE_RETRY_SECONDS = 5  # a campaign due while the database is away starts this soon after
INVALID_SEND_AT = "invalid_send_at"  # state_reason of a campaign whose send_at is unusable
# The API takes send_at up to a year ahead; rows stored before that rule get room to spare,
# but a send_at further off than this (year 9999, 1e308) is a mistake, not a plan.
MAX_AHEAD_SECONDS = 5 * 365 * 86400


def guarded(job):
    """A timer that survives its own failure: the error is logged by type only (its text may
    carry personal data; APScheduler would log the whole traceback) and the next run happens."""
    @functools.wraps(job)
    async def run(*args):
        try:
            return await job(*args)
        except Exception as exc:
            log.error("timer failed", extra={"job": getattr(job, "__name__", "job"),
                                             "error": type(exc).__name__})
        return None
    return run


class Timers:
    def __init__(self, db: Database, keyring: Keyring, policy: RetentionPolicy,
                 iys_pull=None, iys_pull_minutes: int = 15, master=None, iys_risk=None,
                 alerts=None, erasures=None, audit_journal=None):
        self.db, self.keyring, self.policy, self.master = db, keyring, policy, master
        self.audit_journal = audit_journal  # checkpoints are also appended there
        self.iys_risk, self.alerts, self.erasures = iys_risk, alerts, erasures
        self.iys_pull, self.iys_pull_minutes = iys_pull, iys_pull_minutes
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._folder: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.scheduler.add_job(guarded(self.sweep_locks), "interval",
                               seconds=LOCK_SWEEP_SECONDS, id="lock-sweep", replace_existing=True)
        self._folder = asyncio.get_running_loop().create_task(self._fold_counts())
        self.scheduler.add_job(guarded(self.purge), "cron", hour=0, minute=30, id="retention",
                               replace_existing=True, misfire_grace_time=None)
        self.scheduler.add_job(guarded(self.checkpoint), "interval", hours=1,
                               id="audit-checkpoint", replace_existing=True)
        if self.erasures is not None:
            # Erasure requests made while locked complete soon after the next unlock.
            self.scheduler.add_job(guarded(self.erasures), "interval", seconds=ERASURE_SECONDS,
                                   id="erasures", replace_existing=True, max_instances=1)
        if self.iys_pull is not None:
            # Refusals made in İYS block sends as soon as they are pulled (at least hourly).
            self.scheduler.add_job(guarded(self.iys_pull), "interval",
                                   minutes=self.iys_pull_minutes, id="iys-pull",
                                   replace_existing=True, max_instances=1)
        if self.iys_risk is not None and self.alerts is not None:
            self.scheduler.add_job(guarded(self.warn_deadlines), "interval", hours=1,
                                   id="iys-deadlines", replace_existing=True)
        await self._rebuild_due()
        self.scheduler.start()

    def stop(self) -> None:
        if self._folder is not None:
            self._folder.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def _rebuild_due(self) -> None:
        """Jobs for every scheduled campaign. A row whose send_at cannot be scheduled (1e308,
        year 10000, NaN: stored before send_at was checked) fails alone, with a reason; it used
        to stop every start of the server, for every tenant."""
        async with self.db.connect() as conn:
            rows = await service.scheduled(conn)
        bad = [row.id for row in rows if not self._schedule(row.id, row.send_at)]
        await self._fail_unschedulable(bad)

    def campaign_due_at(self, campaign_id: str, send_at: float | None) -> None:
        """The web layer's hook after a start or resume; an unschedulable row is failed."""
        if not self._schedule(campaign_id, send_at):
            task = asyncio.get_running_loop().create_task(
                self._fail_unschedulable([campaign_id]))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _schedule(self, campaign_id: str, send_at: float | None) -> bool:
        try:
            if send_at is not None and not send_at <= time.time() + MAX_AHEAD_SECONDS:
                raise ValueError("send_at out of range")  # also NaN
            when = datetime.fromtimestamp(max(send_at or 0, time.time()), UTC)
            self.scheduler.add_job(guarded(self.start_due), "date", run_date=when,
                                   args=[campaign_id], id=f"campaign-{campaign_id}",
                                   replace_existing=True, misfire_grace_time=None)
        except (OverflowError, ValueError, OSError, TypeError) as exc:
            log.error("campaign cannot be scheduled", extra={
                "campaign_id": campaign_id, "error": type(exc).__name__})
            return False
        return True

    async def _fail_unschedulable(self, campaign_ids: list[str]) -> None:
        if campaign_ids:
            async with self.db.begin() as conn:
                await service.set_state(conn, campaign_ids, "failed", INVALID_SEND_AT,
                                        only_from=("scheduled",))

    async def start_due(self, campaign_id: str) -> None:
        try:
            async with self.db.begin() as conn:
                await service.set_state(conn, [campaign_id], "running", None,
                                        only_from=("scheduled",))
        except Exception as exc:
            if is_unavailable(exc):  # a one-shot timer: lost until a restart if not set again
                self._schedule(campaign_id, time.time() + DUE_RETRY_SECONDS)
            raise
        log.info("scheduled campaign started", extra={"campaign_id": campaign_id})

    async def sweep_locks(self) -> None:
        for tenant_id in self.keyring.lock_expired():
            log.info("vault auto-locked", extra={"tenant_id": tenant_id})

    async def _fold_counts(self) -> None:
        """Campaign counters and list sizes: folds waiting moves every few seconds (a loop,
        not a job: a fold after a million-recipient start can outlast the interval)."""
        while True:
            try:
                await audiences.fold_counters(self.db)
            except Exception as exc:  # the type only: driver texts can quote SQL parameters
                log.error("folding campaign counters failed",
                          extra={"error": type(exc).__name__})
            await asyncio.sleep(FOLD_SECONDS)

    async def purge(self) -> None:
        async with self.db.begin() as conn:
            counts = await retention.purge(conn, time.time(), self.policy)
            await audit.record(conn, None, "system", "retention.purge", **counts)
        log.info("retention purge", extra=counts)

    async def warn_deadlines(self) -> None:
        """Owners hear about İYS uploads whose legal deadline is less than a business day off."""
        for tenant_id, count in (await self.iys_risk()).items():
            try:  # one tenant's unreachable operator chat must not silence the others
                await self.alerts.campaign_event(tenant_id, None, "iys_deadline", str(count))
            except Exception as exc:
                log.error("deadline alert failed", extra={"tenant_id": tenant_id,
                                                          "error": type(exc).__name__})

    async def checkpoint(self) -> None:
        if self.master is not None:
            await audit.checkpoint(self.db, self.master, self.audit_journal)
