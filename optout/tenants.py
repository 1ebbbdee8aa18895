"""What the consent code needs to know about a tenant: its keys for writing (usable while the
vault is locked) and matching (the blind-index key: held by the tenant, so only while unlocked
under `passphrase` custody), and its recipient-facing settings."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.blind import blind_index, open_lookup_key, seal_lookup_key
from crypto.errors import CorruptDataError, VaultLockedError
from crypto.keys import public_key_of
from crypto.master import MasterKey
from crypto.vault import Keyring
from store.tables import tenant_settings, tenants

log = logging.getLogger(__name__)


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
    """Tenant profiles and blind indexes.

    A tenant's lookup key is sealed to the tenant (tenants.sealed_lookup_key) and opened from
    its unlocked vault (`keyring`), where it is kept until the lock wipes it. A master-wrapped
    copy (tenants.wrapped_lookup_key) exists only under `service` custody and for tenants made
    before migration 0030 that were not unlocked since; it is unwrapped once per process.
    Without either, `index` and `indexer` raise VaultLockedError: the caller keeps what it
    has sealed for later (optout.backlog)."""

    def __init__(self, master: MasterKey, keyring: Keyring | None = None):
        self._master = master
        self.keyring = keyring if keyring is not None else Keyring()
        self._master_keys: dict[str, bytes] = {}  # tenant -> key from the master-wrapped copy
        self._sealed: dict[str, bytes] = {}  # tenant -> sealed_lookup_key, as last read

    async def profile(self, conn: AsyncConnection, tenant_id: str) -> TenantProfile:
        q = sa.select(tenants.c.public_key, tenants.c.wrapped_lookup_key,
                      tenants.c.sealed_lookup_key, tenant_settings).join(
            tenant_settings, tenant_settings.c.tenant_id == tenants.c.id).where(
            tenants.c.id == tenant_id)
        row = (await conn.execute(q)).first()
        if row is None:
            raise TenantNotFoundError("no such tenant")
        self._note_keys(tenant_id, row.wrapped_lookup_key, row.sealed_lookup_key)
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
        """Blind index of an address; `profile` must have been loaded once for the tenant.
        VaultLockedError when the key is the tenant's and its vault is locked here."""
        return blind_index(self._key(tenant_id), normalised_address)

    async def indexer(self, conn: AsyncConnection, tenant_id: str):
        """A function address -> blind index for this tenant (the key read afresh);
        VaultLockedError as for `index`."""
        row = (await conn.execute(sa.select(
            tenants.c.wrapped_lookup_key, tenants.c.sealed_lookup_key).where(
            tenants.c.id == tenant_id))).first()
        if row is None:
            raise TenantNotFoundError("no such tenant")
        self._note_keys(tenant_id, row.wrapped_lookup_key, row.sealed_lookup_key)
        key = self._key(tenant_id)
        return lambda address: blind_index(key, address)

    def can_index(self, tenant_id: str) -> bool:
        """Whether `index` works for the tenant now (its key loaded by `profile`)."""
        try:
            self._key(tenant_id)
        except VaultLockedError:
            return False
        return True

    def _note_keys(self, tenant_id: str, wrapped: bytes | None, sealed: bytes | None) -> None:
        if sealed is None:
            self._sealed.pop(tenant_id, None)
        else:
            self._sealed[tenant_id] = bytes(sealed)
        if wrapped is None:  # moved to the tenant (or never the master's): forget it here
            self._master_keys.pop(tenant_id, None)
        elif tenant_id not in self._master_keys:
            self._master_keys[tenant_id] = self._master.unwrap(bytes(wrapped))

    def _key(self, tenant_id: str) -> bytes:
        sealed = self._sealed.get(tenant_id)
        if sealed is not None:
            try:
                return self.keyring.get(tenant_id).lookup_key(sealed)
            except VaultLockedError:
                if tenant_id not in self._master_keys:
                    raise
        if tenant_id in self._master_keys:  # `service` custody, or not migrated yet
            return self._master_keys[tenant_id]
        if sealed is None:
            raise KeyError("tenant profile not loaded")
        raise VaultLockedError("vault is locked")


async def hold_lookup_key(conn: AsyncConnection, master: MasterKey | None, tenant_id: str,
                          secret_key: bytes, custody: str) -> bool:
    """Puts the tenant's lookup key where its custody says, at an unlock or custody change
    (the caller's transaction): sealed to the tenant always, and master-wrapped only under
    `service`. A tenant made before migration 0030 moves its master-wrapped key, unchanged,
    into its own custody here (the indexes stay valid). Without `master` (a CLI unlock) a
    move that needs it waits for the next unlock. True when something changed."""
    row = (await conn.execute(sa.select(
        tenants.c.public_key, tenants.c.wrapped_lookup_key, tenants.c.sealed_lookup_key).where(
        tenants.c.id == tenant_id))).first()
    if row is None:
        raise TenantNotFoundError("no such tenant")
    public_key = bytes(row.public_key)
    if public_key_of(secret_key) != public_key:
        raise CorruptDataError("secret key does not belong to this tenant")
    sealed = None if row.sealed_lookup_key is None else bytes(row.sealed_lookup_key)
    wrapped = None if row.wrapped_lookup_key is None else bytes(row.wrapped_lookup_key)
    if sealed is not None:
        key = open_lookup_key(sealed, public_key, secret_key)
    elif wrapped is not None and master is not None:
        key = master.unwrap(wrapped)
        sealed = seal_lookup_key(key, public_key)
    elif wrapped is not None:
        return False
    else:
        raise CorruptDataError("tenant has no lookup key")
    if custody == "service" and master is None:
        return False
    if custody == "service":
        wanted = wrapped if wrapped is not None else master.wrap(key)
    else:
        wanted = None
    if row.sealed_lookup_key is not None and wanted == wrapped:
        return False
    result = await conn.execute(tenants.update().where(
        tenants.c.id == tenant_id,
        tenants.c.sealed_lookup_key.is_(None) if row.sealed_lookup_key is None
        else tenants.c.sealed_lookup_key == row.sealed_lookup_key).values(
        sealed_lookup_key=sealed, wrapped_lookup_key=wanted))
    if result.rowcount == 1 and row.sealed_lookup_key is None:
        log.info("lookup key moved to the tenant", extra={"tenant_id": tenant_id,
                                                          "custody": custody})
    return result.rowcount == 1


async def insert_defaults(conn: AsyncConnection, tenant_id: str, name: str) -> None:
    """Settings for a new tenant: its name is the sender identity and a brand for RET."""
    await conn.execute(tenant_settings.insert().values(
        tenant_id=tenant_id, sender_name=name, brand_names=[name]))


async def update_settings(conn: AsyncConnection, tenant_id: str, changes: dict) -> None:
    if changes:
        await conn.execute(tenant_settings.update().where(
            tenant_settings.c.tenant_id == tenant_id).values(**changes))
