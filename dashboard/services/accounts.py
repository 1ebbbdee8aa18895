"""Account services: first-run setup, the vault (status, unlock, lock, custody, passphrase),
dashboard users and API keys — what the JSON API and the pages both do, on the accounts domain.

Roles: the caller's role was checked by the route (an API operation's or a page's); what
depends on the arguments (an API key granting or touching a role above its own) is checked
here. `key_role(ctx)` is the calling API key's role, None for a dashboard user."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import accounts
from accounts import recovery, users
from crypto.errors import WrongPassphraseError
from dashboard import notices
from dashboard.keys import (
    db_key,
    fanout_key,
    hash_slots_key,
    keyring_key,
    master_key,
    sessions_key,
    settings_key,
    unlock_failures_key,
)
from dashboard.ratelimit import FailureLimiter, reserve
from dashboard.services import Context
from dashboard.services.names import opened
from optout import audit


# Argon2id already costs ~0.5 s per guess; this caps a stolen API key (or session) at 5 guesses
# of the vault passphrase per 5 min per tenant, over unlocks and passphrase changes together
# (the CLI has no such limit: the operator's shell always works).
def setup(app) -> None:
    """Puts the unlock failure limiter into the application (dashboard.api.vault does)."""
    app[unlock_failures_key] = FailureLimiter(limit=5, window_seconds=300)


def key_role(ctx: Context) -> str | None:
    """The calling API key's role; None for a dashboard user (the page checked theirs)."""
    return ctx.role if ctx.actor.startswith("api_key:") else None


def entry_point(ctx: Context) -> str:
    """Which entry point acted, as security notices name it."""
    return "panel" if ctx.actor.startswith("user:") else "API"


async def _notify(ctx: Context, kind: str) -> None:
    await notices.security_notice(ctx.components, ctx.tenant_id, kind, entry_point(ctx))


# --- first run -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetupDone:
    tenant_id: str
    api_key: str  # the first API key, shown once
    owner: Any  # the owner's user row, to start their session with
    recovery_code: str = ""  # shown once, printable (accounts.recovery)


async def set_up_business(components: Mapping[Any, Any], business: str, email: str,
                          password: str, passphrase: str) -> SetupDone:
    """Creates the business, its owner and first API key, and leaves the vault unlocked for
    the usual unlock time: the owner typed the passphrase a moment ago and should not have to
    again. AccountError (WeakPassphraseError among them) for what cannot be taken;
    HashBusyError when the server is busy hashing."""
    settings, master, db = components[settings_key], components[master_key], components[db_key]
    run = components[hash_slots_key].run
    users.check_email(email)
    users.check_password(password)
    tenant_id, api_key = await accounts.create_tenant(
        db, master, business, passphrase, kdf=settings.kdf,
        min_length=settings.min_passphrase_length, run=run, hints=(email,))
    await users.create_user(db, master, tenant_id, email, password, "owner", "setup",
                            kdf=settings.kdf, run=run)
    # Not through the slots from here: the business exists now, and its owner must be signed
    # in and find the vault open.
    ttl = float(settings.unlock_ttl_seconds)
    await accounts.unlock(db, components[keyring_key], tenant_id, passphrase, ttl,
                          fanout=components.get(fanout_key))
    await audit.write(db, tenant_id, "setup", "vault.unlock", ttl_seconds=ttl)
    code = await recovery.issue_code(db, components[keyring_key], tenant_id, "setup",
                                     settings.kdf)
    owner = await users.authenticate(db, master, email, password, settings.kdf)
    return SetupDone(tenant_id, api_key, owner, code)


# --- the vault -------------------------------------------------------------------------------

@dataclass(frozen=True)
class VaultStatus:
    unlocked: bool
    expires_in_seconds: int | None
    custody: str  # passphrase or service


async def vault_status(ctx: Context) -> VaultStatus:
    row = await accounts.tenant_row(ctx[db_key], ctx.tenant_id)
    expires = ctx[keyring_key].expires_at(ctx.tenant_id)
    remaining = None if expires is None else max(0, round(expires - time.monotonic()))
    return VaultStatus(expires is not None, remaining, row.custody)


