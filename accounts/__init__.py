"""The accounts domain: tenants, their API keys, vault unlock/lock and key custody (dashboard
users and sessions: accounts.users; passphrase strength: accounts.passphrase).

Below the web layer: the dashboard's API handlers, its pages and the CLI call these functions;
nothing here imports `dashboard` or `izinli`. The cluster-wide unlock (dashboard.vault_fanout)
is passed in as a `VaultSync`, the interface this package declares for it."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from accounts.passphrase import Strength, estimate
from campaigns.lines import add_sandbox_line
from crypto.blind import new_lookup_key, seal_lookup_key
from crypto.keys import new_tenant_keys, unwrap_secret, wrap_secret
from crypto.master import MasterKey
from crypto.vault import Keyring
from optout import audit
from optout.names import seal_name
from optout.tenants import hold_lookup_key, insert_defaults
from store.engine import Database
from store.tenants import (
    TenantRow,
    get_api_key,
    get_tenant,
    insert_api_key,
    insert_tenant,
    list_api_keys,
    list_tenants,
    revoke_api_key,
    set_wrapped_secret,
)

log = logging.getLogger(__name__)

API_KEY_PREFIX = "izk"
CUSTODIES = ("passphrase", "service")
# Dashboard users and API keys share these roles, weakest first.
ROLES = ("viewer", "operator", "admin", "owner")
DEFAULT_KEY_ROLE = "admin"
# Unattended tenants stay unlocked for a year at a time; re-applied at every start.
SERVICE_TTL = 365 * 24 * 3600.0


class VaultSync(Protocol):
    """Unlock, lock and custody in every process of the cluster (dashboard.vault_fanout)."""

    async def unlock(self, tenant_id: str, secret_key: bytes, ttl_seconds: float) -> float: ...

    async def lock(self, tenant_id: str) -> None: ...

    async def change_custody(self, tenant_id: str, custody: str, ttl_seconds: float
                             ) -> None: ...


class AccountError(Exception):
    """A request about an account that cannot be honoured; `code` is stable."""

    code = "invalid_request"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code or self.code


class NotFoundError(AccountError):
    code = "not_found"


class ConflictError(AccountError):
    """The request clashes with the account's state (a disabled user, the last owner)."""

    code = "conflict"


class ForbiddenError(AccountError):
    """The caller is known but its role does not allow this."""

    code = "forbidden"


