"""The İYS upload queue in the database (consent events with iys_sync_state 'pending'):
taking records for one bulk request, keeping İYS's requestId, writing İYS's answers, putting
records back, and finding what earlier runs left in flight (migration 0025).

A record taken for a request is claimed (`iys_claim`) in a committed statement that also checks
the tenant's upload lease is live with our token, so a process that lost the lease takes
nothing; a claimed record is never taken again until its claim is settled. One record per
(number, type) per request, and none while an earlier one of the same number is in flight:
İYS wants each record strictly later than the one it holds, and processes a bulk request
asynchronously in an order it does not promise."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from crypto.service import FieldCrypto
from optout.deadlines import TZ
from optout.iys import Accepted, Outcome, Rejected
from optout.iys_rules import IysConsent
from store import leases, raw
from store.engine import Database
from store.ids import new_id
from store.leases import HeldLease


@dataclass
class Batch:
    """The records of one bulk request, in the order they were posted (their event ids
    sorted, so the order can be rebuilt from the database alone after a restart)."""
    claim: str
    ids: list[str]
    indexes: list[bytes]
    states: list[tuple[str, str]]  # (ONAY or RET, type) per record: what İYS will hold
    records: list[IysConsent | None]  # None: rebuilt after its number was erased
    request_id: str | None = None
    overdue: bool = False  # claimed longer ago than a lost answer is waited for
    posted_at: float = field(default_factory=time.monotonic)
    polls: int = 0
    next_poll: float = 0.0
    done: set[int] = field(default_factory=set)


_COLUMNS = ("id, address_index, consent_type, status, source, iys_source, recipient_type, "
            "evidence_sealed, occurred_at")
# The queue in event order, a page at a time, after (occurred_at, id): ids grow with time, so a
# tie in occurred_at (an import dated at the upload) keeps the order events were recorded in.
# The index on (tenant_id, iys_sync_state, occurred_at, id) serves it (migration 0025).
_PAGE = (f"SELECT {_COLUMNS} FROM consent_events WHERE tenant_id = ? "
         "AND iys_sync_state = 'pending' AND (occurred_at, id) > (?, ?) AND iys_claim IS NULL "
         "ORDER BY occurred_at, id LIMIT ?")
# Numbers with a record in flight: nothing more of theirs goes up until it is settled (the
# partial index on claims, migration 0025). Kept apart from the page query: a correlated
# NOT EXISTS is planned badly on a table just filled, before its statistics exist.
_IN_FLIGHT = ("SELECT address_index, consent_type FROM consent_events WHERE tenant_id = ? "
              "AND iys_claim IS NOT NULL AND iys_sync_state = 'pending'")
_SCAN_PAGES = 10  # pages looked through for numbers that are free, per request
_SET_RESULT = ("UPDATE consent_events SET iys_sync_state = ?, iys_error = ?, iys_claim = NULL "
               "WHERE id = ? AND iys_claim = ?")
_SET_IYS_STATUS = ("UPDATE consent_state SET iys_status = ? WHERE tenant_id = ? "
                   "AND address_index = ? AND consent_type = ?")
_UNCLAIM = "UPDATE consent_events SET iys_claim = NULL WHERE id = ? AND iys_claim = ?"
_UNUSABLE = ("NO_IYS_SOURCE: the consent has no İYS source (HS_*) or phone number to upload")


class UploadQueue:
    """One tenant's queue, as seen by a drain holding the tenant's upload lease. `counts`
    (shared with the drain) gets sent and failed records as they are written."""

    def __init__(self, db: Database, fields: FieldCrypto, tenant_id: str, lease: HeldLease,
                 counts: Counter[str]):
        self.db, self.fields, self.tenant_id, self.lease = db, fields, tenant_id, lease
        self.counts = counts

    async def take(self, limit: int) -> tuple[Batch | None, str]:
        """Claims up to `limit` records for one request: (batch, "claimed"), or None and why:
        "empty", "blocked" (all waiting numbers are in flight), "deferred" (a record waits for
        its second, see strictly_after), "again" (unusable records were failed: try again),
        "locked" (VaultLockedError propagates instead) or "lease_lost"."""
        heads, seen_any = await self._heads(limit)
        if not heads:
            return None, "blocked" if seen_any else "empty"
        opened = await self.fields.open_fields(self.tenant_id, [bytes(r[7]) for r in heads])
        last = await self._last_sent({(bytes(r[1]), r[2]) for r in heads})
        chosen, unusable, deferred = [], [], 0
        for row, evidence in zip(heads, opened, strict=True):
            record = record_for(row, _evidence(evidence))
            if record is None:
                unusable.append(row[0])
                continue
            record = strictly_after(record, last, (bytes(row[1]), row[2]))
            if record is None:
                deferred += 1
                continue
            chosen.append((row, record))
        if unusable:
            await self._fail_unusable(unusable)
        if not chosen:
            return None, "again" if unusable else "deferred"
        return await self._claim(chosen)

    async def _heads(self, limit: int) -> tuple[list, bool]:
        """The oldest waiting record of up to `limit` numbers with nothing in flight, and
        whether any record waits at all."""
        heads, seen_any, after = [], False, (-math.inf, "")
        async with self.db.connect() as conn:
            taken = {(bytes(i), t) for i, t in await raw.fetch(conn, _IN_FLIGHT,
                                                                (self.tenant_id,))}
            for _ in range(_SCAN_PAGES):
                rows = await raw.fetch(conn, _PAGE, (self.tenant_id, *after, limit))
                seen_any = seen_any or bool(rows)
                for row in rows:
                    if (bytes(row[1]), row[2]) not in taken:
                        taken.add((bytes(row[1]), row[2]))
                        heads.append(row)
                if len(heads) >= limit or len(rows) < limit:
                    break
                after = (rows[-1][8], rows[-1][0])
        return heads[:limit], seen_any

    async def _claim(self, chosen: list) -> tuple[Batch | None, str]:
        claim, records = new_id(), {row[0]: record for row, record in chosen}
        async with self.db.begin() as conn:
            # By primary key only (the ids are this tenant's, from the page just read): the
            # plan stays an index lookup whatever the statistics say.
            among, ids = raw.among(conn, "id", list(records), "varchar")
            got = await raw.fetch(conn, (
                f"UPDATE consent_events SET iys_claim = ?, iys_claimed_at = {leases.db_now(conn)}"
                f", iys_request_id = NULL WHERE {among} AND iys_sync_state = 'pending' "
                f"AND iys_claim IS NULL AND {leases.live_sql(conn)} RETURNING id"),
                (claim, *ids, self.lease.key, self.lease.token))
            taken = sorted(r[0] for r in got)
            await raw.execute_many(conn, "UPDATE consent_events SET iys_consent_date = ? "
                                         "WHERE id = ? AND iys_claim = ?",
                                   [(records[i].consent_date.timestamp(), i, claim)
                                    for i in taken])
        if not taken:  # the lease is gone: nothing more is taken by this process
            return None, "lease_lost"
        rows = {row[0]: row for row, _ in chosen}
        return Batch(claim, taken, [bytes(rows[i][1]) for i in taken],
                     [(records[i].status, records[i].type) for i in taken],
                     [records[i] for i in taken]), "claimed"

    async def _last_sent(self, keys: set[tuple[bytes, str]]) -> dict[tuple, int]:
        """The consentDate (whole seconds) İYS last got per (address, type) among `keys`."""
        ordered, found = sorted(keys), {}
        async with self.db.connect() as conn:
            for start in range(0, len(ordered), 500):
                part = ordered[start:start + 500]
                rows = await raw.fetch(conn, *_last_sent_query(conn, self.tenant_id, part))
                found.update({(bytes(i), t): math.floor(at) for i, t, at in rows
                              if at is not None})
        return found

    async def _fail_unusable(self, ids: list[str]) -> None:
        async with self.db.begin() as conn:
            await raw.execute_many(conn, (
                "UPDATE consent_events SET iys_sync_state = 'failed', iys_error = ? "
                "WHERE id = ? AND iys_sync_state = 'pending' AND iys_claim IS NULL"),
                [(_UNUSABLE, i) for i in ids])
        self.counts["failed"] += len(ids)

    async def keep_request(self, batch: Batch, request_id: str) -> None:
        """İYS answered the request: its requestId goes on the records (polled after a
        restart too)."""
        await self._set_request(batch.claim, request_id)
        batch.request_id = request_id

    async def forget_request(self, batch: Batch) -> None:
        """İYS no longer knows the request: its records are asked about one by one later."""
        await self._set_request(batch.claim, None)
        batch.request_id = None

    async def _set_request(self, claim: str, request_id: str | None) -> None:
        async with self.db.begin() as conn:
            await raw.execute(conn, "UPDATE consent_events SET iys_request_id = ? "
                                    "WHERE tenant_id = ? AND iys_claim = ?",
                              (request_id, self.tenant_id, claim))

    async def unclaim(self, batch: Batch, positions: list[int] | None = None) -> None:
        """Puts records back in the queue (all of the batch's by default): İYS does not have
        them, so they go up with a later request."""
        ids = batch.ids if positions is None else [batch.ids[i] for i in positions]
        async with self.db.begin() as conn:
            await raw.execute_many(conn, _UNCLAIM, [(i, batch.claim) for i in ids])

    async def write(self, batch: Batch, final: list[tuple[int, Outcome]]) -> None:
        """İYS's final answers for some of the batch's records: accepted → `sent` (and the
        consent's İYS status, which the gate checks), refused → `failed` with the reason."""
        rows, accepted = [], []
        for index, outcome in final:
            if isinstance(outcome, Accepted):
                rows.append(("sent", None, batch.ids[index], batch.claim))
                status, consent_type = batch.states[index]
                accepted.append((status, self.tenant_id, batch.indexes[index], consent_type))
            else:
                assert isinstance(outcome, Rejected)
                rows.append(("failed", rejection_text(outcome), batch.ids[index], batch.claim))
        async with self.db.begin() as conn:
            await raw.execute_many(conn, _SET_RESULT, rows)
            await raw.execute_many(conn, _SET_IYS_STATUS, accepted)
        batch.done.update(index for index, _ in final)
        self.counts["sent"] += len(accepted)
        self.counts["failed"] += len(rows) - len(accepted)

    async def left_in_flight(self, overdue_after: float) -> list[Batch]:
        """Batches an earlier run claimed and did not settle (this process's or a dead
        one's), rebuilt as posted; `overdue` once claimed longer ago than `overdue_after`."""
        async with self.db.connect() as conn:
            rows = await raw.fetch(conn, (
                f"SELECT {_COLUMNS}, iys_claim, iys_request_id, iys_consent_date, "
                f"CASE WHEN iys_claimed_at < {leases.db_now(conn)} - ? THEN 1 ELSE 0 END "
                "FROM consent_events WHERE tenant_id = ? AND iys_sync_state = 'pending' "
                "AND iys_claim IS NOT NULL"), (overdue_after, self.tenant_id))
        claims: dict[str, list] = {}
        for row in rows:
            claims.setdefault(row[9], []).append(row)
        return [await self._rebuilt(claim, sorted(members, key=lambda r: r[0]))
                for claim, members in claims.items()]

    async def _rebuilt(self, claim: str, members: list) -> Batch:
        opened = await self.fields.open_fields(self.tenant_id, [bytes(r[7]) for r in members])
        records: list[IysConsent | None] = []
        for row, evidence in zip(members, opened, strict=True):
            # Erasure leaves records still going to İYS alone, so the number should be there.
            record = record_for(row, _evidence(evidence))
            sent_at = datetime.fromtimestamp(row[11] or math.floor(row[8]), TZ)
            records.append(record and dataclasses.replace(record, consent_date=sent_at))
        return Batch(claim, [r[0] for r in members], [bytes(r[1]) for r in members],
                     [("ONAY" if r[3] == "granted" else "RET", r[2]) for r in members],
                     records, request_id=members[0][10], overdue=bool(members[0][12]))


def _last_sent_query(conn, tenant_id: str, keys: list[tuple[bytes, str]]
                     ) -> tuple[str, tuple]:
    """(address, type, latest date sent or NULL) for each key."""
    sent = ("max(CASE WHEN e.iys_sync_state = 'sent' "
            "THEN coalesce(e.iys_consent_date, e.occurred_at) END)")
    if conn.dialect.name == "postgresql":
        # One lookup in the key index per key, as a subquery per array element: the plain
        # form gets a hash join over every sent record from the planner on a table just
        # filled (no statistics yet), seconds per batch at 100,000 records.
        return (f"SELECT k.ix, k.t, (SELECT {sent} FROM consent_events e "
                "WHERE e.tenant_id = ? AND e.address_index = k.ix AND e.consent_type = k.t) "
                "FROM unnest(?::bytea[], ?::varchar[]) AS k(ix, t)",
                (tenant_id, [k[0] for k in keys], [k[1] for k in keys]))
    return (f"SELECT e.address_index, e.consent_type, {sent} FROM consent_events e "
            f"WHERE e.tenant_id = ? AND e.address_index IN ({raw.marks(len(keys))}) "
            "GROUP BY e.address_index, e.consent_type",
            (tenant_id, *sorted({k[0] for k in keys})))


def _evidence(opened: bytes) -> dict:
    try:
        value = json.loads(opened)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# Where a consent came from → the İYS source code, when our own source is not already one.
_SOURCE_BY_PREFIX = {"inbound:": "HS_MESAJ", "whatsapp:": "HS_MESAJ", "telegram:": "HS_MESAJ"}


def record_for(row, evidence: dict) -> IysConsent | None:
    """The İYS record for a consent event row (id, address_index, consent_type, status,
    source, iys_source, recipient_type, evidence, occurred_at); None without an İYS source or
    a number."""
    source = row[5] or next(
        (code for prefix, code in _SOURCE_BY_PREFIX.items() if row[4].startswith(prefix)),
        None)
    address = evidence.get("address")
    if source is None or not address:
        return None
    return IysConsent(
        recipient=address, recipient_type="TACIR" if row[6] == "merchant" else "BIREYSEL",
        type=row[2], source=source, status="ONAY" if row[3] == "granted" else "RET",
        consent_date=datetime.fromtimestamp(row[8], TZ))


def strictly_after(record: IysConsent, last: dict[tuple, int], key: tuple
                   ) -> IysConsent | None:
    """İYS keeps whole seconds and wants each record of a number later than the one before:
    two changes within one second (an import, then an immediate STOP) are sent one second
    apart. None when that second has not passed yet (the record waits a moment)."""
    second = math.floor(record.consent_date.timestamp())
    previous = last.get(key)
    if previous is not None and second <= previous:
        second = previous + 1
        if second >= time.time():
            return None
    last[key] = second
    return dataclasses.replace(record, consent_date=datetime.fromtimestamp(second, TZ))


_LONG_NUMBER = re.compile(r"\+?\d[\d ]{6,}\d")


def rejection_text(rejected: Rejected) -> str:
    """What the owner sees: İYS's code and message with any phone number masked, since İYS
    messages may quote the recipient and this text is stored and shown in clear."""
    message = _LONG_NUMBER.sub("***", rejected.message or "")
    return f"{rejected.code}: {message}"[:300]
