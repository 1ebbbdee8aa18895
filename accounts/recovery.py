"""Recovery codes: the owner's way back in when the vault passphrase is forgotten.

A code is a second wrap of the tenant secret key (crypto.recovery), made at setup (or later,
while unlocked, for tenants made before codes existed) and shown once. Recovering with it sets
a new passphrase and replaces the code by a new one, also shown once: a code works one time.
Neither touches sealed data: the secret key stays the same, only its wraps change."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from accounts import ConflictError, check_passphrase, tenant_row
from crypto.keys import unwrap_secret, wrap_secret
from crypto.recovery import WrongRecoveryCodeError, new_code, unwrap_with_code, wrap_with_code
from crypto.vault import Keyring
from optout import audit
from store.engine import Database
from store.tenants import set_recovered, set_recovery_wrap

log = logging.getLogger(__name__)

Run = Callable[..., Awaitable[Any]]


async def _wrapped_code(secret: bytes, kdf: str, run: Run) -> tuple[str, bytes]:
    code = new_code()
    return code, await run(wrap_with_code, secret, code, kdf)


async def issue_code(db: Database, keyring: Keyring, tenant_id: str, actor: str,
                     kdf: str = "moderate", run: Run = asyncio.to_thread) -> str:
    """A new recovery code for an unlocked tenant (VaultLockedError otherwise); any earlier
    code stops working. Returned once: only its wrap is stored."""
    return await _issue(db, tenant_id, keyring.get(tenant_id).secret_key(), actor, kdf, run)


async def issue_code_with_passphrase(db: Database, tenant_id: str, passphrase: str,
                                     actor: str, kdf: str = "moderate",
                                     run: Run = asyncio.to_thread) -> str:
    """`issue_code` for a caller holding the passphrase instead of an unlock (the CLI);
    WrongPassphraseError."""
    row = await tenant_row(db, tenant_id)
    secret = await run(unwrap_secret, row.wrapped_secret, passphrase)
    return await _issue(db, tenant_id, secret, actor, kdf, run)


async def _issue(db: Database, tenant_id: str, secret: bytes, actor: str, kdf: str,
                 run: Run) -> str:
    code, wrapped = await _wrapped_code(secret, kdf, run)
    async with db.begin() as conn:
        await set_recovery_wrap(conn, tenant_id, wrapped)
        await audit.record(conn, tenant_id, actor, "vault.recovery_code")
    log.info("recovery code issued", extra={"tenant_id": tenant_id})
    return code


async def has_code(db: Database, tenant_id: str) -> bool:
    return (await tenant_row(db, tenant_id)).recovery_wrapped_secret is not None


async def recover(db: Database, tenant_id: str, code: str, new_passphrase: str, actor: str,
                  kdf: str = "moderate", min_length: int = 12, run: Run = asyncio.to_thread
                  ) -> str:
    """Sets `new_passphrase` with the recovery code and returns the code that replaces it.
    WeakPassphraseError first (nothing hashed), then WrongRecoveryCodeError (no code made yet
    counts as a wrong one: the caller learns nothing more)."""
    row = await tenant_row(db, tenant_id)
    new_passphrase = check_passphrase(new_passphrase, min_length, (row.name,))
    if row.recovery_wrapped_secret is None:
        raise WrongRecoveryCodeError("wrong recovery code")
    secret = await run(unwrap_with_code, row.recovery_wrapped_secret, code)
    wrapped = await run(wrap_secret, secret, new_passphrase, kdf)
    next_code, next_wrap = await _wrapped_code(secret, kdf, run)
    async with db.begin() as conn:
        if not await set_recovered(conn, tenant_id, row.recovery_wrapped_secret, wrapped,
                                   next_wrap):
            raise ConflictError("the recovery code was used or replaced meanwhile",
                                "recovery_changed")
        await audit.record(conn, tenant_id, actor, "vault.recover")
    log.info("vault passphrase reset with the recovery code", extra={"tenant_id": tenant_id})
    return next_code
