"""The business's whole life, past setup: recovery codes (made, used) and deletion — what the
pages (and any API operation) do, on accounts.recovery and accounts.deletion.

Recovery-code guesses count with the vault's passphrase guesses (services.accounts: 5 per
5 minutes per tenant); every action is audited by the domain and told to the operators."""
from __future__ import annotations

from accounts import AccountError, deletion, recovery, tenant_row
from crypto.errors import WrongPassphraseError
from crypto.keys import unwrap_secret
from dashboard.keys import (
    db_key,
    fanout_key,
    hash_slots_key,
    keyring_key,
    sessions_key,
    settings_key,
)
from dashboard.services import Context
from dashboard.services.accounts import _guessing, _notify
from optout import audit


async def issue_recovery_code(ctx: Context) -> str:
    """A new recovery code while the vault is unlocked (VaultLockedError otherwise), shown
    once; the earlier one stops working."""
    code = await recovery.issue_code(ctx[db_key], ctx[keyring_key], ctx.tenant_id, ctx.actor,
                                     ctx[settings_key].kdf, ctx[hash_slots_key].run)
    await _notify(ctx, "security_recovery_code")
    return code


async def has_recovery_code(ctx: Context) -> bool:
    return await recovery.has_code(ctx[db_key], ctx.tenant_id)


async def recover_vault(ctx: Context, code: str, new_passphrase: str) -> str:
    """Sets a new passphrase with the recovery code; returns the code that replaces it.
    WeakPassphraseError first, then TooManyAttemptsError, HashBusyError,
    WrongRecoveryCodeError (audited as vault.recover_failed)."""
    settings = ctx[settings_key]
    try:
        code = await _guessing(ctx, lambda: recovery.recover(
            ctx[db_key], ctx.tenant_id, code, new_passphrase, ctx.actor, settings.kdf,
            settings.min_passphrase_length, ctx[hash_slots_key].run))
    except WrongPassphraseError:
        await audit.write(ctx[db_key], ctx.tenant_id, ctx.actor, "vault.recover_failed")
        raise
    await _notify(ctx, "security_recovered")
    return code


async def delete_business(ctx: Context, passphrase: str, typed_name: str) -> deletion.Deleted:
    """Deletes the business for good. The caller re-entered its password (the page's reauth);
    the vault passphrase is checked here like an unlock (TooManyAttemptsError, HashBusyError,
    WrongPassphraseError), and the typed name must be the business's (AccountError
    name_mismatch) — checked before the passphrase is hashed."""
    db = ctx[db_key]
    row = await tenant_row(db, ctx.tenant_id)
    if not deletion.name_matches(typed_name, row.name):
        raise AccountError("the business name typed does not match",
                                    "name_mismatch")
    # The passphrase proves the vault's owner asks (counted like an unlock; nothing opened).
    await _guessing(ctx, lambda: ctx[hash_slots_key].run(unwrap_secret, row.wrapped_secret,
                                                         passphrase))
    await _notify(ctx, "security_deleting")  # before: the operators' links go with the rows
    return await deletion.delete_tenant(db, ctx.tenant_id, typed_name, ctx.actor,
                                        ctx[fanout_key].lock, ctx.components.get(sessions_key))
