"""SQL for campaigns and their outbox: building it in bulk, claiming work, recording results,
and deriving a campaign's counts (its state follows from its outbox)."""
from __future__ import annotations

import functools
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns import leases
from store import raw
from store.tables import campaigns, contacts, line_leases, list_members, outbox

OPEN_STATES = ("pending", "sending")
COUNT_KEYS = ("pending", "sending", "sent", "delivered", "read", "failed", "skipped", "unknown")


# Claimed and Result are made once per message on the send path: NamedTuples (0.4 µs each to
# make, immutable) rather than frozen dataclasses (2.3 µs: a setattr call per field).
class Claimed(NamedTuple):
    id: int
    campaign_id: str
    tenant_id: str
    contact_id: str
    address_index: bytes
    address_sealed: bytes
    name_sealed: bytes | None
    attributes_sealed: bytes | None
    # Suppressed or revoked when claimed: recorded skipped (with the gate's reason), never sent.
    refused: bool = False


class Result(NamedTuple):
    id: int
    state: str
    reason: str | None = None
    provider_id: str | None = None
    sent_at: float | None = None


async def build(conn: AsyncConnection, campaign_id: str, tenant_id: str, list_id: str) -> int:
    """One pending row per list member, in one INSERT … SELECT (a million rows in seconds).
    The UNIQUE (campaign, contact) makes a repeated build add nothing: ON CONFLICT DO
    NOTHING, one index probe a row. (A NOT EXISTS on the outbox instead was planned, once the
    table's statistics said it was small, as a scan of the outbox per member — a scan that
    also visits the rows the statement itself inserts: 50,000 members took 58 s on
    PostgreSQL, 100,000 took 154 s.)"""
    now = time.time()
    members = sa.select(
        sa.literal(campaign_id), sa.literal(tenant_id), list_members.c.contact_id,
        sa.literal("pending"), sa.literal(now),
    ).join(contacts, contacts.c.id == list_members.c.contact_id).where(
        list_members.c.list_id == list_id, contacts.c.erased_at.is_(None))
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(outbox)
    result = await conn.execute(insert.from_select(
        ["campaign_id", "tenant_id", "contact_id", "state", "updated_at"], members,
    ).on_conflict_do_nothing(index_elements=["campaign_id", "contact_id"]))
    return result.rowcount


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a dispatcher's writes for a line are made under (campaigns.leases)."""
    line_id: str
    token: int


async def claim(conn: AsyncConnection, fence: Fence, campaign_ids: Sequence[str],
                commercial: Collection[str], scope: str, limit: int,
                claim_token: int) -> list[Claimed]:
    """Moves the next pending rows of these campaigns to `sending` and returns them, in ONE
    statement on PostgreSQL (FOR UPDATE SKIP LOCKED: two processes never get the same row;
    on SQLite, `mark_claimed` then `claimed` in one write transaction), and nothing is
    claimed unless `fence` is a live lease. Each row
    says whether its recipient was suppressed for `scope` — or, in `commercial` campaigns,
    had revoked consent — at that instant (`refused`): such a row is never sent, so a STOP
    committed before the claim is a database fact for every process. Committed by the
    caller BEFORE any provider call: after a crash these rows become unknown."""
    if conn.dialect.name != "postgresql":
        return await claimed(conn, await mark_claimed(conn, fence, campaign_ids, limit,
                                                      claim_token), campaign_ids,
                             commercial, scope)
    ids, commercial = list(campaign_ids), [c for c in campaign_ids if c in commercial]
    rows = await raw.fetch(conn, _PG_CLAIM.format(live=leases.live_sql(conn)), (
        ids, limit, limit, claim_token, time.time(), fence.line_id, fence.token, scope,
        commercial, scope))
    return _claimed_rows(rows)