def at_least(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def check_role_grant(role: str, granted_by_key: str | None) -> str:
    """`role` when the caller may hand it out. An API key (`granted_by_key` is its role) never
    makes an owner and never more than itself: a leaked key must not outrank the business's
    owners or lock them out. Dashboard owners (None) may grant any role."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}", "invalid_role")
    if granted_by_key is not None and (role == "owner" or not at_least(granted_by_key, role)):
        raise ForbiddenError("an API key cannot grant the owner role or a role above its own",
                             "role_not_allowed")
    return role


class WeakPassphraseError(AccountError):
    """A vault passphrase too short or too easy to guess; `strength` says why, in Turkish and
    English, and the API answers it as `details.feedback`."""

    code = "weak_passphrase"

    def __init__(self, message: str, strength: Strength):
        super().__init__(message)
        self.strength = strength
        self.details = {"feedback": strength.feedback()}


def check_passphrase(passphrase: str, min_length: int, hints: Iterable[str] = ()) -> str:
    """The passphrase as it will be used (NFC), or WeakPassphraseError saying what is wrong
    with it: shorter than `min_length`, or easy to guess (accounts.passphrase; `hints` are
    words an attacker would try first: the business's name, the owner's e-mail)."""
    passphrase = unicodedata.normalize("NFC", passphrase)
    strength = estimate(passphrase, hints)
    if len(passphrase) < min_length:
        raise WeakPassphraseError(f"passphrase must be at least {min_length} characters",
                                  strength)
    if not strength.strong:
        raise WeakPassphraseError(f"the passphrase is too easy to guess: {strength.text('en')}",
                                  strength)
    return passphrase


async def create_tenant(db: Database, master: MasterKey, name: str, passphrase: str,
                        kdf: str = "moderate", min_length: int = 12,
                        run: Callable[..., Awaitable[Any]] = asyncio.to_thread,
                        hints: Iterable[str] = ()) -> tuple[str, str]:
    """Creates a tenant with its key pair and a first API key; returns (tenant_id, api_key).
    `run` runs the passphrase hash off the loop (the web passes its bounded HashSlots.run);
    `hints`: more words the passphrase must not lean on (the owner's e-mail)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise AccountError("tenant name must be 1 to 200 characters", "invalid_name")
    passphrase = check_passphrase(passphrase, min_length, (name, *hints))
    keys = await run(new_tenant_keys, passphrase, kdf)
    row = TenantRow(id=str(uuid.uuid4()), name=name, created_at=time.time(),
                    public_key=keys.public_key, wrapped_secret=keys.wrapped_secret,
                    wrapped_lookup_key=None, custody="passphrase", service_wrapped_secret=None,
                    # held by the tenant only: the master key cannot find its numbers
                    sealed_lookup_key=seal_lookup_key(new_lookup_key(), keys.public_key))
    async with db.begin() as conn:
        await insert_tenant(conn, row)
        await insert_defaults(conn, row.id, name)
        await add_sandbox_line(conn, row.id)
        api_key = await _new_api_key(conn, row.id, "default")
        await audit.record(conn, row.id, "cli", "tenant.create")
    log.info("tenant created", extra={"tenant_id": row.id})
    return row.id, api_key


async def _new_api_key(conn, tenant_id: str, name: str, role: str = DEFAULT_KEY_ROLE) -> str:
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    await insert_api_key(conn, key_id, tenant_id, await seal_name(conn, tenant_id, name),
                         _hash_secret(secret), role)
    return f"{API_KEY_PREFIX}_{key_id}_{secret}"


async def issue_api_key(db: Database, tenant_id: str, passphrase: str, name: str) -> str:
    """Another API key for the tenant; the passphrase proves the caller owns it."""
    row = await tenant_row(db, tenant_id)
    await asyncio.to_thread(unwrap_secret, row.wrapped_secret,
                            unicodedata.normalize("NFC", passphrase))
    async with db.begin() as conn:
        key = await _new_api_key(conn, tenant_id, name)
        await audit.record(conn, tenant_id, "cli", "api_key.issue",
                           key_id=key.split("_", 2)[1])
    log.info("api key issued", extra={"tenant_id": tenant_id})
    return key


async def create_api_key(db: Database, tenant_id: str, name: str, actor: str,
                         role: str = DEFAULT_KEY_ROLE, granted_by_key: str | None = None
                         ) -> tuple[str, str]:
    """Another API key for a caller already proven to act for the tenant (an API key, whose
    role is `granted_by_key`, or a dashboard owner who re-entered their password); returns
    (key id, key), shown once."""
    name = name.strip()
    if not name or len(name) > 100:
        raise AccountError("the key name must be 1 to 100 characters", "invalid_name")
    check_role_grant(role, granted_by_key)
    async with db.begin() as conn:
        key = await _new_api_key(conn, tenant_id, name, role)
        key_id = key.split("_", 2)[1]
        await audit.record(conn, tenant_id, actor, "api_key.create", key_id=key_id, role=role)
    log.info("api key issued", extra={"tenant_id": tenant_id})
    return key_id, key


async def api_keys_of(db: Database, tenant_id: str) -> list[dict]:
    """The tenant's API keys (never their secrets); the name sealed (optout.names)."""
    async with db.connect() as conn:
        rows = await list_api_keys(conn, tenant_id)
    return [{"id": r.id, "name_sealed": r.name_sealed, "created_at": r.created_at,
             "revoked_at": r.revoked_at, "role": r.role} for r in rows]


async def revoke_key(db: Database, tenant_id: str, key_id: str, actor: str) -> None:
    """Revokes an API key at once: it stops authenticating. NotFoundError when unknown or
    already revoked."""
    async with db.begin() as conn:
        if not await revoke_api_key(conn, tenant_id, key_id, time.time()):
            raise NotFoundError("no such API key in force")
        await audit.record(conn, tenant_id, actor, "api_key.revoke", key_id=key_id)
    log.info("api key revoked", extra={"tenant_id": tenant_id})


def _hash_secret(secret: str) -> bytes:
    # API keys carry 256 random bits, so a fast hash is enough (no offline guessing possible).
    return hashlib.blake2b(secret.encode(), digest_size=32, person=b"izinli-apikey").digest()


async def authenticate(db: Database, api_key: str) -> tuple[str, str, str] | None:
    """(tenant id, key id, role) of a valid API key, or None (unknown, malformed, revoked)."""
    prefix, _, rest = api_key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != API_KEY_PREFIX or not key_id or not secret:
        return None
    async with db.connect() as conn:
        row = await get_api_key(conn, key_id)
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, _hash_secret(secret)):
        return None
    return row.tenant_id, row.id, row.role


async def tenant_row(db: Database, tenant_id: str) -> TenantRow:
    async with db.connect() as conn:
        row = await get_tenant(conn, tenant_id)
    if row is None:
        raise NotFoundError("no such tenant")
    return row


async def change_passphrase(db: Database, tenant_id: str, passphrase: str, new_passphrase: str,
                            actor: str, kdf: str = "moderate", min_length: int = 12,
                            run: Callable[..., Awaitable[Any]] = asyncio.to_thread) -> None:
    """Wraps the tenant's secret key under a new passphrase. The new one is checked first
    (WeakPassphraseError), then the current one proves the caller knows it
    (WrongPassphraseError). Unlocks in force, custody and sealed data stay as they are."""
    row = await tenant_row(db, tenant_id)
    new_passphrase = check_passphrase(new_passphrase, min_length, (row.name,))
    secret = await run(unwrap_secret, row.wrapped_secret, unicodedata.normalize("NFC", passphrase))
    wrapped = await run(wrap_secret, secret, new_passphrase, kdf)
    async with db.begin() as conn:
        changed = await set_wrapped_secret(conn, tenant_id, row.wrapped_secret, wrapped)
        if not changed:
            raise ConflictError("the passphrase was changed meanwhile; try again",
                                "passphrase_changed")
        await audit.record(conn, tenant_id, actor, "vault.passphrase")
    log.info("vault passphrase changed", extra={"tenant_id": tenant_id})


async def unlock(db: Database, keyring: Keyring, tenant_id: str, passphrase: str,
                 ttl_seconds: float, run: Callable[..., Awaitable[Any]] = asyncio.to_thread,
                 fanout: VaultSync | None = None, master: MasterKey | None = None) -> float:
    """Unwraps the tenant key into memory for `ttl_seconds`, in every process of the cluster
    when `fanout` is given (the server's), else in `keyring` only (a CLI command, a bench).
    A tenant made before migration 0030 takes its lookup key into its own custody first
    (`master`, else the fan-out's, unwraps the old copy). Raises WrongPassphraseError."""
    row = await tenant_row(db, tenant_id)
    passphrase = unicodedata.normalize("NFC", passphrase)
    # Argon2id takes ~0.5 s and 256 MiB at MODERATE: keep it off the event loop.
    secret = await run(unwrap_secret, row.wrapped_secret, passphrase)
    if row.sealed_lookup_key is None or (row.custody != "service"
                                         and row.wrapped_lookup_key is not None):
        async with db.begin() as conn:
            await hold_lookup_key(conn, master or getattr(fanout, "master", None), tenant_id,
                                  secret, row.custody)
    if fanout is not None:
        expires = await fanout.unlock(tenant_id, secret, ttl_seconds)
    else:
        expires = keyring.unlock(tenant_id, secret, ttl_seconds)
    log.info("vault unlocked", extra={"tenant_id": tenant_id, "ttl_seconds": ttl_seconds})
    return expires


async def lock(keyring: Keyring, tenant_id: str, fanout: VaultSync | None = None) -> None:
    """Locks now: here at once, and in every other process (within a second) with `fanout`."""
    if fanout is not None:
        await fanout.lock(tenant_id)
    keyring.lock(tenant_id)
    log.info("vault locked", extra={"tenant_id": tenant_id})


async def change_custody(fanout: VaultSync, tenant_id: str, custody: str,
                         ttl_seconds: float) -> None:
    """Switches key custody in every process; only while unlocked (VaultLockedError
    otherwise). Back to `passphrase`, the unlock goes on for `ttl_seconds`."""
    if custody not in CUSTODIES:
        raise AccountError(f"custody must be one of {', '.join(CUSTODIES)}", "invalid_custody")
    await fanout.change_custody(tenant_id, custody, ttl_seconds)
    log.info("key custody changed", extra={"tenant_id": tenant_id, "custody": custody})


async def unlock_service_custody(db: Database, keyring: Keyring, master: MasterKey) -> int:
    """Unlocks every tenant whose owner chose `service` custody; returns how many."""
    async with db.connect() as conn:
        rows = [r for r in await list_tenants(conn) if r.custody == "service"]
    for row in rows:
        if row.service_wrapped_secret:
            try:  # a damaged row leaves that tenant locked; the server still starts for all
                secret = master.unwrap(row.service_wrapped_secret)
                if row.sealed_lookup_key is None:  # made before migration 0030
                    async with db.begin() as conn:
                        await hold_lookup_key(conn, master, row.id, secret, "service")
                keyring.unlock(row.id, secret, SERVICE_TTL)
            except Exception as exc:
                log.error("service custody unlock failed", extra={
                    "tenant_id": row.id, "error": type(exc).__name__})
    return len(rows)
