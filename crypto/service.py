"""Field crypto for a tenant: creating data keys for writers and opening fields for readers.

Storage of sealed data keys is a port (`DataKeyStore`) so this package imports nothing of ours;
the composition root hands in the SQL implementation."""
from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Protocol

from crypto.errors import VaultLockedError
from crypto.fields import FieldSealer, dek_id_of, new_data_key
from crypto.vault import Keyring

# How long one shared data key is used before a fresh one is made.
SHARED_KEY_SECONDS = 3600.0


class DataKeyStore(Protocol):
    async def add(self, tenant_id: str, dek_id: bytes, sealed: bytes) -> None: ...

    async def get_sealed(self, tenant_id: str,
                         dek_ids: Collection[bytes]) -> dict[bytes, bytes]: ...


class FieldCrypto:
    """Writers call `new_sealer` once per batch; readers call `open_fields` (needs an unlock)."""

    def __init__(self, keyring: Keyring, data_keys: DataKeyStore):
        self.keyring = keyring
        self._data_keys = data_keys
        self._shared: dict[str, tuple[FieldSealer, float]] = {}

    async def shared_sealer(self, tenant_id: str, public_key: bytes) -> FieldSealer:
        """A data key reused by small writers (inbound messages, sandbox deliveries) for a
        while, so each of them does not cost a sealed box and a row of its own."""
        cached = self._shared.get(tenant_id)
        if cached and time.monotonic() - cached[1] < SHARED_KEY_SECONDS:
            return cached[0]
        sealer = await self.new_sealer(tenant_id, public_key)
        self._shared[tenant_id] = (sealer, time.monotonic())
        return sealer

    async def new_sealer(self, tenant_id: str, public_key: bytes) -> FieldSealer:
        """A fresh data key, stored sealed to the tenant; works while the vault is locked."""
        key = new_data_key(public_key)
        await self._data_keys.add(tenant_id, key.dek_id, key.sealed)
        try:
            return self.keyring.get(tenant_id).sealer(key)  # readers then skip a seal-open
        except VaultLockedError:
            return FieldSealer(key.dek_id, key.dek)

    async def sealed_keys_for(self, tenant_id: str,
                              blobs: Sequence[bytes]) -> dict[bytes, bytes]:
        """The sealed DEKs (dek_id -> sealed to the tenant) the blobs need; no unlock needed."""
        return await self._data_keys.get_sealed(tenant_id, {dek_id_of(b) for b in blobs})

    async def open_fields(self, tenant_id: str, blobs: Sequence[bytes]) -> list[bytes]:
        """Opens sealed fields; loads each unknown data key once. Raises VaultLockedError."""
        tenant = self.keyring.get(tenant_id)
        missing = tenant.missing_deks(blobs)
        if missing:
            tenant.add_sealed_deks(await self._data_keys.get_sealed(tenant_id, missing))
        return tenant.open_fields(blobs)
