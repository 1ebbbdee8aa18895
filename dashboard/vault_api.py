"""API: unlock and lock the tenant's vault, and choose key custody."""
from __future__ import annotations

import time

from aiohttp import web

from crypto.errors import WrongPassphraseError
from dashboard import accounts, notices
from dashboard.auditing import audited
from dashboard.errors import ApiError, error_response, field, json_body, json_response
from dashboard.keys import TENANT, db_key, fanout_key, hash_slots_key, keyring_key, settings_key
from dashboard.ratelimit import FailureLimiter, HashBusyError, TooManyAttemptsError, reserve
from dashboard.routing import Operation

# Argon2id already costs ~0.5 s per guess; this caps a stolen API key at 5 guesses per 5 min
# per tenant (the CLI's unlock has no such limit: the operator's shell always works).
_failures = web.AppKey("unlock_failures", FailureLimiter)


def setup(app: web.Application) -> None:
    app[_failures] = FailureLimiter(limit=5, window_seconds=300)


async def unlock(request: web.Request) -> web.Response:
    app, tenant_id = request.app, request[TENANT]
    body = await json_body(request)
    passphrase = field(body, "passphrase", str)
    settings = app[settings_key]
    ttl = field(body, "ttl_seconds", float, required=False,
                default=float(settings.unlock_ttl_seconds))
    if not 1 <= ttl <= settings.max_unlock_ttl_seconds:
        raise ApiError(400, "invalid_field",
                       f"'ttl_seconds' must be between 1 and {settings.max_unlock_ttl_seconds}")
    try:  # counted before the hash, so parallel guesses cannot all pass the check
        attempt = reserve((app[_failures], tenant_id))
    except TooManyAttemptsError as exc:
        return _too_many("too many wrong passphrases; try again later", exc.retry_after)
    try:
        await accounts.unlock(app[db_key], app[keyring_key], tenant_id, passphrase, ttl,
                              run=app[hash_slots_key].run, fanout=app[fanout_key])
    except HashBusyError:
        attempt.forgive()  # nothing was checked
        return _too_many("the server is busy checking passphrases; try again shortly", 1)
    except WrongPassphraseError:
        await audited(request, "vault.unlock_failed")
        raise
    except Exception:
        attempt.forgive()  # the database or a bug, not a guess: it must not use up attempts
        raise
    attempt.forgive()
    await audited(request, "vault.unlock", ttl_seconds=ttl)
    await notices.notify(request, "security_unlock")
    return web.Response(status=204)


def _too_many(message: str, retry_after: int) -> web.Response:
    response = error_response(429, "too_many_attempts", message)
    response.headers["Retry-After"] = str(retry_after)
    return response


async def lock(request: web.Request) -> web.Response:
    await accounts.lock(request.app[keyring_key], request[TENANT], request.app[fanout_key])
    await audited(request, "vault.lock")
    return web.Response(status=204)


async def status(request: web.Request) -> web.Response:
    tenant_id = request[TENANT]
    row = await accounts.tenant_row(request.app[db_key], tenant_id)
    expires = request.app[keyring_key].expires_at(tenant_id)
    remaining = None if expires is None else max(0, round(expires - time.monotonic()))
    return json_response({"unlocked": expires is not None, "expires_in_seconds": remaining,
                              "custody": row.custody})


async def custody(request: web.Request) -> web.Response:
    body = await json_body(request)
    app, tenant_id = request.app, request[TENANT]
    custody = field(body, "custody", str)
    # Back to passphrase custody, the unlock in force goes on, at most for the usual unlock
    # time when it was an unattended one.
    row = await accounts.tenant_row(app[db_key], tenant_id)
    remaining = (app[keyring_key].expires_at(tenant_id) or 0.0) - time.monotonic()
    ttl = remaining if row.custody == "passphrase" else min(
        remaining, float(app[settings_key].unlock_ttl_seconds))
    await accounts.change_custody(app[fanout_key], tenant_id, custody, max(ttl, 1.0))
    await audited(request, "vault.custody", custody=body["custody"])
    return await status(request)


OPERATIONS = [
    Operation("POST", "/api/v1/vault/unlock", unlock, "Unlock the tenant's keys for a while",
              body={"type": "object", "required": ["passphrase"], "properties": {
                  "passphrase": {"type": "string"}, "ttl_seconds": {"type": "number"}}},
              responses={204: "Unlocked", 403: "Wrong passphrase", 429: "Too many attempts"}),
    Operation("POST", "/api/v1/vault/lock", lock, "Forget the unlocked keys now",
              responses={204: "Locked"}),
    Operation("GET", "/api/v1/vault", status, "Whether the vault is unlocked, and custody"),
    Operation("POST", "/api/v1/vault/custody", custody,
              "Choose key custody: passphrase (default) or service (unattended sending; whoever "
              "holds the operator master key can then read). Only while unlocked.",
              body={"type": "object", "required": ["custody"], "properties": {
                  "custody": {"enum": ["passphrase", "service"]}}},
              responses={200: "New vault status", 423: "Vault is locked"}, role="admin"),
]
