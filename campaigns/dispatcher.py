"""The dispatcher: one task per sending line with running campaigns, on the process holding
the line's lease (campaigns.leases; one sender per line however many processes run). Each
round it claims about half a second of work — moved to `sending` and committed in one
statement that refuses recipients suppressed at that instant —, gates it in one query,
re-checks fresh revocations and its lease before every send, paces with the line's throttle,
sends through the channel and records the results in one transaction under the lease. A line
whose rounds are full (`max_batch`) overlaps two of them (see `Dispatcher.pump`)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from campaigns import leases, outbox, ports, service, window
from campaigns.leases import Lease
from campaigns.lines import active_lines, set_line_state
from campaigns.outbox import Claimed, Fence, Result
from campaigns.ports import (
    LINE_PAUSE_CODES,
    Alerts,
    BatchChannel,
    Blocked,
    Channel,
    Line,
    MaybeSent,
    NoAlerts,
    OptedOut,
    OutboundMessage,
    PermanentFailure,
    ProviderTemplate,
    RateLimited,
    Sent,
    Unavailable,
    provider_limits,
    reason_of,
)
from campaigns.render import Template, compile_template, compose, render
from campaigns.throttle import (
    DAY,
    LineThrottle,
    frequency_capped,
    quiet_hours_wait,
)
from crypto.blind import provider_reference
from crypto.errors import VaultLockedError
from crypto.service import FieldCrypto
from optout import facts, suppression
from optout.gate import FREQUENCY_CAP, QUIET_HOURS, SUPPRESSED, Purpose, decide
from optout.ledger import consent_type_for
from optout.tenants import TenantDirectory, TenantProfile
from optout.watch import RevocationWatch
from store.engine import Database
from store.faults import is_unavailable, unavailable_kind
from store.tables import campaigns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchSettings:
    tick_seconds: float = 0.2
    batch_seconds: float = 0.5
    max_batch: int = 2000
    max_in_flight: int = 64
    spam_first_sends: int = 200
    spam_optout_rate: float = 0.02
    max_consecutive_errors: int = 50
    # A message the provider could not take (5xx, unreachable) is tried this many times in
    # all, the line waiting provider_backoff_seconds, then twice that … (at most
    # provider_backoff_max_seconds) between waves of errors, before it is `failed`.
    provider_attempts: int = 5
    provider_backoff_seconds: float = 2.0
    provider_backoff_max_seconds: float = 30.0
    # One sender per line (campaigns.leases): a lease lives lease_seconds by the database's
    # clock and is renewed every lease_renew_seconds; a process stops sending lease_margin
    # seconds before its own estimate of the expiry. A dead holder's line is taken over
    # within lease_seconds plus a tick.
    lease_seconds: float = 5.0
    lease_renew_seconds: float = 1.0
    lease_margin_seconds: float = 1.0
    # Free text goes only to people whose 24 h window stays open this long after planning
    # (a round's sends may wait behind the throttle): a closed one would fail with 131047.
    window_margin_seconds: float = 60.0


# Provider-error retries remembered at once; past it the oldest are forgotten (they then get a
# few more tries). In memory, not in the outbox: see Dispatcher._retry_later.
MAX_TRACKED_RETRIES = 100_000
# A round's planning (decrypt, render) gives the event loop a turn every YIELD_EVERY rows: the
# previous round's result write and the next claim, waiting on the database, move on meanwhile
# instead of holding SQLite's write lock until a whole round is rendered.
YIELD_EVERY = 256
HEAD_START_SECONDS = 0.25  # the longest a round waits for the next claim's write (_head_start)

@dataclass
class _CampaignInfo:
    tenant_id: str
    purpose: str
    template: Template
    channel_template: tuple[str, str, tuple[Template, ...]] | None = None
    outside_window: str | None = None  # campaigns.window: "template" falls back to it
    line_id: str = ""


@dataclass
class _Round:
    """One claimed batch on its way through gate, sends and recording."""
    results: list[Result] = field(default_factory=list)
    # (tenant, blind index, address, suppression kind) the provider told us about
    stops: list[tuple[str, bytes, str, str]] = field(default_factory=list)
    pause_line: str | None = None
    daily_limit: set[str] = field(default_factory=set)  # campaigns held by the 24 h cap


@dataclass
class _Front:
    """A claimed round and what it was claimed under."""
    line: Line
    lease: Lease
    rows: list  # the line's running campaigns (service.active rows)
    running: list[str]  # those that could send when claimed
    claimed: list[Claimed]
    ahead: bool = False  # claimed while the previous round was sending


class Dispatcher:
    def __init__(self, db: Database, fields: FieldCrypto, directory: TenantDirectory,
                 channels: dict[str, Channel], watch: RevocationWatch,
                 settings: DispatchSettings | None = None, alerts: Alerts | None = None):
        self.db, self.fields, self.directory = db, fields, directory
        self.channels, self.watch = channels, watch
        self.alerts = alerts or NoAlerts()
        self._alerting: set[asyncio.Task] = set()
        self.settings = settings or DispatchSettings()
        self._tasks: dict[str, asyncio.Task] = {}
        self._throttles: dict[str, tuple[tuple, LineThrottle]] = {}
        self._reseed: set[str] = set()  # lines whose throttle was rebuilt: cap read again
        self._campaigns: dict[str, _CampaignInfo] = {}
        self._errors: dict[str, int] = defaultdict(int)
        # A campaign's first spam_first_sends sends, once there are that many (they stay
        # those): the spam guard then reads only the suppressions of those people.
        self._firsts: dict[str, list[outbox.FirstSend]] = {}
        self._attempts: dict[int, int] = {}  # outbox row → provider errors so far
        # Rows each line's live round has marked `sending` and still answers for, and lines
        # whose last round ended without settling its rows (an outage, a bug): those lines
        # reconcile before their next round.
        self._held: dict[str, set[int]] = {}
        self._unsettled: set[str] = set()
        # A line running flat out works two rounds at once (see pump): the next round's claim
        # taken while this round sends, and this round's results being written while the next
        # one is planned.
        self._ahead: dict[str, asyncio.Task] = {}
        self._behind: dict[str, asyncio.Task] = {}
        self._holder = leases.new_holder()
        self._leases: dict[str, Lease] = {}
        self._renewer: asyncio.Task | None = None
        self._elsewhere: dict[str, float] = {}  # line id -> when to try to take it again
        # Ends the renewer between two renewals: cancelling it inside a database call could
        # leave that connection behind unreturned.
        self._stopping = asyncio.Event()
        # Which of these tenants still have inbound kept sealed while locked (a STOP, say):
        # they send nothing until it is applied (optout.backlog.InboundBacklog.held).
        self.held_tenants: Callable[[set[str]], Awaitable[set[str]]] | None = None

    async def _held_back(self, tenant_ids: set[str]) -> set[str]:
        if self.held_tenants is None or not tenant_ids:
            return set()
        return await self.held_tenants(tenant_ids)

    async def run(self) -> None:
        """Supervises line tasks until cancelled."""
        database_down = False
        while True:
            try:
                await self.tick()
                database_down = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep dispatching; the type is enough to investigate
                if not is_unavailable(exc):
                    log.error("dispatcher tick failed", extra={"error": type(exc).__name__})
                elif not database_down:  # once per outage, not five times a second
                    database_down = True
                    log.warning("dispatcher waits for the database",
                                extra={"kind": unavailable_kind(exc)})
            await asyncio.sleep(self.settings.tick_seconds)

    async def stop(self) -> None:
        """Ends the line tasks, then gives the leases back so a peer takes the lines at once
        instead of after their expiry."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for channel in self.channels.values():
            await channel.flush()
        if self._renewer is not None:
            self._stopping.set()
            await asyncio.gather(self._renewer, return_exceptions=True)
        await self._release(list(self._leases))

    async def _release(self, line_ids: list[str]) -> None:
        for line_id in line_ids:
            lease = self._leases.pop(line_id)
            lease.lost = True
            try:
                async with self.db.begin() as conn:
                    await leases.release(conn, line_id, lease.token)
            except Exception as exc:  # it expires by itself a few seconds later
                log.warning("line lease not released", extra={
                    "line_id": line_id, "error": type(exc).__name__})

    async def tick(self) -> None:
        async with self.db.connect() as conn:
            rows = await service.active(conn)
        unlocked = [r for r in rows if r.state == "waiting_unlock"
                    and self.fields.keyring.is_unlocked(r.tenant_id)]
        # Inbound kept sealed while locked is applied before a campaign leaves waiting_unlock.
        held = await self._held_back({r.tenant_id for r in unlocked})
        unlocked = [r.id for r in unlocked if r.tenant_id not in held]
        if unlocked:
            async with self.db.begin() as conn:
                await service.set_state(conn, unlocked, "running", None,
                                        only_from=("waiting_unlock",))
        # A line with nothing left to send is given back: any process may take it next time.
        idle = [line_id for line_id in self._leases if line_id not in {r.line_id for r in rows}
                and (line_id not in self._tasks or self._tasks[line_id].done())]
        await self._release(idle)
        self._forget(rows)
        now = time.monotonic()
        for line_id in {r.line_id for r in rows if r.state == "running" or r.id in unlocked}:
            if self._elsewhere.get(line_id, 0.0) > now:
                continue  # another process holds it: looked at again once it might lapse
            task = self._tasks.get(line_id)
            if task is None or task.done():
                self._tasks[line_id] = asyncio.create_task(self._drain(line_id))

    def _forget(self, rows) -> None:
        """What is kept per campaign and per line follows the active campaigns (`rows`), so
        memory does not grow with the campaigns and lines a process ever served: a campaign's
        decrypted template and error run are dropped once it is no longer running or waiting,
        or its tenant is locked (nothing decrypted is kept after a lock); a line's throttle
        once the line is given back (whoever takes it next seeds a new one from the outbox).
        A line's round in progress keeps what it uses until it ends."""
        busy = {line_id for line_id, task in self._tasks.items() if not task.done()}
        keep = {r.id for r in rows if self.fields.keyring.is_unlocked(r.tenant_id)}
        for campaign_id, info in list(self._campaigns.items()):
            if campaign_id not in keep and info.line_id not in busy:
                del self._campaigns[campaign_id]
        for campaign_id in [c for c in self._errors if c not in keep]:
            del self._errors[campaign_id]
        for campaign_id in [c for c in self._firsts if c not in keep]:
            del self._firsts[campaign_id]
        for line_id in [i for i in self._throttles if i not in self._leases and i not in busy]:
            del self._throttles[line_id]
            self._reseed.discard(line_id)
        lines = {r.line_id for r in rows}
        for line_id in [i for i in self._elsewhere if i not in lines]:
            del self._elsewhere[line_id]
        for line_id in [i for i, task in self._tasks.items() if task.done()]:
            del self._tasks[line_id]

    async def _drain(self, line_id: str) -> None:
        """Rounds until the line has nothing to do. A database outage does not end it: the line
        waits with back-off, reconciles its unsettled rows and carries on, no restart needed."""
        delays = _backoff()
        while True:
            try:
                if line_id in self._unsettled:
                    await self._reconcile(line_id)
                if not await self.pump(line_id):
                    return
                delays = _backoff()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._unsettled.add(line_id)
                if isinstance(exc, VaultLockedError):  # locked mid-round: rows back to pending
                    log.info("line waits for an unlock", extra={"line_id": line_id})
                    return
                if not is_unavailable(exc):  # a bug: the next tick starts the line again
                    log.error("line dispatch failed", extra={"line_id": line_id,
                                                             "error": type(exc).__name__})
                    return
                log.warning("line waits for the database", extra={
                    "line_id": line_id, "kind": unavailable_kind(exc)})
                await asyncio.sleep(next(delays))

    async def _reconcile(self, line_id: str) -> None:
        """Rows of the line left `sending` that no live round holds (a round broken off by a
        bug, or by anything that bypassed its own settling) become `unknown`: they may have
        reached the provider. Before this, only a restart did it (recover_in_flight)."""
        lease = self._leases.get(line_id)
        if lease is not None:  # else whoever takes the line next recovers them
            async with self.db.begin() as conn:
                count = await outbox.recover_in_flight(conn, line_id,
                                                       self._held.get(line_id, ()),
                                                       fence=Fence(line_id, lease.token))
        else:
            count = 0
        self._unsettled.discard(line_id)
        if count:
            log.warning("messages interrupted on a line marked unknown",
                        extra={"line_id": line_id, "count": count})

    async def pump(self, line_id: str) -> bool:
        """One round for a line; False when there is nothing to do right now.

        A line running flat out (its last claim took a whole `max_batch`) overlaps two rounds,
        so the database and the process work at once: the next round's claim is taken while
        this round sends, and this round's results are written while the next round is
        planned. What makes a send safe does not move: every claim is committed `sending`
        before its provider call; before a claim taken ahead sends, the previous round's
        results and auto-pause checks are committed and its campaigns are read again (an
        owner's pause or cancel in between sends nothing more); the frequency cap is read
        only after the previous round's sends are written. A throttled line (every real
        provider line below max_batch per round) runs one round at a time, as before."""
        try:
            ahead = self._ahead.pop(line_id, None)
            front = await ahead if ahead is not None else await self._front(line_id)
            if isinstance(front, bool):
                await self._settle(line_id)
                return front
            if not front.claimed:
                await self._settle(line_id)
                await self._drained(front)
                return False
            await self._round(front)
            return True
        except BaseException as exc:
            await self._abandon(line_id, cancelled=not isinstance(exc, Exception))
            raise

    async def _front(self, line_id: str, claiming: asyncio.Event | None = None
                     ) -> _Front | bool:
        """The checks before a round and its claim; a bool when there is nothing to claim
        (True: look again at once). `claiming` is set once the claim's write transaction is
        open."""
        async with self.db.connect() as conn:
            lines = await active_lines(conn, [line_id])
            rows = [r for r in await service.active(conn, line_id) if r.state == "running"]
        if not lines or lines[0].state != "active" or not rows:
            return False
        line = lines[0]
        lease = await self._hold(line)
        if lease is None:
            # Another process sends on this line. Trying again every tick cost each process
            # two reads and a failed take-over per busy line five times a second; a quarter
            # of the lease's life keeps a dead holder's line taken over well within 10 s.
            self._elsewhere[line_id] = time.monotonic() + self.settings.lease_seconds / 4
            return False
        running = await self._sendable(line, rows)
        if not running:
            return False
        throttle = self._throttle(line)
        if line.id in self._reseed:
            async with self.db.connect() as conn:
                await self._seed(conn, line, throttle)
        if throttle.rolling_cap.next_free_at(time.monotonic()) > time.monotonic():
            return False  # the 24 h unique-recipient cap is full: nothing can go out yet
        if (paused := throttle.paused_for(time.monotonic())) > 0:
            # A provider back-off: nothing is claimed or marked `sending` meanwhile, and the
            # campaigns are looked at again (an owner's pause or cancel applies) every second.
            await asyncio.sleep(min(paused, 1.0))
            return True
        limit = max(1, min(self.settings.max_batch,
                           int(throttle.effective_rate(time.monotonic())
                               * self.settings.batch_seconds)))
        claimed = await self._claim(line, lease, running, rows, limit, claiming)
        self._held.setdefault(line.id, set()).update(row.id for row in claimed)
        return _Front(line, lease, rows, running, claimed)

    async def _drained(self, front: _Front) -> None:
        """Nothing left to claim: campaigns with nothing in flight either are completed."""
        line_id = front.line.id
        async with self.db.begin() as conn:
            # Nothing of this line is in flight here now: a row still `sending` was left by a
            # holder whose claim committed as it lost the line (it never sends it).
            await outbox.recover_in_flight(conn, line_id, self._held.get(line_id, ()),
                                           fence=Fence(line_id, front.lease.token))
            done = await outbox.finish_drained(conn, front.running)
        tenant_of = {r.id: r.tenant_id for r in front.rows}
        for campaign_id in done:
            log.info("campaign completed", extra={"campaign_id": campaign_id})
            self._alert(tenant_of[campaign_id], campaign_id, "completed")

    async def _settle(self, line_id: str) -> None:
        """Waits for the line's previous round to be written (and raises what broke it)."""
        behind = self._behind.pop(line_id, None)
        if behind is not None:
            await behind

    async def _abandon(self, line_id: str, cancelled: bool) -> None:
        """The line's round broke off: what runs beside it ends too. Cancelled (a stopping
        dispatcher), it is cancelled as a round would be; otherwise the previous round's
        results are still written, and rows claimed ahead go back to pending."""
        ahead, behind = self._ahead.pop(line_id, None), self._behind.pop(line_id, None)
        tasks = [t for t in (ahead, behind) if t is not None]
        if cancelled:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._held.pop(line_id, None)  # as a cancelled round's: recovered as unknown
            return
        if ahead is not None:
            front = (await asyncio.gather(ahead, return_exceptions=True))[0]
            if isinstance(front, _Front) and front.claimed:
                await self._give_back(front, _Round())
        if behind is not None:
            (error,) = await asyncio.gather(behind, return_exceptions=True)
            if isinstance(error, BaseException):
                log.error("round results not written", extra={
                    "line_id": line_id, "error": type(error).__name__})

    async def _give_back(self, front: _Front, work: _Round) -> None:
        """A claimed round that never reached the provider: its rows without a result go
        back to pending (not `unknown`), written with the results it has."""
        answered = {r.id for r in work.results}
        work.results += [Result(r.id, "pending") for r in front.claimed
                         if r.id not in answered]
        try:
            await self._until_stored(lambda: self._record(front.line, front.lease, work))
        finally:
            self._let_go(front.line.id, front.claimed)

    def _let_go(self, line_id: str, claimed: list[Claimed]) -> None:
        held = self._held.get(line_id)
        if held is not None:
            held.difference_update(row.id for row in claimed)
            if not held:
                del self._held[line_id]

    async def _hold(self, line: Line) -> Lease | None:
        """This process's lease on the line, taken when the line has none or its holder's
        expired (a dead process): the taker first turns rows the last holder left `sending`
        into `unknown`, and seeds the line's throttle from the outbox. None while another
        process holds the line."""
        lease = self._leases.get(line.id)
        if lease is not None and not lease.lost:
            return lease
        s, started = self.settings, time.monotonic()
        self._throttles.pop(line.id, None)
        throttle = self._throttle(line)
        async with self.db.begin() as conn:
            token = await leases.acquire(conn, line.id, self._holder, s.lease_seconds)
            if token is None:
                return None
            fence = Fence(line.id, token)
            count = await outbox.recover_in_flight(conn, line.id, fence=fence)
            await self._seed(conn, line, throttle)
        lease = self._leases[line.id] = Lease(
            line.id, token, started + s.lease_seconds - s.lease_margin_seconds,
            taken_at=time.monotonic())  # after the acquire's commit
        log.info("line lease taken", extra={"line_id": line.id, "token": token})
        if count:
            log.warning("messages a previous holder left in flight marked unknown",
                        extra={"line_id": line.id, "count": count})
        if self._renewer is None or self._renewer.done():
            self._stopping.clear()
            self._renewer = asyncio.create_task(self._renew())
        return lease

    async def _renew(self) -> None:
        """Renews every lease this process holds, about every second, in one statement; a
        lease another process took over is dropped and its line stops sending here."""
        s, failing = self.settings, False
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), s.lease_renew_seconds)
            if self._stopping.is_set() or not self._leases:
                continue
            started = time.monotonic()
            try:
                async with self.db.begin() as conn:
                    current = await leases.renew(conn, self._holder, s.lease_seconds)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the leases run out by themselves; sends stop before
                if not failing:
                    log.warning("line leases not renewed", extra={"error": type(exc).__name__})
                failing = True
                continue
            for line_id, lease in list(self._leases.items()):
                if lease.taken_at >= started:
                    continue  # committed after this renewal began: it may not have seen it
                if current.get(line_id) == lease.token:
                    lease.valid_until = started + s.lease_seconds - s.lease_margin_seconds
                else:
                    lease.lost = True
                    del self._leases[line_id]
                    log.warning("line lease lost", extra={"line_id": line_id})

    async def _claim(self, line: Line, lease: Lease, running: list[str], rows,
                     limit: int, claiming: asyncio.Event | None = None) -> list[Claimed]:
        """Claims the round's rows (committed `sending` before any provider call). When the
        commit's answer is lost with the database nothing is sent: the rows, found by the
        claim's token, return to pending once it is back."""
        token = secrets.randbits(62)
        commercial = {r.id for r in rows if r.purpose == "commercial"}
        fence, scope = Fence(line.id, lease.token), consent_type_for(line.channel)
        try:
            async with self.db.begin() as conn:
                if claiming is not None:
                    claiming.set()
                if self.db.dialect == "postgresql":
                    return await outbox.claim(conn, fence, running, commercial, scope, limit,
                                              token)
                ids = await outbox.mark_claimed(conn, fence, running, limit, token)
        except Exception as exc:
            if is_unavailable(exc):
                await self._until_stored(lambda: self._unclaim(running, token))
            raise
        if not ids:  # nothing claimed: no read
            return []
        # SQLite: the rows are read once the write lock is given back (outbox.mark_claimed).
        # They are `sending` and nobody holds them yet: whatever stops the read, they go back
        # to pending (found by the claim's token), as a rolled-back claim would leave them.
        try:
            async with self.db.connect() as conn:
                return await outbox.claimed(conn, ids, running, commercial, scope)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # one try: a stopping dispatcher must end
                await asyncio.shield(self._unclaim(running, token))
            raise
        except Exception:
            await self._until_stored(lambda: self._unclaim(running, token))
            raise

    async def _unclaim(self, campaign_ids: list[str], token: int) -> None:
        async with self.db.begin() as conn:
            await outbox.unclaim(conn, campaign_ids, token)

    async def _sendable(self, line: Line, rows) -> list[str]:
        """Running campaigns that can send now; others wait with a stated reason."""
        held = await self._held_back({r.tenant_id for r in rows})  # sealed inbound not applied
        locked = [r.id for r in rows if not self.fields.keyring.is_unlocked(r.tenant_id)
                  or r.tenant_id in held]
        quiet = []
        async with self.db.connect() as conn:
            for r in rows:
                if r.id not in locked and r.purpose == "commercial":
                    profile = await self.directory.profile(conn, r.tenant_id)
                    if _quiet(profile):
                        quiet.append(r.id)
        ready = [r.id for r in rows if r.id not in locked and r.id not in quiet]
        # Only what changes is written: this runs every round. A ready campaign's reason says
        # why its line is slow or waiting (provider back-off), and is cleared when it is not.
        reason = {r.id: r.state_reason for r in rows}
        quiet = [c for c in quiet if reason[c] != QUIET_HOURS]
        slow = self._throttle(line).condition(time.monotonic())
        changed = [c for c in ready if reason[c] != slow]
        if locked or quiet or changed:
            async with self.db.begin() as conn:
                await service.set_state(conn, locked, "waiting_unlock", "vault is locked",
                                        only_from=("running",))
                await service.set_state(conn, quiet, "running", QUIET_HOURS,
                                        only_from=("running",))
                await service.set_state(conn, changed, "running", slow, only_from=("running",))
        tenant_of = {r.id: r.tenant_id for r in rows}
        for campaign_id in locked:
            log.warning("campaign waits for an unlock", extra={"campaign_id": campaign_id})
            self._alert(tenant_of[campaign_id], campaign_id, "waiting_unlock")
        return ready

    def _throttle(self, line: Line) -> LineThrottle:
        limits = provider_limits(line)  # the channel's (bot.registry declares them)
        key = (line.rate_per_second, limits.get("daily_unique_limit"))
        found, throttle = self._throttles.get(line.id, (None, None))
        if throttle is None or found != key:
            s = self.settings
            throttle = LineThrottle(line.rate_per_second, now=time.monotonic(),
                                    # A tenth of a second at least: 0 would mean no back-off.
                                    backoff_base=max(0.1, s.provider_backoff_seconds),
                                    backoff_max=max(0.1, s.provider_backoff_max_seconds),
                                    **limits)
            self._throttles[line.id] = (key, throttle)
            if found is not None:
                # A new rate or tier (an owner's edit, Meta's quality update) mid-day: the new
                # cap still counts who got a message on the line today.
                self._reseed.add(line.id)
        return throttle

    async def _seed(self, conn, line: Line, throttle: LineThrottle) -> None:
        """The 24 h unique-recipient cap holds across processes, restarts and tier changes:
        who was sent a message on this line in the last day, with when, read from the
        outbox."""
        self._reseed.discard(line.id)
        if throttle.rolling_cap.limit is None:
            return
        seen = await outbox.recent_recipients(conn, line.id, time.time() - DAY)
        offset = time.monotonic() - time.time()
        throttle.rolling_cap.seed((index, at + offset) for index, at in seen)

    async def _round(self, front: _Front) -> None:
        line, lease, claimed = front.line, front.lease, front.claimed
        work = _Round()
        try:
            plans = await self._plan(line, claimed, work)
            await self._settle(line.id)  # the previous round written, its guard run
            if front.ahead:
                plans = await self._still_sendable(line, plans, work)
        except Exception:
            await self._give_back(front, work)  # the skips already decided are kept
            raise
        if len(claimed) >= self.settings.max_batch:  # flat out: the next claim starts now
            claiming = asyncio.Event()
            ahead = asyncio.create_task(self._front_ahead(line.id, claiming))
            self._ahead[line.id] = ahead
            await _head_start(ahead, claiming)
        interrupted = await self._send_settled(line, lease, plans, work)
        back = self._back(front, work, interrupted)
        if line.id in self._ahead:
            self._behind[line.id] = asyncio.create_task(back)
        else:
            await back

    async def _front_ahead(self, line_id: str, claiming: asyncio.Event) -> _Front | bool:
        try:
            front = await self._front(line_id, claiming)
        finally:
            claiming.set()
        if isinstance(front, _Front):
            front.ahead = True
        return front

    async def _back(self, front: _Front, work: _Round, interrupted: Exception | None) -> None:
        """The round's results, written once the database takes them (a delivered message
        ends `sent`, never stuck `sending`), then the auto-pause checks."""
        line, lease, claimed = front.line, front.lease, front.claimed
        try:
            await self._until_stored(self.channels[line.channel].flush)
            await self._until_stored(lambda: self._record(line, lease, work))
        finally:
            self._let_go(line.id, claimed)
        if interrupted is not None:
            raise interrupted
        acknowledged = {r.id for r in front.rows if r.optout_acknowledged}
        await self._guard({row.campaign_id for row in claimed} - acknowledged,
                          {row.campaign_id for row in claimed} & acknowledged,
                          {row.campaign_id: row.tenant_id for row in claimed})

    async def _still_sendable(self, line: Line, plans, work: _Round):
        """Plans of a claim taken while the previous round sent, less those that may no longer
        go: their campaign is not running now (paused by its owner or by the previous round's
        checks, cancelled), or the provider asked the line to back off meanwhile. Those rows
        go back to pending."""
        async with self.db.connect() as conn:
            running = {r.id for r in await service.active(conn, line.id)
                       if r.state == "running"}
        if self._throttle(line).paused_for(time.monotonic()) > 0:
            running = set()
        work.results += [Result(p[0].id, "pending") for p in plans
                         if p[0].campaign_id not in running]
        return [p for p in plans if p[0].campaign_id in running]

    async def _send_settled(self, line: Line, lease: Lease, plans,
                            work: _Round) -> Exception | None:
        """Sends the plans; a row the sends left without an answer (they broke off) is
        `unknown`, since it may have reached the provider. Returns what broke them off."""
        interrupted = None
        try:
            await self._send_all(line, lease, plans, work)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("sending broke off", extra={"line_id": line.id,
                                                  "error": type(exc).__name__})
            interrupted = exc
        answered = {r.id for r in work.results}
        work.results += [Result(p[0].id, "unknown", "interrupted") for p in plans
                         if p[0].id not in answered]
        return interrupted

    async def _until_stored(self, write) -> None:
        """Calls `write` until the database takes it, waiting with back-off while it is
        unavailable; any other error is raised."""
        delays = _backoff()
        while True:
            try:
                return await write()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.warning("round results wait for the database",
                            extra={"kind": unavailable_kind(exc)})
                await asyncio.sleep(next(delays))

    async def _plan(self, line: Line, claimed: list[Claimed], work: _Round):
        """Gate, frequency cap, decrypt and render: [(row, address, text)] to send."""
        consent_type = consent_type_for(line.channel)
        plans = []
        by_tenant: dict[str, list[Claimed]] = defaultdict(list)
        for row in claimed:
            by_tenant[row.tenant_id].append(row)
        for tenant_id, rows in by_tenant.items():
            plans += await self._plan_tenant(tenant_id, rows, consent_type, work, line)
        return plans

    async def _plan_tenant(self, tenant_id: str, rows: list[Claimed], consent_type: str,
                           work: _Round, line: Line):
        infos = {c: await self._campaign(c) for c in {r.campaign_id for r in rows}}
        commercial = [r.contact_id for r in rows if infos[r.campaign_id].purpose == "commercial"]
        async with self.db.connect() as conn:  # one connection, never a second one inside
            profile = await self.directory.profile(conn, tenant_id)
            # The frequency cap counts the previous round's sends: read after they are written.
            wait = bool(profile.frequency_cap and commercial and line.id in self._behind)
            if not wait:
                found, counts, inside = await self._plan_facts(conn, profile, line, rows,
                                                               infos, commercial, consent_type)
        if wait:
            await self._settle(line.id)
            async with self.db.connect() as conn:
                found, counts, inside = await self._plan_facts(conn, profile, line, rows,
                                                               infos, commercial, consent_type)
        cap = profile.frequency_cap
        allowed, texts = [], set()
        purposes = {c: Purpose(info.purpose) for c, info in infos.items()}
        for row in rows:
            info = infos[row.campaign_id]
            decision = decide(found[row.address_index], purposes[row.campaign_id])
            reason = decision.reason if not decision.allowed else None
            if reason is None and not row.address_sealed:
                reason = "suppressed"  # erased after the outbox was built
            if reason is None and row.refused:
                reason = SUPPRESSED  # refused when claimed, lifted (START) since: still skipped
            if reason is None and info.purpose == "commercial" and cap and frequency_capped(
                    counts.get(row.contact_id, 0), cap):
                reason = FREQUENCY_CAP
            sends = window.TEMPLATE
            if reason is None and inside is not None:
                sends = window.choose(info.channel_template is not None, info.outside_window,
                                      row.address_index in inside)
                if sends is None:  # skipped before any provider call: not a send error
                    reason = window.OUTSIDE_WINDOW
            if reason is None:
                allowed.append(row)
                if sends == window.TEXT:
                    texts.add(row.id)
            else:
                work.results.append(Result(row.id, "skipped", reason))
        return await self._render(profile, allowed, texts)

    async def _plan_facts(self, conn, profile: TenantProfile, line: Line, rows: list[Claimed],
                          infos: dict[str, _CampaignInfo], commercial: list[str],
                          consent_type: str):
        """(gate facts by blind index, commercial sends per contact in the cap's window, who
        is inside their window) for a tenant's rows of the round."""
        found = await facts.gather(conn, profile.id, [r.address_index for r in rows],
                                   consent_type, profile.iys_enabled,
                                   profile.has_merchant_contacts)
        counts = await outbox.sent_recently(
            conn, profile.id, commercial if profile.frequency_cap else [],
            time.time() - profile.frequency_window_days * 86400)
        return found, counts, await self._inside_window(conn, line, rows, infos)

    async def _inside_window(self, conn, line: Line, rows: list[Claimed],
                             infos: dict[str, _CampaignInfo]) -> set[bytes] | None:
        """Who of the batch is inside their 24 h window on the line, in one query; None when
        the line has no window or no campaign of the batch sends free text."""
        seconds = window.window_of(line.channel)
        if seconds is None or not any(
                window.uses_window(i.channel_template is not None, i.outside_window)
                for i in infos.values()):
            return None
        since = time.time() - seconds + self.settings.window_margin_seconds
        return await window.inside(conn, line.id, [r.address_index for r in rows], since)

    async def _render(self, profile: TenantProfile, rows: list[Claimed],
                      texts: set[int] = frozenset()):
        """[(row, address, text, provider template)]: rows in `texts` get free text (inside
        their window) even when the campaign has a template for the others."""
        plans = []
        for start in range(0, len(rows), YIELD_EVERY):
            if start:
                await asyncio.sleep(0)
            plans += await self._render_some(profile, rows[start:start + YIELD_EVERY], texts)
        return plans

    async def _render_some(self, profile: TenantProfile, rows: list[Claimed], texts):
        blobs = []
        for row in rows:
            blobs += [row.address_sealed, row.name_sealed or b"", row.attributes_sealed or b""]
        opened = await self.fields.open_fields(profile.id, [b for b in blobs if b])
        it = iter(opened)
        plans = []
        for row in rows:
            address = next(it).decode()
            name = next(it).decode() if row.name_sealed else ""
            attrs = _json(next(it)) if row.attributes_sealed else {}
            info = self._campaigns[row.campaign_id]
            fields = {**attrs, "name": name, "phone": address}
            text = compose(info.template, fields,
                           commercial=info.purpose == "commercial",
                           sender_name=profile.sender_name,
                           sender_contact=profile.sender_contact, language=profile.language)
            template = None if row.id in texts else _provider_template(info, fields)
            plans.append((row, address, text, template))
        return plans

    async def _campaign(self, campaign_id: str) -> _CampaignInfo:
        info = self._campaigns.get(campaign_id)
        if info is None:
            async with self.db.connect() as conn:
                row = (await conn.execute(sa.select(campaigns).where(
                    campaigns.c.id == campaign_id))).one()
            (template,) = await self.fields.open_fields(row.tenant_id,
                                                        [bytes(row.template_sealed)])
            info = _CampaignInfo(row.tenant_id, row.purpose, compile_template(template.decode()),
                                 _channel_template(row.channel_template), row.outside_window,
                                 row.line_id)
            self._campaigns[campaign_id] = info
        return info

    async def _send_all(self, line: Line, lease: Lease, plans, work: _Round) -> None:
        """Up to max_in_flight sends at once (a real provider answers in tens of ms), paced
        by the line's throttle. A channel that takes batches gets them whole, two in flight
        (one being kept while the next is checked); others get one send per message from
        workers sharing one queue instead of a task per message."""
        channel = self.channels[line.channel]
        in_flight = ports.max_in_flight(line.channel) or self.settings.max_in_flight
        if isinstance(channel, BatchChannel):
            todo = deque(plans)
            await asyncio.gather(*(self._send_batches(channel, line, lease, todo, in_flight,
                                                      work) for _ in range(min(2, len(plans)))))
            return
        queue = iter(plans)
        await asyncio.gather(*(self._send_each(channel, line, lease, queue, work)
                               for _ in range(min(in_flight, len(plans)))))

    async def _send_each(self, channel: Channel, line: Line, lease: Lease, queue,
                         work: _Round) -> None:
        """One worker: the next plan, its throttle wait, its checks, its send."""
        throttle, consent_type = self._throttle(line), consent_type_for(line.channel)
        for row, address, text, template in queue:
            recipient = row.address_index  # throttles key on it, as the outbox does
            while (wait := throttle.wait_time(time.monotonic(), recipient)) > 0:
                await asyncio.sleep(wait)
            capped = self._capped(line, template)
            if (refused := self._refusal(lease, throttle, row, capped, consent_type,
                                         time.monotonic(), work)) is not None:
                work.results.append(refused)
                continue
            throttle.sent(recipient, time.monotonic(), capped)
            outcome = await self._send_one(channel, line, address,
                                           OutboundMessage(text, str(row.id), template,
                                                           row.address_index))
            work.results.append(self._result(throttle, row, address, outcome, work))

    async def _send_batches(self, channel: BatchChannel, line: Line, lease: Lease,
                            todo: deque, size: int, work: _Round) -> None:
        """Takes from `todo` as many plans as the throttle allows at this instant (at most
        `size`), checks each exactly as a single send is checked and sends them in one call:
        the checks and the call have no await between them."""
        throttle = self._throttle(line)
        while todo:
            now = time.monotonic()
            batch, wait = self._admit(line, lease, throttle, todo, size, now, work)
            if not batch:
                if todo:  # a back-off, an empty bucket or a person's interval
                    await asyncio.sleep(max(wait, throttle.wait_time(now), 0.001))
                continue
            throttle.took(len(batch), now)
            outcomes = await self._send_batch(channel, line, [
                (address, OutboundMessage(text, str(row.id), template, row.address_index))
                for row, address, text, template in batch])
            work.results += [self._result(throttle, plan[0], plan[1], outcome, work)
                             for plan, outcome in zip(batch, outcomes, strict=True)]

    def _admit(self, line: Line, lease: Lease, throttle: LineThrottle, todo: deque,
               size: int, now: float, work: _Round) -> tuple[list, float]:
        """(the plans that start now, how long the next one must wait for its recipient's
        interval); refused plans get their result here."""
        batch, room = [], min(size, throttle.allowance(now))
        consent_type = consent_type_for(line.channel)
        while todo and len(batch) < room:
            row, _, _, template = plan = todo[0]
            if (wait := throttle.pair_wait(row.address_index, now)) > 0:
                return batch, wait
            todo.popleft()
            capped = self._capped(line, template)
            if (refused := self._refusal(lease, throttle, row, capped, consent_type, now,
                                         work)) is not None:
                work.results.append(refused)
                continue
            throttle.starting(row.address_index, now, capped)
            batch.append(plan)
        return batch, 0.0

    def _capped(self, line: Line, template) -> bool:
        """Free text on a window channel goes only inside the person's window, which the
        24 h unique-recipient limit (WhatsApp tier) does not count."""
        return template is not None or window.window_of(line.channel) is None

    def _refusal(self, lease: Lease, throttle: LineThrottle, row: Claimed, capped: bool,
                 consent_type: str, now: float, work: _Round) -> Result | None:
        """Why `row` may not start now, as its result; None when it may. Called with no await
        before the provider call starts: a revocation noted (and so committed) before this
        instant is always seen."""
        if reason := self.watch.revoked(
                row.tenant_id, row.address_index, consent_type,
                self._campaigns[row.campaign_id].purpose == "commercial"):
            return Result(row.id, "skipped", reason)
        if not self.fields.keyring.is_unlocked(row.tenant_id):
            # Locked (here, through another process, or at its TTL) since the round was
            # planned: what is left waits for the next unlock.
            return Result(row.id, "pending")
        if not lease.valid(now):
            # Another process may hold the line by now: nothing more is sent here. Recorded
            # pending under our token; refused if the line was taken over (the taker then
            # counts the row unknown, never sends it twice).
            return Result(row.id, "pending")
        if capped and not throttle.admits(row.address_index, now):
            work.daily_limit.add(row.campaign_id)
            return Result(row.id, "pending")
        return None

    async def _send_one(self, channel: Channel, line: Line, address: str,
                        message: OutboundMessage):
        try:
            return await channel.send(line, address, message)
        except Exception as exc:  # an adapter bug must not lose the row's fate
            log.error("channel send raised", extra={"line_id": line.id,
                                                    "error": type(exc).__name__})
            return PermanentFailure("channel_error")

    async def _send_batch(self, channel: BatchChannel, line: Line,
                          messages: list[tuple[str, OutboundMessage]]) -> list:
        try:
            return await channel.send_many(line, messages)
        except Exception as exc:  # an adapter bug must not lose the rows' fate
            log.error("channel send raised", extra={"line_id": line.id,
                                                    "error": type(exc).__name__})
            return [PermanentFailure("channel_error")] * len(messages)

    def _result(self, throttle: LineThrottle, row: Claimed, address: str, outcome,
                work: _Round) -> Result:
        if isinstance(outcome, Sent):
            self._errors[row.campaign_id] = 0
            self._attempts.pop(row.id, None)
            throttle.provider_took()
            return Result(row.id, "sent", None, provider_reference(outcome.provider_id),
                          time.time())
        if isinstance(outcome, RateLimited):
            throttle.rate_limited(outcome.retry_after, time.monotonic())
            return Result(row.id, "pending")  # not accepted by the provider: send later
        if isinstance(outcome, Unavailable | MaybeSent):
            outcome = self._provider_error(throttle, row.id, row.address_index, outcome)
            if outcome is None:
                # Nothing reached the provider: sent again after the back-off, and not an
                # error towards the error-run pause while it is being retried.
                return Result(row.id, "pending")
        self._attempts.pop(row.id, None)
        if isinstance(outcome, PermanentFailure) and outcome.code == window.OUTSIDE_WINDOW:
            # The window closed since planning (or we missed the person's message): the
            # provider refused free text. A skip like the planned ones, not a send error.
            return Result(row.id, "skipped", window.OUTSIDE_WINDOW)
        self._errors[row.campaign_id] += 1
        reason = reason_of(outcome)[:64]  # the one outcome → reason mapping (campaigns.ports)
        if isinstance(outcome, MaybeSent):
            # It may have been delivered: `unknown`, never resent by itself (a status webhook
            # may still settle it; the owner may choose to retry it).
            return Result(row.id, "unknown", reason)
        if isinstance(outcome, Blocked | OptedOut):
            work.stops.append((row.tenant_id, row.address_index, address, reason))
            return Result(row.id, "failed" if isinstance(outcome, Blocked) else "skipped", reason)
        if isinstance(outcome, PermanentFailure) and outcome.code in LINE_PAUSE_CODES:
            work.pause_line = outcome.code
        return Result(row.id, "failed", reason)

    def _provider_error(self, throttle: LineThrottle, row_id: int, recipient: bytes,
                        outcome: Unavailable | MaybeSent):
        """The provider is failing or too slow: the line backs off like after a 429. None when
        the row is to be tried again, else the outcome to record."""
        retry_after = outcome.retry_after if isinstance(outcome, Unavailable) else None
        throttle.provider_failed(time.monotonic(), retry_after)
        if isinstance(outcome, MaybeSent):
            return outcome
        throttle.not_taken(recipient)
        return None if self._retry_later(row_id) else PermanentFailure("provider_unavailable")

    def _retry_later(self, row_id: int) -> bool:
        """Counts a provider error for the row; False once it has had all its attempts.
        Kept in memory rather than in the outbox: a line has one sender, the count only has to
        bound the retries of one outage, and the hot table gets no extra write. A restart (or
        a lease takeover) forgets it, which at worst gives a message a fresh set of tries."""
        attempts = self._attempts.pop(row_id, 0) + 1
        if attempts >= self.settings.provider_attempts:
            return False
        if len(self._attempts) >= MAX_TRACKED_RETRIES:
            self._attempts.pop(next(iter(self._attempts)))
        self._attempts[row_id] = attempts
        return True

    async def _record(self, line: Line, lease: Lease, work: _Round) -> None:
        consent_type = consent_type_for(line.channel)
        sealed = {}
        for tenant_id, _, address, _ in work.stops:
            sealer = await self.fields.shared_sealer(tenant_id, await self._public_key(tenant_id))
            sealed[address] = sealer.seal_field(address.encode())
        async with self.db.begin() as conn:
            await outbox.record(conn, work.results, Fence(line.id, lease.token))
            for tenant_id, index, address, kind in work.stops:
                self.watch.note(tenant_id, index)
                await suppression.suppress(conn, tenant_id, index, consent_type, kind,
                                           f"provider:{line.channel}", sealed[address])
            if work.pause_line:
                await set_line_state(conn, line.id, "paused", work.pause_line)
            await service.set_state(conn, work.daily_limit, "running", "daily_limit",
                                    only_from=("running",))
        if work.pause_line:
            log.warning("line paused on a provider signal",
                        extra={"line_id": line.id, "reason": work.pause_line})
            self._alert(line.tenant_id, None, "line_paused", work.pause_line)

    async def _public_key(self, tenant_id: str) -> bytes:
        async with self.db.connect() as conn:
            return (await self.directory.profile(conn, tenant_id)).public_key

    async def _guard(self, campaign_ids: set[str], acknowledged: set[str],
                     tenants: dict[str, str]) -> None:
        """Auto-pause on a run of send errors (`error_run`), or on too many opt-outs among the
        first sends (`optout_rate`, unless the owner resumed after such a pause). Two reasons:
        resuming after one never disarms the other. The error run restarts from zero at each
        pause, so it needs no acknowledgement; the opt-out figure does not change after a
        resume, so only that one is acknowledged (campaigns.optout_acknowledged)."""
        s = self.settings
        reasons: dict[str, str] = {}
        # Read first, on a read connection: most rounds pause nothing, and a write
        # transaction here would queue behind the next round's claim for nothing (SQLite).
        async with self.db.connect() as conn:
            for campaign_id in campaign_ids | acknowledged:
                if self._errors[campaign_id] >= s.max_consecutive_errors:
                    reasons[campaign_id] = (f"{service.ERROR_RUN}: "
                                            f"{self._errors[campaign_id]} send errors in a row")
                elif campaign_id not in acknowledged:
                    firsts = self._firsts.get(campaign_id)
                    if firsts is None:
                        firsts = await outbox.first_sends(conn, campaign_id,
                                                          s.spam_first_sends)
                        if len(firsts) >= s.spam_first_sends:  # they stay these: kept
                            self._firsts[campaign_id] = firsts
                    sent, stopped = len(firsts), await outbox.stopped_among(conn, firsts)
                    if stopped > s.spam_optout_rate * s.spam_first_sends:
                        reasons[campaign_id] = (f"{service.OPTOUT_RATE}: {stopped} of the "
                                                f"first {sent} recipients opted out")
        if not reasons:
            return
        async with self.db.begin() as conn:
            for campaign_id, reason in reasons.items():
                await service.set_state(conn, [campaign_id], "paused", reason,
                                        only_from=("running",))
        for campaign_id, reason in reasons.items():
            self._errors[campaign_id] = 0
            log.warning("campaign auto-paused", extra={"campaign_id": campaign_id,
                                                       "reason": reason})
            self._alert(tenants[campaign_id], campaign_id, "paused", reason)

    def _alert(self, tenant_id: str, campaign_id: str | None, event: str,
               detail: str | None = None) -> None:
        """Tells the owner in the background: an alert must never slow or break sending."""
        async def send() -> None:
            try:
                await self.alerts.campaign_event(tenant_id, campaign_id, event, detail)
            except Exception as exc:
                log.warning("alert not sent", extra={"event": event,
                                                     "error": type(exc).__name__})
        task = asyncio.create_task(send())
        self._alerting.add(task)
        task.add_done_callback(self._alerting.discard)


