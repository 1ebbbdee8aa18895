"""Names a business types (contact lists, campaigns, lines, API keys), sealed like contact
fields: written while the vault is locked (a fresh data key sealed to the tenant's public
key), read only while it is unlocked. What stays readable beside them is ids, timestamps,
states, counts and reason codes (docs/crypto.md, "Threat model")."""
from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.errors import VaultLockedError
from crypto.fields import FieldSealer, new_data_key
from crypto.service import FieldCrypto
from store.tables import data_keys, tenants


async def seal_name(conn: AsyncConnection, tenant_id: str, name: str) -> bytes:
    """`name` sealed under a fresh data key stored in the same transaction as the row that
    holds it (names are written rarely: one data key each costs one sealed box to read)."""
    public_key = (await conn.execute(sa.select(tenants.c.public_key).where(
        tenants.c.id == tenant_id))).scalar_one()
    key = new_data_key(bytes(public_key))
    await conn.execute(data_keys.insert().values(
        id=key.dek_id, tenant_id=tenant_id, sealed=key.sealed, created_at=time.time()))
    return FieldSealer(key.dek_id, key.dek).seal_field(name.encode("utf-8"))


async def open_names(fields: FieldCrypto, tenant_id: str,
                     blobs: Sequence[bytes | None]) -> list[str | None] | None:
    """The names, in order (None where a row has no sealed name); None while the vault is
    locked, for the caller to say so ("name_locked")."""
    present = [bytes(b) for b in blobs if b]
    try:
        opened = iter(await fields.open_fields(tenant_id, present) if present else [])
    except VaultLockedError:
        return None
    return [next(opened).decode("utf-8") if b else None for b in blobs]


async def open_name(fields: FieldCrypto, tenant_id: str, blob: bytes | None
                    ) -> tuple[str | None, bool]:
    """One name and whether it is locked: (name, False) unlocked, (None, True) locked."""
    names = await open_names(fields, tenant_id, [blob])
    return (None, True) if names is None else (names[0], False)
