"""API: unlock and lock the tenant's vault, choose key custody, change the passphrase. Thin:
the work is dashboard.services.accounts, which the vault page calls too."""
from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from dashboard.errors import error_response, field, json_body, json_response
from dashboard.ratelimit import HashBusyError, TooManyAttemptsError
from dashboard.routing import Operation
from dashboard.services import accounts as service
from dashboard.services import context_of


def setup(app: web.Application) -> None:
    service.setup(app)


async def _guarded(call) -> web.Response | None:
    """None when `call` went through; the 429 answer when guesses are used up or the server
    is busy hashing."""
    try:
        await call
    except TooManyAttemptsError as exc:
        return _too_many("too many wrong passphrases; try again later", exc.retry_after)
    except HashBusyError:
        return _too_many("the server is busy checking passphrases; try again shortly", 1)
    return None


async def unlock(request: web.Request) -> web.Response:
    body = await json_body(request)
    passphrase = field(body, "passphrase", str)
    ttl = field(body, "ttl_seconds", float, required=False, default=None)
    refused = await _guarded(service.unlock_vault(context_of(request), passphrase, ttl))
    return refused or web.Response(status=204)


def _too_many(message: str, retry_after: int) -> web.Response:
    response = error_response(429, "too_many_attempts", message)
    response.headers["Retry-After"] = str(retry_after)
    return response


async def lock(request: web.Request) -> web.Response:
    await service.lock_vault(context_of(request))
    return web.Response(status=204)


async def status(request: web.Request) -> web.Response:
    return json_response(asdict(await service.vault_status(context_of(request))))


async def custody(request: web.Request) -> web.Response:
    body = await json_body(request)
    found = await service.change_custody(context_of(request), field(body, "custody", str))
    return json_response(asdict(found))


async def passphrase(request: web.Request) -> web.Response:
    body = await json_body(request)
    refused = await _guarded(service.change_passphrase(
        context_of(request), field(body, "passphrase", str),
        field(body, "new_passphrase", str)))
    return refused or web.Response(status=204)


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
    Operation("POST", "/api/v1/vault/passphrase", passphrase,
              "Change the vault passphrase (the current one proves the caller knows it). A "
              "passphrase too easy to guess is a 400 weak_passphrase whose error carries "
              "feedback {score, min_score, tr, en}; wrong current passphrases count like "
              "unlock attempts",
              body={"type": "object", "required": ["passphrase", "new_passphrase"],
                    "properties": {"passphrase": {"type": "string"},
                                   "new_passphrase": {"type": "string"}}},
              responses={204: "Changed", 400: "Weak new passphrase", 403: "Wrong passphrase",
                         429: "Too many attempts"}, role="admin"),
]
