"""Gathers the gate's facts for many recipients in one database round trip."""
from __future__ import annotations

import functools
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from optout.gate import Facts
from optout.suppression import EVERYTHING, PRECEDENCE
from store import raw

# Keeps each statement well under every driver's bound-parameter limit (SQLite: 32766).
CHUNK = 5000


async def gather(conn: AsyncConnection, tenant_id: str, indexes: Sequence[bytes],
                 consent_type: str, iys_enabled: bool = False,
                 merchants: bool = True) -> dict[bytes, Facts]:
    """Facts per blind index: consent state of `consent_type` and the strongest suppression.
    `merchants=False` (the tenant never imported a merchant) skips the contacts lookup."""
    consent: dict[bytes, tuple] = {}
    suppressed: dict[bytes, str] = {}
    known_merchants: set[bytes] = set()
    for start in range(0, len(indexes), CHUNK):
        chunk = list(indexes[start:start + CHUNK])
        for what, raw_index, status, recipient_type, iys_status in await _rows(
                conn, tenant_id, chunk, consent_type, merchants):
            index = bytes(raw_index)
            if what == "c":
                consent[index] = (status, recipient_type, iys_status)
            elif what == "m":
                known_merchants.add(index)
            elif index not in suppressed or PRECEDENCE[status] < PRECEDENCE[suppressed[index]]:
                suppressed[index] = status
    return {i: _facts(consent.get(i), suppressed.get(i), i in known_merchants, iys_enabled)
            for i in indexes}


async def _rows(conn: AsyncConnection, tenant_id: str, chunk: list[bytes],
                consent_type: str, merchants: bool):
    # The gate runs for every message: on SQLite the statement is sent as plain SQL, which
    # measured ~2.8x faster than letting SQLAlchemy expand three IN lists per call.
    if conn.dialect.name == "sqlite":
        sql = _sqlite_sql(len(chunk), merchants)
        params = [tenant_id, consent_type, *chunk, tenant_id, consent_type, *chunk]
        if merchants:
            params += [tenant_id, *chunk]
        return await raw.fetch_at_once(conn, sql, tuple(params))
    # PostgreSQL (the only other store): one array parameter per probe, not thousands.
    params = (tenant_id, consent_type, chunk, tenant_id, consent_type, chunk)
    if merchants:
        params += (tenant_id, chunk)
    return (await conn.exec_driver_sql(_pg_sql(merchants), params)).fetchall()


@functools.lru_cache(maxsize=4)
def _pg_sql(merchants: bool) -> str:
    sql = ("SELECT 'c', address_index, status, recipient_type, iys_status FROM consent_state "
           "WHERE tenant_id = $1 AND consent_type = $2 AND address_index = ANY($3::bytea[]) "
           "UNION ALL SELECT 's', address_index, kind, NULL, NULL FROM suppressions "
           f"WHERE tenant_id = $4 AND scope IN ($5, '{EVERYTHING}') "
           "AND address_index = ANY($6::bytea[])")
    if merchants:
        sql += (" UNION ALL SELECT 'm', address_index, NULL, NULL, NULL FROM contacts "
                "WHERE tenant_id = $7 AND recipient_type = 'merchant' "
                "AND address_index = ANY($8::bytea[])")
    return sql


@functools.lru_cache(maxsize=64)
def _sqlite_sql(n: int, merchants: bool) -> str:
    marks = ",".join("?" * n)
    sql = ("SELECT 'c', address_index, status, recipient_type, iys_status FROM consent_state "
           f"WHERE tenant_id = ? AND consent_type = ? AND address_index IN ({marks}) "
           "UNION ALL SELECT 's', address_index, kind, NULL, NULL FROM suppressions "
           f"WHERE tenant_id = ? AND scope IN (?, '{EVERYTHING}') AND address_index IN ({marks})")
    if merchants:
        sql += (" UNION ALL SELECT 'm', address_index, NULL, NULL, NULL FROM contacts "
                "WHERE tenant_id = ? AND recipient_type = 'merchant' "
                f"AND address_index IN ({marks})")
    return sql


@functools.lru_cache(maxsize=512)  # a handful of distinct answers; Facts is immutable
def _facts(consent: tuple | None, suppression: str | None, merchant: bool,
           iys_enabled: bool) -> Facts:
    if consent is None:
        return Facts(suppression=suppression, iys_enabled=iys_enabled,
                     recipient_type="merchant" if merchant else "individual")
    status, recipient_type, iys_status = consent
    return Facts(consent=status, recipient_type=recipient_type, suppression=suppression,
                 iys_enabled=iys_enabled, iys_status=iys_status)
