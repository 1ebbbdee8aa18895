"""Queries for the foundation tables: tenants, API keys and sealed data keys (bytes only)."""
from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.engine import Database
from store.tables import api_keys, data_keys, tenants


@dataclass(frozen=True)
class TenantRow:
    id: str
    name: str
    created_at: float
    public_key: bytes
    wrapped_secret: bytes
    wrapped_lookup_key: bytes | None  # NULL once the tenant holds its key (migration 0030)
    custody: str
    service_wrapped_secret: bytes | None
    recovery_wrapped_secret: bytes | None = None  # crypto.recovery (migration 0032)
    sealed_lookup_key: bytes | None = None  # sealed to the tenant (migration 0030)

    def __repr__(self) -> str:  # the wrapped blobs are harmless but noisy; never print them
        return f"TenantRow(id={self.id!r}, name={self.name!r}, custody={self.custody!r})"


@dataclass(frozen=True)
class ApiKeyRow:
    id: str
    tenant_id: str
    secret_hash: bytes
    revoked_at: float | None
    role: str = "admin"


async def insert_tenant(conn: AsyncConnection, row: TenantRow) -> None:
    await conn.execute(tenants.insert().values(**row.__dict__))


async def get_tenant(conn: AsyncConnection, tenant_id: str) -> TenantRow | None:
    found = (await conn.execute(tenants.select().where(tenants.c.id == tenant_id))).first()
    return TenantRow(**found._mapping) if found else None


async def list_tenants(conn: AsyncConnection) -> list[TenantRow]:
    rows = await conn.execute(tenants.select().order_by(tenants.c.created_at))
    return [TenantRow(**r._mapping) for r in rows]


async def set_custody(conn: AsyncConnection, tenant_id: str, custody: str,
                      service_wrapped_secret: bytes | None) -> None:
    await conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(
        custody=custody, service_wrapped_secret=service_wrapped_secret))


async def set_wrapped_secret(conn: AsyncConnection, tenant_id: str, old: bytes, new: bytes
                             ) -> bool:
    """Replaces the passphrase-wrapped secret if it is still `old`; whether it was."""
    result = await conn.execute(tenants.update().where(
        tenants.c.id == tenant_id, tenants.c.wrapped_secret == old).values(wrapped_secret=new))
    return result.rowcount == 1


async def set_recovery_wrap(conn: AsyncConnection, tenant_id: str, wrapped: bytes) -> bool:
    """The recovery-code wrap from now on (the previous code stops working); whether the
    tenant exists."""
    result = await conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(
        recovery_wrapped_secret=wrapped))
    return result.rowcount == 1


async def set_recovered(conn: AsyncConnection, tenant_id: str, old_recovery: bytes,
                        wrapped_secret: bytes, recovery_wrapped_secret: bytes) -> bool:
    """Both wraps replaced (a recovery), if the recovery wrap is still `old_recovery`: a code
    opens the vault once."""
    result = await conn.execute(tenants.update().where(
        tenants.c.id == tenant_id, tenants.c.recovery_wrapped_secret == old_recovery).values(
        wrapped_secret=wrapped_secret, recovery_wrapped_secret=recovery_wrapped_secret))
    return result.rowcount == 1


async def insert_api_key(conn: AsyncConnection, key_id: str, tenant_id: str,
                         name_sealed: bytes, secret_hash: bytes, role: str = "admin") -> None:
    """`name_sealed`: the key's name sealed to the tenant (optout.names)."""
    await conn.execute(api_keys.insert().values(
        id=key_id, tenant_id=tenant_id, name_sealed=name_sealed, secret_hash=secret_hash,
        created_at=time.time(), role=role))


async def get_api_key(conn: AsyncConnection, key_id: str) -> ApiKeyRow | None:
    q = sa.select(api_keys.c.id, api_keys.c.tenant_id, api_keys.c.secret_hash,
                  api_keys.c.revoked_at, api_keys.c.role).where(api_keys.c.id == key_id)
    found = (await conn.execute(q)).first()
    return ApiKeyRow(**found._mapping) if found else None


async def list_api_keys(conn: AsyncConnection, tenant_id: str) -> list:
    q = sa.select(api_keys.c.id, api_keys.c.name_sealed, api_keys.c.created_at,
                  api_keys.c.revoked_at, api_keys.c.role).where(
        api_keys.c.tenant_id == tenant_id).order_by(api_keys.c.created_at, api_keys.c.id)
    return list(await conn.execute(q))


async def revoke_api_key(conn: AsyncConnection, tenant_id: str, key_id: str,
                         now: float) -> bool:
    """Marks the key revoked; False when the tenant has no such key still in force."""
    done = await conn.execute(api_keys.update().where(
        api_keys.c.id == key_id, api_keys.c.tenant_id == tenant_id,
        api_keys.c.revoked_at.is_(None)).values(revoked_at=now))
    return done.rowcount > 0


class SqlDataKeyStore:
    """Sealed data keys, as crypto.service.DataKeyStore expects them."""

    def __init__(self, db: Database):
        self._db = db

    async def add(self, tenant_id: str, dek_id: bytes, sealed: bytes) -> None:
        async with self._db.begin() as conn:
            await conn.execute(data_keys.insert().values(
                id=dek_id, tenant_id=tenant_id, sealed=sealed, created_at=time.time()))

    async def get_sealed(self, tenant_id: str, dek_ids: Collection[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        ids = list(dek_ids)
        async with self._db.connect() as conn:
            for start in range(0, len(ids), 500):
                q = sa.select(data_keys.c.id, data_keys.c.sealed).where(
                    data_keys.c.tenant_id == tenant_id, data_keys.c.id.in_(ids[start:start + 500]))
                found.update({bytes(r.id): bytes(r.sealed) for r in await conn.execute(q)})
        return found
