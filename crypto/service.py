"""Field crypto for a tenant: creating data keys for writers and opening fields for readers.

Storage of sealed data keys is a port (`DataKeyStore`) so this package imports nothing of ours;
the composition root hands in the SQL implementation."""
from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from crypto.errors import VaultLockedError
from crypto.fields import FieldSealer, new_data_key
from crypto.vault import Keyring


class DataKeyStore(Protocol):
    async def add(self, tenant_id: str, dek_id: bytes, sealed: bytes) -> None: ...

    async def get_sealed(self, tenant_id: str,
                         dek_ids: Collection[bytes]) -> dict[bytes, bytes]: ...


class FieldCrypto:
    """Writers call `new_sealer` once per batch; readers call `open_fields` (needs an unlock)."""

    def __init__(self, keyring: Keyring, data_keys: DataKeyStore):
        self.keyring = keyring
        self._data_keys = data_keys

    async def new_sealer(self, tenant_id: str, public_key: bytes) -> FieldSealer:
        """A fresh data key, stored sealed to the tenant; works while the vault is locked."""
        key = new_data_key(public_key)
        await self._data_keys.add(tenant_id, key.dek_id, key.sealed)
        try:
            return self.keyring.get(tenant_id).sealer(key)  # readers then skip a seal-open
        except VaultLockedError:
            return FieldSealer(key.dek_id, key.dek)

    async def open_fields(self, tenant_id: str, blobs: Sequence[bytes]) -> list[bytes]:
        """Opens sealed fields; loads each unknown data key once. Raises VaultLockedError."""
        tenant = self.keyring.get(tenant_id)
        missing = tenant.missing_deks(blobs)
        if missing:
            tenant.add_sealed_deks(await self._data_keys.get_sealed(tenant_id, missing))
        return tenant.open_fields(blobs)
