"""Gathers the gate's facts for many recipients in one database round trip."""
from __future__ import annotations

import functools
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from optout.gate import Facts
from optout.suppression import EVERYTHING, PRECEDENCE
from store.tables import consent_state, contacts, suppressions

# Keeps each statement well under every driver's bound-parameter limit (SQLite: 32766).
CHUNK = 5000


async def gather(conn: AsyncConnection, tenant_id: str, indexes: Sequence[bytes],
                 consent_type: str, iys_enabled: bool = False,
                 merchants: bool = True) -> dict[bytes, Facts]:
    """Facts per blind index: consent state of `consent_type` and the strongest suppression.
    `merchants=False` (the tenant never imported a merchant) skips the contacts lookup."""
    query = _QUERY if merchants else _QUERY_NO_MERCHANTS
    consent: dict[bytes, tuple] = {}
    suppressed: dict[bytes, str] = {}
    known_merchants: set[bytes] = set()
    for start in range(0, len(indexes), CHUNK):
        chunk = list(indexes[start:start + CHUNK])
        for what, raw_index, status, recipient_type, iys_status in await _rows(
                conn, query, tenant_id, chunk, consent_type, merchants):
            index = bytes(raw_index)
            if what == "c":
                consent[index] = (status, recipient_type, iys_status)
            elif what == "m":
                known_merchants.add(index)
            elif index not in suppressed or PRECEDENCE[status] < PRECEDENCE[suppressed[index]]:
                suppressed[index] = status
    return {i: _facts(consent.get(i), suppressed.get(i), i in known_merchants, iys_enabled)
            for i in indexes}


async def _rows(conn: AsyncConnection, query, tenant_id: str, chunk: list[bytes],
                consent_type: str, merchants: bool):
    # The gate runs for every message: on SQLite the statement is sent as plain SQL, which
    # measured ~2.8x faster than letting SQLAlchemy expand three IN lists per call.
    if conn.dialect.name == "sqlite":
        sql = _sqlite_sql(len(chunk), merchants)
        params = [tenant_id, consent_type, *chunk, tenant_id, consent_type, *chunk]
        if merchants:
            params += [tenant_id, *chunk]
        return (await conn.exec_driver_sql(sql, tuple(params))).fetchall()
    if conn.dialect.name == "postgresql":
        # One array parameter per probe instead of thousands of scalars.
        params = (tenant_id, consent_type, chunk, tenant_id, consent_type, chunk)
        if merchants:
            params += (tenant_id, chunk)
        return (await conn.exec_driver_sql(_pg_sql(merchants), params)).fetchall()
    result = await conn.execute(query, _params(tenant_id, chunk, consent_type, merchants))
    return result.fetchall()


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


def _build_query(merchants: bool):
    # Built once with bind parameters, so SQLAlchemy compiles it once and caches it.
    tenant, ctype = sa.bindparam("tenant"), sa.bindparam("ctype")
    states = sa.select(
        sa.literal("c").label("what"), consent_state.c.address_index,
        consent_state.c.status, consent_state.c.recipient_type, consent_state.c.iys_status,
    ).where(consent_state.c.tenant_id == tenant, consent_state.c.consent_type == ctype,
            consent_state.c.address_index.in_(sa.bindparam("ix1", expanding=True)))
    blocks = sa.select(
        sa.literal("s").label("what"), suppressions.c.address_index,
        suppressions.c.kind, sa.null(), sa.null(),
    ).where(suppressions.c.tenant_id == tenant,
            suppressions.c.scope.in_([ctype, sa.literal(EVERYTHING)]),
            suppressions.c.address_index.in_(sa.bindparam("ix2", expanding=True)))
    # A contact imported as a merchant with no consent event yet is still a merchant.
    known_merchants = sa.select(
        sa.literal("m").label("what"), contacts.c.address_index,
        sa.null(), sa.null(), sa.null(),
    ).where(contacts.c.tenant_id == tenant, contacts.c.recipient_type == "merchant",
            contacts.c.address_index.in_(sa.bindparam("ix3", expanding=True)))
    if not merchants:
        return sa.union_all(states, blocks)
    return sa.union_all(states, blocks, known_merchants)


_QUERY = _build_query(merchants=True)
_QUERY_NO_MERCHANTS = _build_query(merchants=False)


def _params(tenant_id: str, chunk: list[bytes], consent_type: str, merchants: bool) -> dict:
    params = {"tenant": tenant_id, "ctype": consent_type, "ix1": chunk, "ix2": chunk}
    if merchants:
        params["ix3"] = chunk
    return params


def _facts(consent: tuple | None, suppression: str | None, merchant: bool,
           iys_enabled: bool) -> Facts:
    if consent is None:
        return Facts(suppression=suppression, iys_enabled=iys_enabled,
                     recipient_type="merchant" if merchant else "individual")
    status, recipient_type, iys_status = consent
    return Facts(consent=status, recipient_type=recipient_type, suppression=suppression,
                 iys_enabled=iys_enabled, iys_status=iys_status)
