"""The dispatcher: one task per sending line with running campaigns. Each round it claims about
half a second of work, gates it in one query, marks it `sending` (committed), re-checks fresh
revocations before every send, paces with the line's throttle, sends through the channel and
records the results in one transaction."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa

from campaigns import outbox, service
from campaigns.lines import active_lines, set_line_state
from campaigns.outbox import Claimed, Result
from campaigns.ports import (
    LINE_PAUSE_CODES,
    Alerts,
    Blocked,
    Channel,
    Line,
    NoAlerts,
    OptedOut,
    OutboundMessage,
    PermanentFailure,
    ProviderTemplate,
    RateLimited,
    Sent,
)
from campaigns.render import Template, compile_template, compose, render
from campaigns.throttle import (
    LineThrottle,
    frequency_capped,
    quiet_hours_wait,
    warmup_limit,
)
from crypto.service import FieldCrypto
from optout import facts, suppression
from optout.gate import FREQUENCY_CAP, QUIET_HOURS, Purpose, decide
from optout.ledger import consent_type_for
from optout.tenants import TenantDirectory, TenantProfile
from optout.watch import RevocationWatch
from store.engine import Database
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


@dataclass
class _CampaignInfo:
    tenant_id: str
    purpose: str
    template: Template
    channel_template: tuple[str, str, tuple[Template, ...]] | None = None


@dataclass
class _Round:
    """One claimed batch on its way through gate, sends and recording."""
    results: list[Result] = field(default_factory=list)
    # (tenant, blind index, address, suppression kind) the provider told us about
    stops: list[tuple[str, bytes, str, str]] = field(default_factory=list)
    pause_line: str | None = None
    daily_limit: set[str] = field(default_factory=set)  # campaigns held by the 24 h cap


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
        self._throttles: dict[str, tuple[float, LineThrottle]] = {}
        self._campaigns: dict[str, _CampaignInfo] = {}
        self._errors: dict[str, int] = defaultdict(int)

    async def run(self) -> None:
        """Supervises line tasks until cancelled."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep dispatching; the type is enough to investigate
                log.error("dispatcher tick failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.settings.tick_seconds)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for channel in self.channels.values():
            await channel.flush()

    async def tick(self) -> None:
        async with self.db.begin() as conn:
            rows = await service.active(conn)
            unlocked = [r.id for r in rows if r.state == "waiting_unlock"
                        and self.fields.keyring.is_unlocked(r.tenant_id)]
            await service.set_state(conn, unlocked, "running", None,
                                    only_from=("waiting_unlock",))
        for line_id in {r.line_id for r in rows if r.state == "running" or r.id in unlocked}:
            task = self._tasks.get(line_id)
            if task is None or task.done():
                self._tasks[line_id] = asyncio.create_task(self._drain(line_id))

    async def _drain(self, line_id: str) -> None:
        try:
            while await self.pump(line_id):
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("line dispatch failed", extra={"line_id": line_id,
                                                     "error": type(exc).__name__})

    async def pump(self, line_id: str) -> bool:
        """One round for a line; False when there is nothing to do right now."""
        async with self.db.connect() as conn:
            lines = await active_lines(conn, [line_id])
            rows = [r for r in await service.active(conn)
                    if r.line_id == line_id and r.state == "running"]
        if not lines or lines[0].state != "active" or not rows:
            return False
        line = lines[0]
        running = await self._sendable(line, rows)
        if not running:
            return False
        throttle = self._throttle(line)
        if throttle.rolling_cap.next_free_at(time.monotonic()) > time.monotonic():
            return False  # the 24 h unique-recipient cap is full: nothing can go out yet
        limit = max(1, min(self.settings.max_batch,
                           int(throttle.effective_rate(time.monotonic())
                               * self.settings.batch_seconds)))
        async with self.db.connect() as conn:
            claimed = await outbox.claim(conn, running, limit)
        if not claimed:
            async with self.db.begin() as conn:
                done = await outbox.finish_drained(conn, running)
            tenant_of = {r.id: r.tenant_id for r in rows}
            for campaign_id in done:
                log.info("campaign completed", extra={"campaign_id": campaign_id})
                self._alert(tenant_of[campaign_id], campaign_id, "completed")
            return False
        await self._round(line, claimed, rows)
        return True

    async def _sendable(self, line: Line, rows) -> list[str]:
        """Running campaigns that can send now; others wait with a stated reason."""
        locked = [r.id for r in rows if not self.fields.keyring.is_unlocked(r.tenant_id)]
        quiet = []
        async with self.db.connect() as conn:
            for r in rows:
                if r.id not in locked and r.purpose == "commercial":
                    profile = await self.directory.profile(conn, r.tenant_id)
                    if _quiet(profile):
                        quiet.append(r.id)
        ready = [r.id for r in rows if r.id not in locked and r.id not in quiet]
        # Only what changes is written: this runs every round.
        reason = {r.id: r.state_reason for r in rows}
        quiet = [c for c in quiet if reason[c] != QUIET_HOURS]
        cleared = [c for c in ready if reason[c] is not None]
        if locked or quiet or cleared:
            async with self.db.begin() as conn:
                await service.set_state(conn, locked, "waiting_unlock", "vault is locked",
                                        only_from=("running",))
                await service.set_state(conn, quiet, "running", QUIET_HOURS,
                                        only_from=("running",))
                await service.set_state(conn, cleared, "running", None, only_from=("running",))
        tenant_of = {r.id: r.tenant_id for r in rows}
        for campaign_id in locked:
            log.warning("campaign waits for an unlock", extra={"campaign_id": campaign_id})
            self._alert(tenant_of[campaign_id], campaign_id, "waiting_unlock")
        return ready

    def _throttle(self, line: Line) -> LineThrottle:
        rate, throttle = self._throttles.get(line.id, (None, None))
        if throttle is None or rate != line.rate_per_second:
            throttle = LineThrottle(line.rate_per_second, now=time.monotonic(),
                                    **_provider_limits(line))
            self._throttles[line.id] = (line.rate_per_second, throttle)
        return throttle

    async def _round(self, line: Line, claimed: list[Claimed], rows) -> None:
        work = _Round()
        plans = await self._plan(line, claimed, work)
        async with self.db.begin() as conn:
            await outbox.mark_sending(conn, [p[0].id for p in plans])
        await self._send_all(line, plans, work)
        await self.channels[line.channel].flush()
        await self._record(line, work)
        acknowledged = {r.id for r in rows if r.guard_acknowledged}
        await self._guard({row.campaign_id for row in claimed} - acknowledged,
                          {row.campaign_id for row in claimed} & acknowledged,
                          {row.campaign_id: row.tenant_id for row in claimed})

    async def _plan(self, line: Line, claimed: list[Claimed], work: _Round):
        """Gate, frequency cap, decrypt and render: [(row, address, text)] to send."""
        consent_type = consent_type_for(line.channel)
        plans = []
        by_tenant: dict[str, list[Claimed]] = defaultdict(list)
        for row in claimed:
            by_tenant[row.tenant_id].append(row)
        for tenant_id, rows in by_tenant.items():
            plans += await self._plan_tenant(tenant_id, rows, consent_type, work)
        return plans

    async def _plan_tenant(self, tenant_id: str, rows: list[Claimed], consent_type: str,
                           work: _Round):
        infos = {c: await self._campaign(c) for c in {r.campaign_id for r in rows}}
        commercial = [r.contact_id for r in rows if infos[r.campaign_id].purpose == "commercial"]
        async with self.db.connect() as conn:  # one connection, never a second one inside
            profile = await self.directory.profile(conn, tenant_id)
            found = await facts.gather(conn, tenant_id, [r.address_index for r in rows],
                                       consent_type, profile.iys_enabled,
                                       profile.has_merchant_contacts)
            cap = profile.frequency_cap
            counts = await outbox.sent_recently(
                conn, tenant_id, commercial if cap else [],
                time.time() - profile.frequency_window_days * 86400)
        allowed = []
        for row in rows:
            info = infos[row.campaign_id]
            decision = decide(found[row.address_index], Purpose(info.purpose))
            reason = decision.reason if not decision.allowed else None
            if reason is None and not row.address_sealed:
                reason = "suppressed"  # erased after the outbox was built
            if reason is None and info.purpose == "commercial" and cap and frequency_capped(
                    counts.get(row.contact_id, 0), cap):
                reason = FREQUENCY_CAP
            if reason is None:
                allowed.append(row)
            else:
                work.results.append(Result(row.id, "skipped", reason))
        return await self._render(profile, allowed)

    async def _render(self, profile: TenantProfile, rows: list[Claimed]):
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
            plans.append((row, address, text, _provider_template(info, fields)))
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
                                 _channel_template(row.channel_template))
            self._campaigns[campaign_id] = info
        return info

    async def _send_all(self, line: Line, plans, work: _Round) -> None:
        """Up to max_in_flight sends at once (a real provider answers in tens of ms), paced
        by the line's throttle; workers share one queue instead of a task per message."""
        throttle = self._throttle(line)
        channel = self.channels[line.channel]
        queue = iter(plans)

        async def worker() -> None:
            for row, address, text, template in queue:
                while (wait := throttle.wait_time(time.monotonic(), address)) > 0:
                    await asyncio.sleep(wait)
                # Checked with no await before the provider call starts: a revocation noted
                # (and so committed) before this instant is always seen.
                if self.watch.revoked(row.tenant_id, row.address_index):
                    work.results.append(Result(row.id, "skipped", "opted_out"))
                    continue
                if not throttle.admits(address, time.monotonic()):
                    # The line's 24 h unique-recipient limit (WhatsApp tier) is reached.
                    work.results.append(Result(row.id, "pending"))
                    work.daily_limit.add(row.campaign_id)
                    continue
                throttle.sent(address, time.monotonic())
                outcome = await self._send_one(channel, line, address,
                                               OutboundMessage(text, str(row.id), template))
                work.results.append(self._result(line, row, address, outcome, work))

        workers = min(self.settings.max_in_flight, len(plans))
        await asyncio.gather(*(worker() for _ in range(workers)))

    async def _send_one(self, channel: Channel, line: Line, address: str,
                        message: OutboundMessage):
        try:
            return await channel.send(line, address, message)
        except Exception as exc:  # an adapter bug must not lose the row's fate
            log.error("channel send raised", extra={"line_id": line.id,
                                                    "error": type(exc).__name__})
            return PermanentFailure("channel_error")

    def _result(self, line: Line, row: Claimed, address: str, outcome, work: _Round) -> Result:
        throttle = self._throttle(line)
        if isinstance(outcome, Sent):
            self._errors[row.campaign_id] = 0
            return Result(row.id, "sent", None, outcome.provider_id, time.time())
        if isinstance(outcome, RateLimited):
            throttle.rate_limited(outcome.retry_after, time.monotonic())
            return Result(row.id, "pending")  # not accepted by the provider: send later
        self._errors[row.campaign_id] += 1
        if isinstance(outcome, Blocked):
            work.stops.append((row.tenant_id, row.address_index, address, "blocked"))
            return Result(row.id, "failed", "blocked")
        if isinstance(outcome, OptedOut):
            work.stops.append((row.tenant_id, row.address_index, address, "opted_out"))
            return Result(row.id, "skipped", "opted_out")
        if isinstance(outcome, PermanentFailure):
            if outcome.code in LINE_PAUSE_CODES:
                work.pause_line = outcome.code
            return Result(row.id, "failed", outcome.code[:64])
        return Result(row.id, "failed", outcome.reason[:64])

    async def _record(self, line: Line, work: _Round) -> None:
        consent_type = consent_type_for(line.channel)
        sealed = {}
        for tenant_id, _, address, _ in work.stops:
            sealer = await self.fields.shared_sealer(tenant_id, await self._public_key(tenant_id))
            sealed[address] = sealer.seal_field(address.encode())
        async with self.db.begin() as conn:
            await outbox.record(conn, work.results)
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
        """Auto-pause on too many opt-outs early on (unless the owner already resumed after
        such a pause), or on a run of send errors."""
        s = self.settings
        paused: list[tuple[str, str]] = []
        async with self.db.begin() as conn:
            for campaign_id in campaign_ids | acknowledged:
                reason = None
                if self._errors[campaign_id] >= s.max_consecutive_errors:
                    reason = f"spam_guard: {self._errors[campaign_id]} send errors in a row"
                elif campaign_id not in acknowledged:
                    sent, stopped = await outbox.optouts_among_first(conn, campaign_id,
                                                                     s.spam_first_sends)
                    if stopped > s.spam_optout_rate * s.spam_first_sends:
                        reason = f"spam_guard: {stopped} of the first {sent} recipients opted out"
                if reason:
                    self._errors[campaign_id] = 0
                    await service.set_state(conn, [campaign_id], "paused", reason,
                                            only_from=("running",))
                    log.warning("campaign auto-paused", extra={"campaign_id": campaign_id,
                                                               "reason": reason})
                    paused.append((campaign_id, reason))
        for campaign_id, reason in paused:
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


# What providers enforce per line (DESIGN.md): WhatsApp one message per 6 s to a person and a
# rolling 24 h cap of unique recipients by tier; Telegram one message per second per chat.
def _provider_limits(line: Line) -> dict:
    if line.channel == "whatsapp":
        tier = int((line.options or {}).get("messaging_tier", 0))
        return {"pair_interval": 6.0, "daily_unique_limit": warmup_limit(tier),
                "provider_max_rate": 1000.0}
    if line.channel == "telegram":
        return {"pair_interval": 1.0, "provider_max_rate": 30.0}
    return {}


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