async def mark_claimed(conn: AsyncConnection, fence: Fence, campaign_ids: Sequence[str],
                       limit: int, claim_token: int) -> list[int]:
    """SQLite: the claim's write alone — the next pending rows moved to `sending` under
    `claim_token` while `fence` is live — returning their ids. SQLite plans correlated
    subqueries in RETURNING as table scans, so `claimed` reads the rows in a second
    statement. The dispatcher commits this first and reads after, on a read connection:
    the write lock is not held while 2,000 rows are read, and the read's refusals are at a
    later instant, so a STOP committed before the claim is still seen."""
    ids = list(campaign_ids)
    pick = [v for campaign_id in ids for v in (campaign_id, limit)]
    if len(ids) > 1:
        pick.append(limit)
    return [r[0] for r in await raw.fetch_at_once(conn, (
        "UPDATE outbox SET state = 'sending', claim_token = ?, updated_at = ? "
        f"WHERE id IN ({_sqlite_pick(len(ids))}) AND {leases.live_sql(conn)} RETURNING id"),
        (claim_token, time.time(), *pick, fence.line_id, fence.token))]


async def claimed(conn: AsyncConnection, row_ids: Sequence[int], campaign_ids: Sequence[str],
                  commercial: Collection[str], scope: str) -> list[Claimed]:
    """SQLite: the rows `mark_claimed` moved, with their contacts and whether each recipient
    is suppressed for `scope` (or, in `commercial` campaigns, revoked) now (`refused`)."""
    if not row_ids:
        return []
    commercial = [c for c in campaign_ids if c in commercial]
    return _claimed_rows(await raw.fetch_at_once(conn, _SQLITE_CLAIMED.format(
        ids=raw.marks(len(row_ids)), commercial=raw.marks(len(commercial)) or "NULL"),
        (scope, *commercial, scope, *row_ids)))


def _claimed_rows(rows) -> list[Claimed]:
    return sorted((Claimed(r[0], r[1], r[2], r[3], bytes(r[4]), _b(r[5]), _b(r[6]), _b(r[7]),
                           bool(r[8])) for r in rows), key=lambda c: c.id)


_CLAIMED = ("{table}.id, {table}.campaign_id, {table}.tenant_id, {table}.contact_id, "
            "c.address_index, c.address_sealed, c.name_sealed, c.attributes_sealed, "
            "EXISTS (SELECT 1 FROM suppressions s WHERE s.tenant_id = {table}.tenant_id "
            "AND s.address_index = c.address_index AND s.scope IN (?, '*')) "
            "OR ({table}.campaign_id {commercial} AND EXISTS (SELECT 1 FROM consent_state cs "
            "WHERE cs.tenant_id = {table}.tenant_id AND cs.address_index = c.address_index "
            "AND cs.consent_type = ? AND cs.status = 'revoked'))")
# The pick is a MATERIALIZED CTE: run once. As `id IN (subquery)` joined to contacts the
# planner may re-run the subquery per row, and each run skips the rows it locked before, so
# the claim grew past its LIMIT.
# Each campaign's next rows are read in the order of ix_outbox_claim (campaign, state, id), as
# far as the limit and no further; the claim is the first `limit` of those. `campaign_id =
# ANY(…)` instead read every pending row of the campaigns and sorted them — a campaign of a
# million rows sorted what it had left at every round (8 ms a round at 30,000 rows).
_PG_CLAIM = (
    "WITH picked AS MATERIALIZED (SELECT p.id FROM unnest(?::varchar[]) AS c(id) "
    "CROSS JOIN LATERAL (SELECT id FROM outbox WHERE campaign_id = c.id AND state = 'pending' "
    "ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED) p ORDER BY p.id LIMIT ?) "
    "UPDATE outbox SET state = 'sending', claim_token = ?, updated_at = ? FROM picked, "
    "contacts c WHERE outbox.id = picked.id AND c.id = outbox.contact_id "
    "AND outbox.state = 'pending' AND {live} RETURNING "
    + _CLAIMED.format(table="outbox", commercial="= ANY(?::varchar[])"))


@functools.lru_cache(maxsize=16)
def _sqlite_pick(campaigns: int) -> str:
    """The ids of the next pending rows of `campaigns` campaigns (parameters: campaign id
    and limit for each, then the limit), read in index order as far as the limit: one
    campaign's from ix_outbox_claim directly; several campaigns' each so, then merged (an IN
    list would sort every pending row of them)."""
    one = "SELECT id FROM outbox WHERE campaign_id = ? AND state = 'pending' ORDER BY id LIMIT ?"
    if campaigns == 1:
        return one
    each = " UNION ALL ".join([f"SELECT id FROM ({one})"] * campaigns)
    return f"SELECT id FROM ({each}) ORDER BY id LIMIT ?"