async def _guessing(ctx: Context, check):
    """Runs `check` (which hashes a passphrase guess) counted against the tenant's guesses:
    TooManyAttemptsError before the hash when they are used up; a wrong guess stays counted,
    anything else (busy, the database, success) gives the attempt back."""
    attempt = reserve((ctx[unlock_failures_key], ctx.tenant_id))
    try:
        result = await check()
    except WrongPassphraseError:
        raise
    except BaseException:
        attempt.forgive()  # nothing was checked, or not a guess: it must not use up attempts
        raise
    attempt.forgive()
    return result


async def unlock_vault(ctx: Context, passphrase: str, ttl_seconds: float | None = None
                       ) -> None:
    """Unlocks for `ttl_seconds` (the configured default when None). AccountError
    (invalid_field) for a duration out of range; TooManyAttemptsError, HashBusyError,
    WrongPassphraseError (audited as vault.unlock_failed)."""
    settings = ctx[settings_key]
    ttl = float(settings.unlock_ttl_seconds) if ttl_seconds is None else ttl_seconds
    if not 1 <= ttl <= settings.max_unlock_ttl_seconds:
        raise accounts.AccountError(
            f"'ttl_seconds' must be between 1 and {settings.max_unlock_ttl_seconds}",
            "invalid_field")
    try:
        await _guessing(ctx, lambda: accounts.unlock(
            ctx[db_key], ctx[keyring_key], ctx.tenant_id, passphrase, ttl,
            run=ctx[hash_slots_key].run, fanout=ctx[fanout_key]))
    except WrongPassphraseError:
        await audit.write(ctx[db_key], ctx.tenant_id, ctx.actor, "vault.unlock_failed")
        raise
    await audit.write(ctx[db_key], ctx.tenant_id, ctx.actor, "vault.unlock", ttl_seconds=ttl)
    await _notify(ctx, "security_unlock")


async def lock_vault(ctx: Context) -> None:
    await accounts.lock(ctx[keyring_key], ctx.tenant_id, ctx[fanout_key])
    await audit.write(ctx[db_key], ctx.tenant_id, ctx.actor, "vault.lock")


async def change_custody(ctx: Context, custody: str) -> VaultStatus:
    """Only while unlocked (VaultLockedError). Back to passphrase custody, the unlock in force
    goes on, at most for the usual unlock time when it was an unattended one."""
    row = await accounts.tenant_row(ctx[db_key], ctx.tenant_id)
    remaining = (ctx[keyring_key].expires_at(ctx.tenant_id) or 0.0) - time.monotonic()
    ttl = remaining if row.custody == "passphrase" else min(
        remaining, float(ctx[settings_key].unlock_ttl_seconds))
    await accounts.change_custody(ctx[fanout_key], ctx.tenant_id, custody, max(ttl, 1.0))
    await audit.write(ctx[db_key], ctx.tenant_id, ctx.actor, "vault.custody", custody=custody)
    return await vault_status(ctx)


async def change_passphrase(ctx: Context, passphrase: str, new_passphrase: str) -> None:
    """The vault passphrase from now on. WeakPassphraseError (with Turkish and English
    feedback) before anything is hashed; then like an unlock: TooManyAttemptsError,
    HashBusyError, WrongPassphraseError. The operators are told."""
    settings = ctx[settings_key]
    row = await accounts.tenant_row(ctx[db_key], ctx.tenant_id)
    accounts.check_passphrase(new_passphrase, settings.min_passphrase_length, (row.name,))
    try:
        await _guessing(ctx, lambda: accounts.change_passphrase(
            ctx[db_key], ctx.tenant_id, passphrase, new_passphrase, ctx.actor,
            kdf=settings.kdf, min_length=settings.min_passphrase_length,
            run=ctx[hash_slots_key].run))
    except WrongPassphraseError:
        await audit.write(ctx[db_key], ctx.tenant_id, ctx.actor, "vault.passphrase_failed")
        raise
    await _notify(ctx, "security_passphrase")


# --- dashboard users -------------------------------------------------------------------------

@dataclass(frozen=True)
class UserInfo:
    id: str
    email: str
    role: str
    created_at: float
    disabled: bool


async def list_users(ctx: Context) -> list[UserInfo]:
    return [UserInfo(u["id"], u["email"], u["role"], u["created_at"], u["disabled"])
            for u in await users.list_users(ctx[db_key], ctx[master_key], ctx.tenant_id)]


