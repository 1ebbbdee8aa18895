"""API: unlock and lock the tenant's vault, choose key custody, change the passphrase. Thin:
the work is dashboard.services.accounts, which the vault page calls too."""
from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from dashboard.context import context_of
from dashboard.errors import error_response, json_response, parse_body
from dashboard.models import request_model, rule
from dashboard.ratelimit import HashBusyError, TooManyAttemptsError
from dashboard.routing import Operation
from dashboard.services import accounts as service


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


@request_model
class Unlock:
    passphrase: str = rule(str)
    ttl_seconds: float | None = rule(float, default=None, description=(
        "how long the vault stays unlocked (default and most: the server's settings)"))


@request_model
class Custody:
    custody: str = rule(str, enum=("passphrase", "service"), service_checks=True)


@request_model
class ChangePassphrase:
    passphrase: str = rule(str, description="the current passphrase")
    new_passphrase: str = rule(str)


async def unlock(request: web.Request) -> web.Response:
    body = await parse_body(request, Unlock)
    refused = await _guarded(service.unlock_vault(context_of(request), body.passphrase,
                                                  body.ttl_seconds))
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
    body = await parse_body(request, Custody)
    found = await service.change_custody(context_of(request), body.custody)
    return json_response(asdict(found))


async def passphrase(request: web.Request) -> web.Response:
    body = await parse_body(request, ChangePassphrase)
    refused = await _guarded(service.change_passphrase(
        context_of(request), body.passphrase, body.new_passphrase))
    return refused or web.Response(status=204)


OPERATIONS = [
    Operation("POST", "/api/v1/vault/unlock", unlock, "Unlock the tenant's keys for a while",
              model=Unlock,
              responses={204: "Unlocked", 403: "Wrong passphrase", 429: "Too many attempts"}),
    Operation("POST", "/api/v1/vault/lock", lock, "Forget the unlocked keys now",
              responses={204: "Locked"}),
    Operation("GET", "/api/v1/vault", status, "Whether the vault is unlocked, and custody"),
    Operation("POST", "/api/v1/vault/custody", custody,
              "Choose key custody: passphrase (default) or service (unattended sending; whoever "
              "holds the operator master key can then read). Only while unlocked.",
              model=Custody,
              responses={200: "New vault status", 423: "Vault is locked"}, role="admin"),
    Operation("POST", "/api/v1/vault/passphrase", passphrase,
              "Change the vault passphrase (the current one proves the caller knows it). A "
              "passphrase too easy to guess is a 400 weak_passphrase whose error carries "
              "feedback {score, min_score, tr, en}; wrong current passphrases count like "
              "unlock attempts",
              model=ChangePassphrase,
              responses={204: "Changed", 400: "Weak new passphrase", 403: "Wrong passphrase",
                         429: "Too many attempts"}, role="admin"),
]