_SQLITE_CLAIMED = (
    "SELECT " + _CLAIMED.format(table="o", commercial="IN ({commercial})")
    + " FROM outbox o JOIN contacts c ON c.id = o.contact_id WHERE o.id IN ({ids})")


async def unclaim(conn: AsyncConnection, campaign_ids: Sequence[str], claim_token: int) -> int:
    """Back to pending: the rows of a claim whose commit answer was lost with the database
    (it may have committed), found by its token. None of them was handed to a provider."""
    ids = list(campaign_ids)
    return await raw.execute(conn, "UPDATE outbox SET state = 'pending', claim_token = NULL, "
                                   f"updated_at = ? WHERE campaign_id IN ({raw.marks(len(ids))}) "
                                   "AND state = 'sending' AND claim_token = ?",
                             (time.time(), *ids, claim_token))


def _b(value) -> bytes | None:
    return None if value is None else bytes(value)


RECORD_CHUNK = 4000  # results per statement (SQLite: 5 parameters a row, 32,766 at most)


async def record(conn: AsyncConnection, results: Sequence[Result],
                 fence: Fence | None = None) -> None:
    """The dispatcher's outcomes, written only while `fence` is the line's current lease (a
    holder that was taken over changes nothing). A row a status webhook already moved on (a
    fast provider's "delivered" can overtake our own bookkeeping) is not moved back. One
    statement per RECORD_CHUNK results, so PostgreSQL's statement trigger fires once a round
    instead of once a message."""
    now = time.time()
    back = [r.id for r in results if r.state == "pending"]
    cancelled = await _cancelled_campaigns(conn, back)
    where = "outbox.state IN ('pending', 'sending')"
    fenced: tuple = ()
    if fence is not None:
        where += f" AND {leases.CURRENT_SQL}"
        fenced = (fence.line_id, fence.token)
    for start in range(0, len(results), RECORD_CHUNK):
        chunk = results[start:start + RECORD_CHUNK]
        if conn.dialect.name == "postgresql":
            await raw.execute(conn, _PG_RECORD + where, (
                now, [r.id for r in chunk], [r.state for r in chunk],
                [r.reason for r in chunk], [r.provider_id for r in chunk],
                [r.sent_at for r in chunk], *fenced))
            continue
        values = []
        for r in chunk:
            values += (r.id, r.state, r.reason, r.provider_id, r.sent_at)
        await raw.fetch_at_once(conn, _sqlite_record(len(chunk)) + where,
                                (now, *values, *fenced))
    if cancelled:  # nothing of a cancelled campaign waits: skipped as `cancel` skips the rest
        rows, in_rows = raw.among(conn, "id", back, "bigint")
        campaign, in_campaigns = raw.among(conn, "campaign_id", cancelled, "varchar")
        await raw.execute(conn, "UPDATE outbox SET state = 'skipped', reason = 'cancelled', "
                                f"updated_at = ? WHERE {rows} AND {campaign} AND state = 'pending'",
                          (now, *in_rows, *in_campaigns))


async def _cancelled_campaigns(conn: AsyncConnection, row_ids: list[int]) -> list[str]:
    """Of the campaigns of these rows, those cancelled. On PostgreSQL the campaign rows are
    locked (FOR SHARE) until the caller commits, and `cancel` changes the campaign before it
    skips its pending rows: either this sees the cancel, or the cancel's skip sees these rows
    back at pending. Either way none stays pending in a cancelled campaign."""
    if not row_ids:
        return []
    rows, params = raw.among(conn, "o.id", row_ids, "bigint")
    lock = " FOR SHARE OF c" if conn.dialect.name == "postgresql" else ""
    return [r[0] for r in await raw.fetch(
        conn, "SELECT c.id, c.state FROM campaigns c WHERE c.id IN (SELECT o.campaign_id "
              f"FROM outbox o WHERE {rows}){lock}", params) if r[1] == "cancelled"]


