"""The overview's figures: today's sends, refusals people made today, the last 14 days of sends
by outcome, recent campaigns, lines and the KVKK deadlines close at hand — what the overview
page shows, read once and kept a few seconds per tenant (a team refreshing the page does not
repeat the aggregate reads; `reads.forget` drops them after a change)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from bot import registry
from campaigns import outbox
from dashboard.keys import db_key, directory_key
from dashboard.services import Context, reads
from dashboard.services import campaigns as campaign_services
from store import raw

FIGURES_SECONDS = 5.0
CHART_DAYS = 14
DEFAULT_ZONE = "Europe/Istanbul"
# The outcomes a day's bar is split into, bottom up (see `days`).
OUTCOMES = ("read", "delivered", "sent", "failed", "skipped")


def person_sources() -> tuple[str, ...]:
    """Source prefixes of refusals the person made themselves: a reply (STOP, a button) on a
    channel, a refusal recorded in İYS (pulled by the sync), a provider's opt-out or block
    ("whatsapp:user_preferences", "whatsapp:131050", "telegram:blocked"). Not imports (their
    rows carry the file's İYS source code or "import") and not consents recorded over the API."""
    return ("inbound:", "IYS:", *(f"{name}:" for name in registry.names()))


@dataclass(frozen=True)
class Day:
    day: date
    outcomes: dict[str, int]  # OUTCOMES → messages

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


@dataclass(frozen=True)
class Overview:
    messages: dict[str, int]  # messages entering each state today (outbox.COUNT_KEYS)
    waiting: int  # messages waiting to go now (open campaigns)
    opt_outs: int  # people who refused today themselves (see `person_sources`)
    suppressed: int
    days: list[Day] = field(default_factory=list)  # the last CHART_DAYS days, oldest first
    campaigns: list[dict] = field(default_factory=list)  # the newest five


# Every İYS upload state a consent event can be in (optout.ledger, optout.iys_queue): naming
# them all lets the count read the (tenant, state, occurred_at) index a range per state
# instead of every event the tenant ever recorded.
IYS_SYNC_STATES = ("not_applicable", "pending", "sent", "failed")


async def people_opt_outs(conn, tenant_id: str, since: float) -> int:
    """How many people refused since `since` themselves (each person once)."""
    prefixes = person_sources()
    like = " OR ".join(["source LIKE ?"] * len(prefixes))
    return int((await raw.fetch(
        conn, "SELECT count(DISTINCT address_index) FROM consent_events WHERE tenant_id = ? "
              f"AND iys_sync_state IN ({raw.marks(len(IYS_SYNC_STATES))}) "
              f"AND occurred_at >= ? AND status = 'revoked' AND ({like})",
        (tenant_id, *IYS_SYNC_STATES, float(since), *(p + "%" for p in prefixes))))[0][0]
        or 0)


def split_day(entered: dict[str, int]) -> dict[str, int]:
    """A day's messages by outcome from the counts of messages entering each state that day:
    read; delivered and not read; sent without a receipt yet; failed; skipped. A receipt that
    comes the next day counts on the next day."""
    read = entered.get("read", 0)
    delivered = max(entered.get("delivered", 0), read)
    sent = max(entered.get("sent", 0), delivered)
    return {"read": read, "delivered": delivered - read, "sent": sent - delivered,
            "failed": entered.get("failed", 0), "skipped": entered.get("skipped", 0)}


async def days(conn, tenant_id: str, zone: ZoneInfo, today: date,
               count: int = CHART_DAYS) -> list[Day]:
    """The last `count` days (today included) of the tenant's sends, by outcome, per local
    day; from the 15-minute counters, so it costs one small read whatever was sent."""
    first = today - timedelta(days=count - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=zone).timestamp()
    per_day: dict[date, dict[str, int]] = {first + timedelta(days=i): {}
                                           for i in range(count)}
    for at, state, n in await outbox.entered_per_bucket(conn, tenant_id, since):
        local = datetime.fromtimestamp(at, zone).date()
        if local in per_day:
            per_day[local][state] = per_day[local].get(state, 0) + int(n)
    return [Day(d, split_day(entered)) for d, entered in per_day.items()]


async def overview(ctx: Context) -> Overview:
    """The overview's figures, at most FIGURES_SECONDS old."""
    return await reads.remember(ctx.tenant_id, "overview", FIGURES_SECONDS,
                                lambda: _overview(ctx))


async def _overview(ctx: Context) -> Overview:
    figures = await campaign_services.today(ctx)
    async with ctx[db_key].connect() as conn:
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
        zone = ZoneInfo(profile.timezone or DEFAULT_ZONE)
        now = datetime.now(zone)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        opt_outs = await people_opt_outs(conn, ctx.tenant_id, midnight.timestamp())
        chart = await days(conn, ctx.tenant_id, zone, now.date())
    messages = dict.fromkeys(outbox.COUNT_KEYS, 0) | dict(figures.get("messages") or {})
    return Overview(messages=messages, waiting=int(figures.get("waiting") or 0),
                    opt_outs=opt_outs, suppressed=int(figures.get("suppressed") or 0),
                    days=chart, campaigns=await campaign_services.list_campaigns(ctx, 5))
