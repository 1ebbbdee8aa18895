"""Timers (APScheduler drives timers only; the tables are the truth and jobs are rebuilt from
them at start): campaigns due at send_at, the vault auto-lock sweep, the daily retention purge."""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from campaigns import audiences, service
from crypto.vault import Keyring
from optout import audit, retention
from optout.retention import RetentionPolicy
from store.engine import Database

log = logging.getLogger(__name__)
LOCK_SWEEP_SECONDS = 30
FOLD_SECONDS = 5  # counters: moves not folded yet are read by every count
ERASURE_SECONDS = 60


class Timers:
    def __init__(self, db: Database, keyring: Keyring, policy: RetentionPolicy,
                 iys_pull=None, iys_pull_minutes: int = 15, master=None, iys_risk=None,
                 alerts=None, erasures=None):
        self.db, self.keyring, self.policy, self.master = db, keyring, policy, master
        self.iys_risk, self.alerts, self.erasures = iys_risk, alerts, erasures
        self.iys_pull, self.iys_pull_minutes = iys_pull, iys_pull_minutes
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._folder: asyncio.Task | None = None

    async def start(self) -> None:
        self.scheduler.add_job(self.sweep_locks, "interval", seconds=LOCK_SWEEP_SECONDS,
                               id="lock-sweep", replace_existing=True)
        self._folder = asyncio.get_running_loop().create_task(self._fold_counts())
        self.scheduler.add_job(self.purge, "cron", hour=0, minute=30, id="retention",
                               replace_existing=True, misfire_grace_time=None)
        self.scheduler.add_job(self.checkpoint, "interval", hours=1, id="audit-checkpoint",
                               replace_existing=True)
        if self.erasures is not None:
            # Erasure requests made while locked complete soon after the next unlock.
            self.scheduler.add_job(self.erasures, "interval", seconds=ERASURE_SECONDS,
                                   id="erasures", replace_existing=True, max_instances=1)
        if self.iys_pull is not None:
            # Refusals made in İYS block sends as soon as they are pulled (at least hourly).
            self.scheduler.add_job(self.iys_pull, "interval", minutes=self.iys_pull_minutes,
                                   id="iys-pull", replace_existing=True, max_instances=1)
        if self.iys_risk is not None and self.alerts is not None:
            self.scheduler.add_job(self.warn_deadlines, "interval", hours=1, id="iys-deadlines",
                                   replace_existing=True)
        async with self.db.connect() as conn:
            for row in await service.scheduled(conn):
                self.campaign_due_at(row.id, row.send_at)
        self.scheduler.start()

    def stop(self) -> None:
        if self._folder is not None:
            self._folder.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def campaign_due_at(self, campaign_id: str, send_at: float | None) -> None:
        when = datetime.fromtimestamp(max(send_at or 0, time.time()), UTC)
        self.scheduler.add_job(self.start_due, "date", run_date=when, args=[campaign_id],
                               id=f"campaign-{campaign_id}", replace_existing=True,
                               misfire_grace_time=None)

    async def start_due(self, campaign_id: str) -> None:
        async with self.db.begin() as conn:
            await service.set_state(conn, [campaign_id], "running", None,
                                    only_from=("scheduled",))
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
            except Exception:
                log.exception("folding campaign counters failed")
            await asyncio.sleep(FOLD_SECONDS)

    async def purge(self) -> None:
        async with self.db.begin() as conn:
            counts = await retention.purge(conn, time.time(), self.policy)
            await audit.record(conn, None, "system", "retention.purge", **counts)
        log.info("retention purge", extra=counts)

    async def warn_deadlines(self) -> None:
        """Owners hear about İYS uploads whose legal deadline is less than a business day off."""
        for tenant_id, count in (await self.iys_risk()).items():
            await self.alerts.campaign_event(tenant_id, None, "iys_deadline", str(count))

    async def checkpoint(self) -> None:
        if self.master is not None:
            await audit.checkpoint(self.db, self.master)
