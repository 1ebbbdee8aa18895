"""Gathers the gate's facts for many recipients in one database round trip."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from optout.gate import Facts
from optout.suppression import EVERYTHING, PRECEDENCE
from store.tables import consent_state, contacts, suppressions

# Keeps each statement well under every driver's bound-parameter limit.
CHUNK = 5000


async def gather(conn: AsyncConnection, tenant_id: str, indexes: Sequence[bytes],
                 consent_type: str, iys_enabled: bool = False) -> dict[bytes, Facts]:
    """Facts per blind index: consent state of `consent_type` and the strongest suppression."""
    consent: dict[bytes, tuple] = {}
    suppressed: dict[bytes, str] = {}
    merchants: set[bytes] = set()
    for start in range(0, len(indexes), CHUNK):
        chunk = list(indexes[start:start + CHUNK])
        for row in await conn.execute(_query(tenant_id, chunk, consent_type)):
            index = bytes(row.address_index)
            if row.what == "c":
                consent[index] = (row.status, row.recipient_type, row.iys_status)
            elif row.what == "m":
                merchants.add(index)
            elif index not in suppressed or PRECEDENCE[row.status] < PRECEDENCE[suppressed[index]]:
                suppressed[index] = row.status
    return {i: _facts(consent.get(i), suppressed.get(i), i in merchants, iys_enabled)
            for i in indexes}


def _query(tenant_id: str, chunk: list[bytes], consent_type: str):
    states = sa.select(
        sa.literal("c").label("what"), consent_state.c.address_index,
        consent_state.c.status, consent_state.c.recipient_type, consent_state.c.iys_status,
    ).where(consent_state.c.tenant_id == tenant_id,
            consent_state.c.consent_type == consent_type,
            consent_state.c.address_index.in_(chunk))
    blocks = sa.select(
        sa.literal("s").label("what"), suppressions.c.address_index,
        suppressions.c.kind, sa.null(), sa.null(),
    ).where(suppressions.c.tenant_id == tenant_id,
            suppressions.c.scope.in_((consent_type, EVERYTHING)),
            suppressions.c.address_index.in_(chunk))
    # A contact imported as a merchant with no consent event yet is still a merchant.
    known_merchants = sa.select(
        sa.literal("m").label("what"), contacts.c.address_index,
        sa.null(), sa.null(), sa.null(),
    ).where(contacts.c.tenant_id == tenant_id, contacts.c.recipient_type == "merchant",
            contacts.c.address_index.in_(chunk))
    return sa.union_all(states, blocks, known_merchants)


def _facts(consent: tuple | None, suppression: str | None, merchant: bool,
           iys_enabled: bool) -> Facts:
    if consent is None:
        return Facts(suppression=suppression, iys_enabled=iys_enabled,
                     recipient_type="merchant" if merchant else "individual")
    status, recipient_type, iys_status = consent
    return Facts(consent=status, recipient_type=recipient_type, suppression=suppression,
                 iys_enabled=iys_enabled, iys_status=iys_status)
