"""Timers (APScheduler drives timers only; the tables are the truth and jobs are rebuilt from
them at start): campaigns due at send_at, the vault auto-lock sweep, the daily retention purge.

Across processes sharing a PostgreSQL database every timer but the lock sweep (each process
holds its own keys) runs once per due time: interval timers fire at the same instants
everywhere and the claim of izinli.timer_runs picks one process per due time. A campaign due
at send_at is set in every process (the start is announced on the bus) and started by the
one whose conditional transition scheduled → running changes the row."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from campaigns import audiences, service
from crypto.vault import Keyring
from izinli.timer_runs import ClusterOnce
from optout import audit, retention, subject_deadlines
from optout.retention import RetentionPolicy
from store.bus import Bus
from store.engine import Database
from store.faults import is_unavailable

log = logging.getLogger(__name__)
LOCK_SWEEP_SECONDS = 30
FOLD_SECONDS = 5  # counters: moves not folded yet are read by every count
ERASURE_SECONDS = 60
HOUR = 3600
DAY = 86400
# Interval timers count from here, so every process fires them at the same instants.
ALIGNED = datetime(2000, 1, 1, tzinfo=UTC)
DUE_TOPIC = "campaign.due"  # bus: {"id", "send_at"} of a campaign that became scheduled
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
                 iys_pull=None, iys_pull_minutes: float = 15, master=None, iys_risk=None,
                 alerts=None, erasures=None, audit_journal=None, bus: Bus | None = None):
        self.db, self.keyring, self.policy, self.master = db, keyring, policy, master
        self.audit_journal = audit_journal  # checkpoints are also appended there
        self.iys_risk, self.alerts, self.erasures = iys_risk, alerts, erasures
        self.iys_pull, self.iys_pull_minutes = iys_pull, iys_pull_minutes
        self.bus = bus  # campaigns that become scheduled are announced to every process
        self.once = ClusterOnce(db)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._folder: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()
        self.due_started = self.due_elsewhere = 0  # scheduled campaigns this process tried

    async def start(self) -> None:
        # Per process: each process holds its own unlocked keys.
        self.scheduler.add_job(guarded(self.sweep_locks), "interval",
                               seconds=LOCK_SWEEP_SECONDS, id="lock-sweep", replace_existing=True)
        self._folder = asyncio.get_running_loop().create_task(self._fold_counts())
        self.scheduler.add_job(guarded(self.once.wrap("retention", DAY, self.purge)), "cron",
                               hour=0, minute=30, id="retention", replace_existing=True,
                               misfire_grace_time=None)
        self._every("audit-checkpoint", HOUR, self.checkpoint)
        if self.erasures is not None:
            # Erasure requests made while locked complete soon after the next unlock.
            self._every("erasures", ERASURE_SECONDS, self.erasures)
        if self.iys_pull is not None:
            # Refusals made in İYS block sends as soon as they are pulled (at least hourly).
            self._every("iys-pull", self.iys_pull_minutes * 60, self.iys_pull)
        if self.iys_risk is not None and self.alerts is not None:
            self._every("iys-deadlines", HOUR, self.warn_deadlines)
        if self.alerts is not None:  # KVKK requests 5 days from their 30-day deadline
            self._every("kvkk-deadlines", HOUR, functools.partial(
                subject_deadlines.warn_deadlines, self.db, self.alerts))
        if self.bus is not None:
            self.bus.subscribe(DUE_TOPIC, self._due_announced)
            self.bus.on_reconnect(self._rebuild_due)  # announcements missed while away
        await self._rebuild_due()
        self.scheduler.start()

    def _every(self, job: str, seconds: float, work) -> None:
        """A cluster-wide interval timer: due at multiples of `seconds` since ALIGNED, run by
        one process per due time."""
        self.scheduler.add_job(guarded(self.once.wrap(job, seconds, work)), "interval",
                               seconds=seconds, start_date=ALIGNED, id=job,
                               replace_existing=True, max_instances=1)

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
        """The web layer's hook after a start or resume; an unschedulable row is failed. The
        other processes are told, so the start happens even if this process is gone by then."""
        if not self._schedule(campaign_id, send_at):
            self._spawn(self._fail_unschedulable([campaign_id]))
        elif self.bus is not None:
            self._spawn(self.bus.announce(DUE_TOPIC, json.dumps(
                {"id": campaign_id, "send_at": send_at})))

    def _due_announced(self, payload: str) -> None:
        """Another process (or this one) set a campaign's timer: set it here too (a web-only
        process announces without setting one). Failing an unschedulable one is conditional,
        so every process may try."""
        try:
            due = json.loads(payload)
            campaign_id, send_at = str(due["id"]), due["send_at"]
        except (ValueError, KeyError, TypeError):
            log.error("bad campaign due notice")
            return
        if not self._schedule(campaign_id, send_at):
            self._spawn(self._fail_unschedulable([campaign_id]))

    def _spawn(self, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("timer task failed", extra={"error": type(task.exception()).__name__})

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
        """Every process holding the timer tries; the conditional transition lets one start
        the campaign (and write its audit entry), the others find it started."""
        try:
            async with self.db.begin() as conn:
                tenant_id = await service.start_due(conn, campaign_id)
                if tenant_id is not None:
                    await audit.record(conn, tenant_id, "system", "campaign.due",
                                       campaign_id=campaign_id)
        except Exception as exc:
            if is_unavailable(exc):  # a one-shot timer: lost until a restart if not set again
                self._schedule(campaign_id, time.time() + DUE_RETRY_SECONDS)
            raise
        if tenant_id is None:
            self.due_elsewhere += 1
            log.info("scheduled campaign not started here", extra={"campaign_id": campaign_id})
            return
        self.due_started += 1
        log.info("scheduled campaign started", extra={"campaign_id": campaign_id})

    async def sweep_locks(self) -> None:
        for tenant_id in self.keyring.lock_expired():
            log.info("vault auto-locked", extra={"tenant_id": tenant_id})

    async def _fold_counts(self) -> None:
        """Campaign counters and list sizes: folds waiting moves every few seconds (a loop,
        not a job: a fold after a million-recipient start can outlast the interval), at the
        same instants in every process, by one of them each time."""
        while True:
            try:
                await self.once.run("fold", FOLD_SECONDS, audiences.fold_counters, self.db)
            except Exception as exc:  # the type only: driver texts can quote SQL parameters
                log.error("folding campaign counters failed",
                          extra={"error": type(exc).__name__})
            await asyncio.sleep(_until_next(FOLD_SECONDS))

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


def _until_next(period: float) -> float:
    """Seconds to the next multiple of `period`: the instant every process folds."""
    return period - time.time() % period