_PG_RECORD = (
    "UPDATE outbox SET state = v.state, reason = v.reason, provider_id = v.provider_id, "
    "sent_at = v.sent_at, updated_at = ? FROM unnest(?::bigint[], ?::varchar[], ?::varchar[], "
    "?::varchar[], ?::float8[]) AS v(id, state, reason, provider_id, sent_at) "
    "WHERE outbox.id = v.id AND ")


@functools.lru_cache(maxsize=16)
def _sqlite_record(n: int) -> str:
    # UPDATE … FROM (SQLite 3.33+); the VALUES columns are column1…column5.
    return ("UPDATE outbox SET state = v.column2, reason = v.column3, "
            "provider_id = v.column4, sent_at = v.column5, updated_at = ? FROM (VALUES "
            + ",".join(["(?, ?, ?, ?, ?)"] * n) + ") AS v WHERE outbox.id = v.column1 AND ")


# Provider statuses only move a row forward; `unknown` rows are reconciled by them.
_STATUS_RANK = {"pending": 0, "sending": 1, "unknown": 1, "sent": 2, "failed": 2,
                "delivered": 3, "read": 4}


def _movable_from(status: str) -> tuple[str, ...]:
    """States a provider `status` may overwrite: anything ranked below it (a `failed` never
    overwrites a delivery) — so redelivered or out-of-order callbacks change nothing."""
    rank = _STATUS_RANK[status]
    return tuple(state for state, r in _STATUS_RANK.items()
                 if r < rank or (state in ("unknown", "sending") and r <= rank))


async def apply_status(conn: AsyncConnection, tenant_id: str, row_id: int, status: str,
                       provider_id: str | None, reason: str | None = None) -> bool:
    """A provider status callback (sent, delivered, read, failed) for one of our rows."""
    if status not in _STATUS_RANK:
        return False
    movable = _movable_from(status)
    changed = await raw.execute(
        conn, "UPDATE outbox SET state = ?, reason = COALESCE(?, reason), "
              "provider_id = COALESCE(provider_id, ?), sent_at = COALESCE(sent_at, ?), "
              "updated_at = ? WHERE id = ? AND tenant_id = ? "
              f"AND state IN ({raw.marks(len(movable))})",
        (status, reason, provider_id, time.time() if status != "failed" else None, time.time(),
         row_id, tenant_id, *movable))
    return changed == 1


async def recover_in_flight(conn: AsyncConnection, line_id: str | None = None,
                            held: Collection[int] = (), fence: Fence | None = None,
                            unleased_only: bool = False) -> int:
    """Rows still `sending` that no round is sending any more — at start those of lines no
    process holds a live lease on (`unleased_only`); on taking a line over, or after a
    database outage, those of one line not `held` by its live round, while `fence` is its
    current lease — may or may not have reached the provider. They become `unknown` and are
    never resent automatically (a missed message beats a double)."""
    q = outbox.update().where(outbox.c.state == "sending")
    if line_id is not None:
        q = q.where(outbox.c.campaign_id.in_(
            sa.select(campaigns.c.id).where(campaigns.c.line_id == line_id)))
    if held:
        q = q.where(outbox.c.id.not_in(list(held)))
    if fence is not None:
        q = q.where(sa.exists().where(line_leases.c.line_id == fence.line_id,
                                      line_leases.c.token == fence.token))
    if unleased_only:
        live = sa.select(line_leases.c.line_id).where(
            line_leases.c.expires_at > sa.text(leases.db_now(conn)))
        q = q.where(outbox.c.campaign_id.in_(
            sa.select(campaigns.c.id).where(campaigns.c.line_id.not_in(live))))
    result = await conn.execute(q.values(state="unknown", reason="interrupted",
                                         updated_at=time.time()))
    return result.rowcount


async def requeue(conn: AsyncConnection, campaign_id: str, include_unknown: bool = False) -> int:
    """`retry failed`: failed rows go back to pending, on the owner's request. Unknown rows
    may have been delivered (the person would get it twice): only when asked for by name."""
    states = ("failed", "unknown") if include_unknown else ("failed",)
    result = await conn.execute(outbox.update().where(
        outbox.c.campaign_id == campaign_id, outbox.c.state.in_(states)).values(
        state="pending", reason=None, updated_at=time.time()))
    return result.rowcount


