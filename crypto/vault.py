"""What is unlocked in this process: tenant secret keys with a TTL and their cached data keys."""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions

from crypto.blind import open_lookup_key
from crypto.errors import CorruptDataError, MissingDataKeyError, VaultLockedError
from crypto.fields import (
    DEK_BYTES,
    DEK_ID_BYTES,
    FieldSealer,
    NewDataKey,
    dek_id_of,
    open_field_with,
)
from crypto.keys import public_key_of

log = logging.getLogger(__name__)


class UnlockedTenant:
    """A tenant's secret key in memory plus every DEK opened with it (dek_id -> dek)."""

    __slots__ = ("_deks", "_lookup_key", "_public_key", "_secret_key")

    def __init__(self, secret_key: bytes) -> None:
        self._public_key = public_key_of(secret_key)
        self._secret_key: bytes | None = bytes(secret_key)
        self._deks: dict[bytes, bytes] = {}
        self._lookup_key: bytes | None = None  # the blind-index key, once opened

    def __repr__(self) -> str:
        state = "wiped" if self._secret_key is None else f"{len(self._deks)} data keys"
        return f"UnlockedTenant(public_key={self._public_key.hex()}, {state})"

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def secret_key(self) -> bytes:
        """Only for wrapping under the master key when the tenant chose `service` custody."""
        if self._secret_key is None:
            raise VaultLockedError("vault is locked")
        return self._secret_key

    def holds(self, secret_key: bytes) -> bool:
        """True when this is the same secret key (constant-time compare)."""
        return self._secret_key is not None and hmac.compare_digest(self._secret_key, secret_key)

    def lookup_key(self, sealed: bytes) -> bytes:
        """The tenant's blind-index key (crypto.blind.seal_lookup_key's blob), opened once and
        kept until the lock wipes it."""
        secret_key = self.secret_key()
        if self._lookup_key is None:
            self._lookup_key = open_lookup_key(sealed, self._public_key, secret_key)
        return self._lookup_key

    def cached_lookup_key(self) -> bytes | None:
        """The blind-index key when already opened; None before (or after a wipe)."""
        return self._lookup_key if self._secret_key is not None else None

    def open_sealed(self, sealed: bytes) -> bytes:
        """A crypto_box_seal blob to this tenant (sealed inbound, optout.backlog) opened."""
        secret_key = self.secret_key()
        try:
            return nacl.bindings.crypto_box_seal_open(sealed, self._public_key, secret_key)
        except (nacl.exceptions.CryptoError, TypeError):
            raise CorruptDataError("sealed item does not open with this tenant's key") from None

    def missing_deks(self, blobs: Iterable[bytes]) -> set[bytes]:
        """Ids of the DEKs these field blobs need that are not cached yet."""
        deks = self._deks
        return {dek_id for dek_id in map(dek_id_of, blobs) if dek_id not in deks}

    def add_sealed_deks(self, sealed_by_id: Mapping[bytes, bytes]) -> None:
        """Open each sealed DEK once (crypto_box_seal_open, ~35 µs) and cache it."""
        secret_key = self.secret_key()
        opened = {
            dek_id: self._open_sealed_dek(dek_id, sealed, secret_key)
            for dek_id, sealed in sealed_by_id.items()
            if dek_id not in self._deks
        }
        self._deks.update(opened)  # all or nothing: one forged DEK caches none of the batch
        log.debug("cached %d data keys", len(opened))

    def remember_dek(self, dek_id: bytes, dek: bytes) -> None:
        """Cache a DEK this process just created, so its fields open without a seal-open."""
        if len(dek_id) != DEK_ID_BYTES or len(dek) != DEK_BYTES:
            raise ValueError("data key id must be 16 bytes and data key 32 bytes")
        self.secret_key()  # refuse after wipe
        self._deks[dek_id] = dek

    def sealer(self, new_key: NewDataKey) -> FieldSealer:
        """A sealer for a fresh DEK, remembered here so reading back needs no seal-open."""
        self.remember_dek(new_key.dek_id, new_key.dek)
        return FieldSealer(new_key.dek_id, new_key.dek)

    def open_field(self, blob: bytes) -> bytes:
        """Plaintext of one field blob; its DEK must be cached (see `missing_deks`)."""
        try:
            return open_field_with(self._deks, blob)
        except MissingDataKeyError:
            self.secret_key()  # a wiped tenant says "locked", not "missing key"
            raise

    def open_fields(self, blobs: Iterable[bytes]) -> list[bytes]:
        """Plaintexts of many field blobs, in order."""
        deks = self._deks
        try:
            return [open_field_with(deks, blob) for blob in blobs]
        except MissingDataKeyError:
            self.secret_key()
            raise

    def wipe(self) -> None:
        """Drop the secret key and DEKs. Best effort: Python cannot reliably zero memory
        (bytes are immutable and may have been copied), so this only drops our references
        and makes any later use of this object raise VaultLockedError."""
        self._secret_key = None
        self._deks = {}
        self._lookup_key = None

    def _open_sealed_dek(self, dek_id: bytes, sealed: bytes, secret_key: bytes) -> bytes:
        if len(dek_id) != DEK_ID_BYTES:
            raise CorruptDataError("data key id must be 16 bytes")
        try:
            dek = nacl.bindings.crypto_box_seal_open(sealed, self._public_key, secret_key)
        except (nacl.exceptions.CryptoError, TypeError):
            raise CorruptDataError("sealed data key does not open with this tenant's key") from None
        if len(dek) != DEK_BYTES:
            raise CorruptDataError("sealed data key has the wrong length")
        return dek