async def _head_start(ahead: asyncio.Task, claiming: asyncio.Event) -> None:
    """Waits (at most HEAD_START_SECONDS) until the next round's claim has its write
    transaction open, or has ended without one. Its few reads before that need the event loop,
    which the sends' first stretch (checks, sealing) would hold for tens of ms: the sends'
    own writes (the sandbox's deliveries) then took SQLite's write lock first, and the next
    round's rows were read and planned only after this round had sent, not while."""
    waiter = asyncio.ensure_future(claiming.wait())
    try:
        await asyncio.wait({ahead, waiter}, timeout=HEAD_START_SECONDS,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def _backoff(first: float = 0.1, longest: float = 2.0):
    """Waits between attempts while the database is unavailable: short at first (a blip heals
    at once), never longer than `longest` (an outage's end is noticed within it)."""
    delay = first
    while True:
        yield delay
        delay = min(longest, delay * 2)


def _channel_template(spec: dict | None):
    if not spec:
        return None
    return (spec["name"], spec.get("language", "tr"),
            tuple(compile_template(p) for p in spec.get("parameters", [])))


def _provider_template(info: _CampaignInfo, fields: dict) -> ProviderTemplate | None:
    if info.channel_template is None:
        return None
    name, language, parameters = info.channel_template
    return ProviderTemplate(name, language, tuple(render(p, fields) for p in parameters))


def _quiet(profile: TenantProfile) -> bool:
    return profile.quiet_hours and quiet_hours_wait(
        time.time(), profile.timezone, profile.quiet_start_hour, profile.quiet_end_hour) > 0


def _json(raw: bytes) -> dict:
    value = json.loads(raw)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
