"""Refusals that stand until the person lifts them. After an opt-out of any kind (a revoked
consent — STOP, a provider's stop, a Telegram block, İYS RET — or a suppression for an
opt-out, a block or a complaint) and after a KVKK erasure, no bulk import and no plain API call
turns anything back: only the person's own later act does (`grant_by_person`)."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from optout import ledger, order, suppression
from optout.ledger import ConsentEvent
from optout.suppression import EVERYTHING
from store import raw

# Suppression kinds that are the person's refusal (a manual one is the business's choice).
REFUSING_KINDS = ("opted_out", "blocked", "complaint")
ERASURE = "erasure"
# Keeps each statement well under every driver's bound-parameter limit (SQLite: 32766).
CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Standing:
    """What stands against a new consent for one person: a refusal, an erasure, and the time
    of the newest of them (a reconsent must be later)."""
    refused: bool
    erased: bool
    since: float


async def standing(conn: AsyncConnection, tenant_id: str, indexes: Sequence[bytes],
                   consent_type: str) -> dict[bytes, Standing]:
    """The people among `indexes` with a refusal of `consent_type` (or of everything) or an
    erasure standing; one statement per 5,000 people."""
    found: dict[bytes, Standing] = {}
    for start in range(0, len(indexes), CHUNK):
        chunk = list(indexes[start:start + CHUNK])
        for raw_index, kind, at in await _rows(conn, tenant_id, chunk, consent_type):
            index = bytes(raw_index)
            before = found.get(index, Standing(False, False, 0.0))
            found[index] = Standing(before.refused or kind != ERASURE,
                                    before.erased or kind == ERASURE, max(before.since, at))
    return found


async def _rows(conn: AsyncConnection, tenant_id: str, chunk: list[bytes], consent_type: str):
    if conn.dialect.name == "postgresql":  # one array parameter per probe, not thousands
        return await raw.fetch(conn, _PG_SQL, (tenant_id, consent_type, chunk, tenant_id,
                                               consent_type, chunk))
    return await raw.fetch(conn, _sqlite_sql(len(chunk)),
                           (tenant_id, consent_type, *chunk, tenant_id, consent_type, *chunk))


_KINDS = ", ".join(f"'{k}'" for k in (*REFUSING_KINDS, ERASURE))
_PG_SQL = (
    "SELECT address_index, 'revoked', occurred_at FROM consent_state WHERE tenant_id = $1 "
    "AND consent_type = $2 AND status = 'revoked' AND address_index = ANY($3::bytea[]) "
    "UNION ALL SELECT address_index, kind, created_at FROM suppressions WHERE tenant_id = $4 "
    f"AND scope IN ($5, '{EVERYTHING}') AND kind IN ({_KINDS}) "
    "AND address_index = ANY($6::bytea[])")


@functools.lru_cache(maxsize=16)
def _sqlite_sql(n: int) -> str:
    marks = raw.marks(n)
    return ("SELECT address_index, 'revoked', occurred_at FROM consent_state WHERE "
            "tenant_id = ? AND consent_type = ? AND status = 'revoked' "
            f"AND address_index IN ({marks}) UNION ALL SELECT address_index, kind, created_at "
            f"FROM suppressions WHERE tenant_id = ? AND scope IN (?, '{EVERYTHING}') "
            f"AND kind IN ({_KINDS}) AND address_index IN ({marks})")


async def erased(conn: AsyncConnection, tenant_id: str, index: bytes) -> bool:
    """Whether the person's erasure stands (no own consent of theirs has ended it)."""
    return bool(await raw.fetch(
        conn, "SELECT 1 FROM suppressions WHERE tenant_id = ? AND address_index = ? "
              "AND scope = ? AND kind = ?", (tenant_id, index, EVERYTHING, ERASURE)))


async def grant_by_person(conn: AsyncConnection, tenant_id: str, event: ConsentEvent,
                          iys_enabled: bool) -> str | None:
    """The person's own consent (START, a consent tap, a WhatsApp resume, ONAY in İYS, an
    evidenced reconsent): recorded as granted even over a refusal, their opt-out lifted, and
    an erasure older than it ends (a new relationship starts). None, changing nothing, when a
    stop of the same second or a newer event of the person was already applied (optout.order);
    else the event id."""
    at = int(event.occurred_at)
    if not await order.claim(conn, tenant_id, event.address_index, event.consent_type,
                             order.CONSENT, at, stops=False):
        return None
    (event_id,) = await ledger.record(conn, tenant_id, [event], iys_enabled,
                                      lifts_refusal=True)
    await suppression.lift(conn, tenant_id, event.address_index, event.consent_type)
    # Strictly older: an erasure of the consent's own second may have come after it.
    await raw.execute(conn, "DELETE FROM suppressions WHERE tenant_id = ? AND address_index = ? "
                            "AND scope = ? AND kind = ? AND created_at < ?",
                      (tenant_id, event.address_index, EVERYTHING, ERASURE, float(at)))
    return event_id


async def lift_by_iys_consent(conn: AsyncConnection, tenant_id: str, event: ConsentEvent) -> bool:
    """An ONAY the person gave in İYS itself (pulled from İYS): their own act, so a refusal or
    erasure older than it ends (`grant_by_person`, not queued back to İYS). Without one
    standing nothing is recorded here; the caller keeps İYS's status as before."""
    against = (await standing(conn, tenant_id, [event.address_index],
                              event.consent_type)).get(event.address_index)
    if against is None or event.occurred_at <= against.since:
        return False
    return await grant_by_person(conn, tenant_id, event, iys_enabled=False) is not None