async def skip_open(conn: AsyncConnection, campaign_id: str, reason: str) -> int:
    result = await conn.execute(outbox.update().where(
        outbox.c.campaign_id == campaign_id, outbox.c.state == "pending").values(
        state="skipped", reason=reason, updated_at=time.time()))
    return result.rowcount


async def counts(conn: AsyncConnection, campaign_id: str) -> tuple[dict, dict]:
    """({state: n}, {skip reason: n}) of one campaign, from its counters."""
    return (await counts_many(conn, [campaign_id]))[campaign_id]


async def counts_many(conn: AsyncConnection, campaign_ids: Sequence[str],
                      reasons_for: str = "skipped") -> dict[str, tuple[dict, dict]]:
    """`counts` for many campaigns: the folded counts plus the moves not folded yet, read in
    one statement (one snapshot, so a fold running meanwhile is seen whole or not at all).
    The second dict counts the reasons of the rows in state `reasons_for`."""
    found: dict[str, tuple[dict, dict]] = {
        cid: (dict.fromkeys(COUNT_KEYS, 0), {}) for cid in campaign_ids}
    if not campaign_ids:
        return found
    ids = list(dict.fromkeys(campaign_ids))
    totals: dict[tuple[str, str, str], int] = {}
    for campaign_id, state, reason, n in await raw.fetch(
            conn, f"SELECT campaign_id, state, reason, n FROM campaign_counts "
                  f"WHERE campaign_id IN ({raw.marks(len(ids))}) UNION ALL "
                  f"SELECT campaign_id, state, reason, sum(delta) FROM outbox_moves "
                  f"WHERE campaign_id IN ({raw.marks(len(ids))}) "
                  f"GROUP BY campaign_id, state, reason UNION ALL "
                  f"SELECT campaign_id, old_state, old_reason, -sum(delta) FROM outbox_moves "
                  f"WHERE campaign_id IN ({raw.marks(len(ids))}) AND old_state IS NOT NULL "
                  f"GROUP BY campaign_id, old_state, old_reason", (*ids, *ids, *ids)):
        key = (campaign_id, state, reason)
        totals[key] = totals.get(key, 0) + int(n)
    for (campaign_id, state, reason), n in totals.items():
        if not n:
            continue
        by_state, skipped = found[campaign_id]
        by_state[state] = by_state.get(state, 0) + n
        if state == reasons_for:
            skipped[reason or "unknown"] = skipped.get(reason or "unknown", 0) + n
    return found


BUCKET_SECONDS = 900  # tenant_day_counts: every zone's midnight is on a 15-minute boundary