async def _user(ctx: Context, user_id: str) -> UserInfo:
    found = next((u for u in await list_users(ctx) if u.id == user_id), None)
    if found is None:
        raise accounts.NotFoundError("no such user")
    return found


async def add_user(ctx: Context, email: str, password: str, role: str = "viewer") -> UserInfo:
    """AccountError: invalid e-mail, weak password, taken e-mail, unknown role; ForbiddenError
    for an API key granting owner or above its own role; HashBusyError."""
    user_id = await users.create_user(
        ctx[db_key], ctx[master_key], ctx.tenant_id, email, password, role, ctx.actor,
        kdf=ctx[settings_key].kdf, granted_by_key=key_role(ctx), run=ctx[hash_slots_key].run)
    return await _user(ctx, user_id)


async def update_user(ctx: Context, user_id: str, role: str | None = None,
                      disable: bool = False) -> UserInfo:
    """A new role, or disabled (and signed out) with `disable`. The business keeps at least
    one active owner; an API key never touches a user above its own role nor grants one."""
    if (role is None) != disable:
        raise accounts.AccountError(
            "give either 'role' or 'disabled': true (a disabled user stays disabled)",
            "invalid_field")
    if role is not None and role not in accounts.ROLES:
        raise accounts.AccountError(f"role must be one of {', '.join(accounts.ROLES)}",
                                    "invalid_role")
    everyone = await list_users(ctx)
    target = next((u for u in everyone if u.id == user_id), None)
    if target is None:
        raise accounts.NotFoundError("no such user")
    if target.disabled:
        raise accounts.ConflictError("this user is disabled", "user_disabled")
    caller = key_role(ctx)
    if caller is not None:
        if not accounts.at_least(caller, target.role):
            raise accounts.ForbiddenError(
                "an API key cannot change a user whose role is above its own",
                "role_not_allowed")
        if role is not None:
            accounts.check_role_grant(role, caller)
    if target.role == "owner" and role != "owner" and not any(
            u.role == "owner" and not u.disabled and u.id != user_id for u in everyone):
        raise accounts.ConflictError("the business must keep at least one active owner",
                                     "last_owner")
    await users.change_role(ctx[db_key], ctx.tenant_id, user_id, role, ctx.actor,
                            ctx.components.get(sessions_key))
    return await _user(ctx, user_id)


# --- API keys --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    name: str | None  # None while the vault is locked (the name is sealed)
    role: str
    created_at: float
    revoked_at: float | None

    @property
    def name_locked(self) -> bool:
        return self.name is None


@dataclass(frozen=True)
class NewApiKey:
    id: str
    name: str
    role: str
    api_key: str  # shown once; stored only hashed


async def list_api_keys(ctx: Context) -> list[ApiKeyInfo]:
    """The tenant's API keys, never their secrets; names opened while unlocked."""
    found = await accounts.api_keys_of(ctx[db_key], ctx.tenant_id)
    names = await opened(ctx, [k["name_sealed"] for k in found]) or [None] * len(found)
    return [ApiKeyInfo(k["id"], name, k["role"], k["created_at"], k["revoked_at"])
            for k, name in zip(found, names, strict=True)]


async def create_api_key(ctx: Context, name: str, role: str = accounts.DEFAULT_KEY_ROLE
                         ) -> NewApiKey:
    """AccountError for a bad name or role; ForbiddenError for an API key granting owner or
    above its own role. The operators are told."""
    key_id, key = await accounts.create_api_key(
        ctx[db_key], ctx.tenant_id, name, ctx.actor, role=role, granted_by_key=key_role(ctx))
    await _notify(ctx, "security_api_key")
    return NewApiKey(key_id, name.strip(), role, key)


async def revoke_api_key(ctx: Context, key_id: str) -> None:
    """NotFoundError when unknown or revoked already; ForbiddenError for an API key revoking
    one above its own role."""
    caller = key_role(ctx)
    if caller is not None:
        target = next((k for k in await list_api_keys(ctx) if k.id == key_id), None)
        if target is not None and not accounts.at_least(caller, target.role):
            raise accounts.ForbiddenError(
                "an API key cannot revoke a key whose role is above its own", "role_not_allowed")
    await accounts.revoke_key(ctx[db_key], ctx.tenant_id, key_id, ctx.actor)
