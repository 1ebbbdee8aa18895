"""What the consent code needs to know about a tenant: its keys for writing and matching
(usable while the vault is locked) and its recipient-facing settings."""
from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.blind import blind_index
from crypto.master import MasterKey
from store.tables import tenant_settings, tenants


@dataclass(frozen=True)
class TenantProfile:
    id: str
    public_key: bytes
    sender_name: str
    sender_contact: str
    language: str
    brand_names: tuple[str, ...]
    iys_enabled: bool
    iys_code: str | None
    iys_brand_code: str | None
    timezone: str
    quiet_hours: bool = False
    quiet_start_hour: int = 9
    quiet_end_hour: int = 21
    has_merchant_contacts: bool = False
    iys_connected: bool = False
    frequency_cap: int = 3  # commercial messages per person per window; 0: no cap
    frequency_window_days: int = 7


class TenantNotFoundError(Exception):
    code = "not_found"


class TenantDirectory:
    """Tenant profiles and blind indexes. The lookup key is unwrapped once per process."""

    def __init__(self, master: MasterKey):
        self._master = master
        self._lookup_keys: dict[str, bytes] = {}

    async def profile(self, conn: AsyncConnection, tenant_id: str) -> TenantProfile:
        q = sa.select(tenants.c.public_key, tenants.c.wrapped_lookup_key, tenant_settings).join(
            tenant_settings, tenant_settings.c.tenant_id == tenants.c.id).where(
            tenants.c.id == tenant_id)
        row = (await conn.execute(q)).first()
        if row is None:
            raise TenantNotFoundError("no such tenant")
        if tenant_id not in self._lookup_keys:
            self._lookup_keys[tenant_id] = self._master.unwrap(row.wrapped_lookup_key)
        names = row.brand_names if isinstance(row.brand_names, list) else json.loads(
            row.brand_names or "[]")
        return TenantProfile(
            id=tenant_id, public_key=bytes(row.public_key), sender_name=row.sender_name,
            sender_contact=row.sender_contact, language=row.language,
            brand_names=tuple(names), iys_enabled=bool(row.iys_enabled), iys_code=row.iys_code,
            iys_brand_code=row.iys_brand_code, timezone=row.timezone,
            quiet_hours=bool(row.quiet_hours), quiet_start_hour=row.quiet_start_hour,
            quiet_end_hour=row.quiet_end_hour,
            has_merchant_contacts=bool(row.has_merchant_contacts),
            iys_connected=row.iys_credentials is not None,
            frequency_cap=row.frequency_cap, frequency_window_days=row.frequency_window_days)

    def index(self, tenant_id: str, normalised_address: str) -> bytes:
        """Blind index of an address; `profile` must have been loaded once for the tenant."""
        return blind_index(self._lookup_keys[tenant_id], normalised_address)

    async def indexer(self, conn: AsyncConnection, tenant_id: str):
        """A function address -> blind index for this tenant (loads the key if needed)."""
        if tenant_id not in self._lookup_keys:
            await self.profile(conn, tenant_id)
        key = self._lookup_keys[tenant_id]
        return lambda address: blind_index(key, address)


async def insert_defaults(conn: AsyncConnection, tenant_id: str, name: str) -> None:
    """Settings for a new tenant: its name is the sender identity and a brand for RET."""
    await conn.execute(tenant_settings.insert().values(
        tenant_id=tenant_id, sender_name=name, brand_names=[name]))


async def update_settings(conn: AsyncConnection, tenant_id: str, changes: dict) -> None:
    if changes:
        await conn.execute(tenant_settings.update().where(
            tenant_settings.c.tenant_id == tenant_id).values(**changes))