async def entered_since(conn: AsyncConnection, tenant_id: str, since: float) -> dict[str, int]:
    """How many of the tenant's messages entered each state since `since` (a local midnight)."""
    entered = dict.fromkeys(COUNT_KEYS, 0)
    for state, n in await raw.fetch(
            conn, "SELECT state, sum(n) FROM tenant_day_counts WHERE tenant_id = ? AND "
                  "bucket >= ? GROUP BY state UNION ALL "
                  "SELECT state, sum(delta) FROM outbox_moves WHERE tenant_id = ? AND "
                  "delta > 0 AND at >= ? GROUP BY state",
            (tenant_id, int(since // BUCKET_SECONDS * BUCKET_SECONDS), tenant_id, float(since))):
        entered[state] = entered.get(state, 0) + int(n or 0)
    return entered


_MOVE_BUCKET = f"CAST(at AS BIGINT) / {BUCKET_SECONDS} * {BUCKET_SECONDS}"


async def entered_per_bucket(conn: AsyncConnection, tenant_id: str, since: float
                             ) -> list[tuple[float, str, int]]:
    """(bucket start, state, messages) entering each state since `since`, per 15-minute
    bucket (BUCKET_SECONDS): what a chart of recent days groups by local day."""
    return [(float(at), state, int(n or 0)) for at, state, n in await raw.fetch(
        conn, "SELECT bucket, state, sum(n) FROM tenant_day_counts WHERE tenant_id = ? AND "
              "bucket >= ? GROUP BY bucket, state UNION ALL "
              f"SELECT {_MOVE_BUCKET}, state, sum(delta) FROM outbox_moves WHERE tenant_id = ? "
              f"AND delta > 0 AND at >= ? GROUP BY {_MOVE_BUCKET}, state",
        (tenant_id, int(since // BUCKET_SECONDS * BUCKET_SECONDS), tenant_id, float(since)))]


RECEIPT_CHUNK = 500  # campaigns per statement of mark_receipts


async def mark_receipts(conn: AsyncConnection, tenant_id: str, channel: str,
                        read_share_of_ten: int) -> tuple[int, int]:
    """Receipts for a channel that sends none by itself (the sandbox): the tenant's `sent`
    messages on its lines become `delivered`, and of the delivered ones `read_share_of_ten`
    in ten `read` (chosen by row id: repeatable). Only `sent` rows move — never one still
    being sent, which its dispatcher settles. The outbox triggers count the moves, so
    campaign counts and today's figures show them. (newly delivered, newly read)."""
    campaign_ids = [r[0] for r in await raw.fetch(
        conn, "SELECT c.id FROM campaigns c JOIN lines l ON l.id = c.line_id "
              "WHERE c.tenant_id = ? AND l.tenant_id = ? AND l.channel = ?",
        (tenant_id, tenant_id, channel))]
    delivered = read = 0
    now = time.time()
    for start in range(0, len(campaign_ids), RECEIPT_CHUNK):
        chunk = campaign_ids[start:start + RECEIPT_CHUNK]
        marks = raw.marks(len(chunk))
        delivered += await raw.execute(
            conn, "UPDATE outbox SET state = 'delivered', updated_at = ? "
                  f"WHERE campaign_id IN ({marks}) AND state = 'sent'", (now, *chunk))
        read += await raw.execute(
            conn, "UPDATE outbox SET state = 'read', updated_at = ? "
                  f"WHERE campaign_id IN ({marks}) AND state = 'delivered' "
                  f"AND id % 10 < {int(read_share_of_ten)}", (now, *chunk))
    return delivered, read


async def fold(conn: AsyncConnection, limit: int = raw.FOLD_BATCH) -> int:
    """Folds up to `limit` moves into the counters, in the caller's transaction; returns how
    many. Each move is folded once (`raw.take_oldest`); counters are written in key order so
    concurrent folds cannot deadlock."""
    moves = await raw.take_oldest(conn, "outbox_moves", "tenant_id, campaign_id, state, "
                                  "reason, delta, at, old_state, old_reason", limit)
    per_campaign: dict[tuple[str, str, str], int] = {}
    per_bucket: dict[tuple[str, int, str], int] = {}
    for tenant_id, campaign_id, state, reason, delta, at, old_state, old_reason in moves:
        key = (campaign_id, state, reason)
        per_campaign[key] = per_campaign.get(key, 0) + int(delta)
        if old_state is not None:
            left = (campaign_id, old_state, old_reason)
            per_campaign[left] = per_campaign.get(left, 0) - int(delta)
        if delta > 0:
            bucket = (tenant_id, int(at // BUCKET_SECONDS * BUCKET_SECONDS), state)
            per_bucket[bucket] = per_bucket.get(bucket, 0) + int(delta)
    changed = sorted((k, n) for k, n in per_campaign.items() if n)
    await raw.execute_many(
        conn, "INSERT INTO campaign_counts (campaign_id, state, reason, n) VALUES (?, ?, ?, ?) "
              "ON CONFLICT (campaign_id, state, reason) DO UPDATE "
              "SET n = campaign_counts.n + excluded.n", [(*k, n) for k, n in changed])
    await raw.execute_many(
        conn, "DELETE FROM campaign_counts WHERE campaign_id = ? AND state = ? AND reason = ? "
              "AND n = 0", [k for k, _ in changed])
    await raw.execute_many(
        conn, "INSERT INTO tenant_day_counts (tenant_id, bucket, state, n) VALUES (?, ?, ?, ?) "
              "ON CONFLICT (tenant_id, bucket, state) DO UPDATE "
              "SET n = tenant_day_counts.n + excluded.n",
        [(*k, n) for k, n in sorted(per_bucket.items())])
    return len(moves)


async def sent_recently(conn: AsyncConnection, tenant_id: str, contact_ids: Sequence[str],
                        since: float) -> dict[str, int]:
    """Commercial messages per contact since `since`, across campaigns (frequency cap)."""
    if not contact_ids:
        return {}
    q = sa.select(outbox.c.contact_id, sa.func.count()).join(
        campaigns, campaigns.c.id == outbox.c.campaign_id).where(
        outbox.c.tenant_id == tenant_id, outbox.c.contact_id.in_(list(contact_ids)),
        outbox.c.sent_at >= since, campaigns.c.purpose == "commercial",
    ).group_by(outbox.c.contact_id)
    return {cid: n for cid, n in await conn.execute(q)}


async def recent_recipients(conn: AsyncConnection, line_id: str,
                            since: float) -> list[tuple[bytes, float]]:
    """(recipient's blind index, last sent_at) of those sent a message on the line since
    `since`: seeds the line's rolling 24 h unique-recipient cap when a process takes it."""
    return [(bytes(index), float(at)) for index, at in await raw.fetch(
        conn, "SELECT c.address_index, max(o.sent_at) FROM outbox o "
              "JOIN campaigns ca ON ca.id = o.campaign_id "
              "JOIN contacts c ON c.id = o.contact_id "
              "WHERE ca.line_id = ? AND o.sent_at >= ? GROUP BY c.address_index",
        (line_id, float(since)))]


async def finish_drained(conn: AsyncConnection, campaign_ids: Sequence[str]) -> list[str]:
    """Running campaigns with nothing pending or in flight become completed."""
    if not campaign_ids:
        return []
    busy = sa.select(outbox.c.campaign_id).where(
        outbox.c.campaign_id.in_(list(campaign_ids)), outbox.c.state.in_(OPEN_STATES)).distinct()
    busy_ids = {r[0] for r in await conn.execute(busy)}
    done = [c for c in campaign_ids if c not in busy_ids]
    if done:
        await conn.execute(campaigns.update().where(
            campaigns.c.id.in_(done), campaigns.c.state == "running").values(
            state="completed", state_reason=None, finished_at=time.time()))
    return done


@dataclass(frozen=True, slots=True)
class FirstSend:
    """One of a campaign's first sends, as the spam guard looks at it."""
    tenant_id: str
    address_index: bytes
    sent_at: float


async def first_sends(conn: AsyncConnection, campaign_id: str, first: int) -> list[FirstSend]:
    """The campaign's first `first` sent messages, oldest first. Once there are `first` of
    them they stay the same (a later send has a later sent_at): a caller may keep them."""
    q = sa.select(outbox.c.tenant_id, contacts.c.address_index, outbox.c.sent_at).join(
        contacts, contacts.c.id == outbox.c.contact_id).where(
        outbox.c.campaign_id == campaign_id, outbox.c.sent_at.is_not(None),
    ).order_by(outbox.c.sent_at, outbox.c.id).limit(first)
    return [FirstSend(r.tenant_id, bytes(r.address_index), r.sent_at)
            for r in await conn.execute(q)]


async def stopped_among(conn: AsyncConnection, firsts: Sequence[FirstSend]) -> int:
    """How many of `firsts` opted out or blocked the sender after their message: one read of
    the suppressions by key."""
    if not firsts:
        return 0
    sent_at = {f.address_index: f.sent_at for f in firsts}
    among, params = raw.among(conn, "address_index", list(sent_at), "bytea")
    rows = await raw.fetch(conn, "SELECT address_index, created_at FROM suppressions WHERE "
                                 f"tenant_id = ? AND kind IN ('opted_out', 'blocked') AND {among}",
                           (firsts[0].tenant_id, *params))
    return len({bytes(index) for index, created in rows if created >= sent_at[bytes(index)]})