def open_str(tenant: UnlockedTenant, blob: bytes) -> str:
    """Open a field sealed with `seal_str`."""
    try:
        return tenant.open_field(blob).decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptDataError("sealed field is not UTF-8 text") from None


@dataclass
class _Entry:
    tenant: UnlockedTenant
    expires_at: float


class Keyring:
    """Tenants unlocked in this process, each until an expiry instant on `clock`.

    Expiry is checked on every access, so a tenant is locked the moment its TTL passes even
    if no timer runs; `lock_expired` only frees memory sooner.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        # Unlock/lock may come from the event loop and from worker threads at once.
        self._lock = threading.Lock()

    def unlock(self, tenant_id: str, secret_key: bytes, ttl_seconds: float) -> float:
        """Hold `secret_key` for `ttl_seconds`; returns the expiry instant on the clock.

        Unlocking again with the same key sets a fresh expiry and keeps the DEK cache.
        """
        if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
            raise ValueError("ttl_seconds must be a positive number")
        with self._lock:
            now = self._clock()
            entry = self._live(tenant_id, now)
            if entry is not None and entry.tenant.holds(secret_key):
                entry.expires_at = now + ttl_seconds
            else:
                if entry is not None:
                    entry.tenant.wipe()  # a different key (rotation): its DEKs are not ours
                entry = _Entry(UnlockedTenant(secret_key), now + ttl_seconds)
                self._entries[tenant_id] = entry
        log.info("vault unlocked for tenant %s for %.0f s", tenant_id, ttl_seconds)
        return entry.expires_at

    def lock(self, tenant_id: str) -> None:
        """Forget the tenant's keys now; locking a locked tenant is a no-op."""
        with self._lock:
            entry = self._entries.pop(tenant_id, None)
        if entry is not None:
            entry.tenant.wipe()
            log.info("vault locked for tenant %s", tenant_id)

    def is_unlocked(self, tenant_id: str) -> bool:
        with self._lock:
            return self._live(tenant_id, self._clock()) is not None

    def get(self, tenant_id: str) -> UnlockedTenant:
        """The unlocked tenant; VaultLockedError when locked or expired."""
        with self._lock:
            entry = self._live(tenant_id, self._clock())
        if entry is None:
            raise VaultLockedError("vault is locked")
        return entry.tenant

    def expires_at(self, tenant_id: str) -> float | None:
        with self._lock:
            entry = self._live(tenant_id, self._clock())
        return None if entry is None else entry.expires_at

    def lock_expired(self) -> list[str]:
        """Lock every tenant whose TTL has passed; returns their ids (for a periodic timer)."""
        with self._lock:
            now = self._clock()
            expired = [tid for tid, e in self._entries.items() if now >= e.expires_at]
            for tenant_id in expired:
                self._entries.pop(tenant_id).tenant.wipe()
        for tenant_id in expired:
            log.info("vault auto-locked for tenant %s", tenant_id)
        return expired

    def unlocked_ids(self) -> list[str]:
        with self._lock:
            now = self._clock()
            return [tid for tid, e in self._entries.items() if now < e.expires_at]

    def _live(self, tenant_id: str, now: float) -> _Entry | None:
        # Caller holds self._lock. An expired entry is wiped here, on first sight.
        entry = self._entries.get(tenant_id)
        if entry is not None and now >= entry.expires_at:
            del self._entries[tenant_id]
            entry.tenant.wipe()
            log.info("vault auto-locked for tenant %s", tenant_id)
            return None
        return entry
