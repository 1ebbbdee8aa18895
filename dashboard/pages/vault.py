"""The vault: whether the tenant's keys are unlocked (and for how long), unlock with the
passphrase, lock now, change the passphrase (admins). Through dashboard.services.accounts,
like the /vault API."""
from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from accounts import AccountError, WeakPassphraseError
from accounts.passphrase import estimate
from crypto.errors import WrongPassphraseError
from dashboard import i18n
from dashboard.context import context_of
from dashboard.labels import error_text
from dashboard.pages.web import USER, form, page, render
from dashboard.ratelimit import HashBusyError, TooManyAttemptsError
from dashboard.services import accounts as service

DEFAULT_TTL_MINUTES = 60
MAX_TYPED = 200  # characters of a typed passphrase (or hint) the meter looks at

WRONG = ("Kasa parolası yanlış.", "Wrong vault passphrase.")
TOO_MANY = ("Çok fazla yanlış deneme ya da sunucu meşgul; biraz sonra tekrar deneyin.",
            "Too many wrong attempts, or the server is busy; try again later.")


async def _page(request: web.Request, status: int = 200, error: str | None = None,
                ttl_minutes: str = str(DEFAULT_TTL_MINUTES)) -> web.Response:
    from dashboard.services import business
    vault = asdict(await service.vault_status(context_of(request)))
    done = request.query.get("done")
    user = request[USER]
    owner = user.can("owner")
    return render(request, "vault.html", status=status, vault=vault, error=error,
                  ttl_minutes=ttl_minutes, can_act=user.can("operator"),
                  can_change=user.can("admin"), can_recover=owner,
                  has_recovery=owner and await business.has_recovery_code(context_of(request)),
                  done=done if done in ("unlocked", "locked", "changed", "locked_for_code")
                  else None)


def _refusal(request: web.Request, exc: Exception) -> tuple[int, str]:
    """The status and the sentence (in the page's language) for a refused vault action."""
    if isinstance(exc, WeakPassphraseError):
        return 400, exc.strength.text(i18n.language(request))
    if isinstance(exc, WrongPassphraseError):
        return 403, i18n.t(request, *WRONG)
    if isinstance(exc, TooManyAttemptsError | HashBusyError):
        return 429, i18n.t(request, *TOO_MANY)
    return 400, error_text(getattr(exc, "code", None), str(exc), i18n.language(request))


@page("GET", "/vault")
async def vault(request: web.Request) -> web.StreamResponse:
    return await _page(request)


@page("POST", "/vault/unlock", "operator")
async def unlock(request: web.Request) -> web.StreamResponse:
    data = form(request)
    raw_ttl = data.get("ttl_minutes", "").strip() or str(DEFAULT_TTL_MINUTES)
    try:
        minutes = float(raw_ttl.replace(",", "."))
    except ValueError:
        return await _page(request, 400, "Süre bir sayı olmalı. / The duration must be a "
                                         "number.", raw_ttl[:10])
    try:
        await service.unlock_vault(context_of(request), data.get("passphrase", ""),
                                   minutes * 60)
    except (AccountError, WrongPassphraseError, TooManyAttemptsError, HashBusyError) as exc:
        status, message = _refusal(request, exc)
        return await _page(request, status, message, raw_ttl[:10])
    raise web.HTTPSeeOther("/vault?done=unlocked")


@page("POST", "/vault/lock", "operator")
async def lock(request: web.Request) -> web.StreamResponse:
    await service.lock_vault(context_of(request))
    raise web.HTTPSeeOther("/vault?done=locked")


@page("POST", "/vault/passphrase", "admin")
async def change_passphrase(request: web.Request) -> web.StreamResponse:
    data = form(request)
    if data.get("new_passphrase", "") != data.get("new_passphrase_again", ""):
        return await _page(request, 400, i18n.t(
            request, "Yeni parolalar birbirini tutmuyor.", "The new passphrases do not match."))
    try:
        await service.change_passphrase(context_of(request), data.get("passphrase", ""),
                                        data.get("new_passphrase", ""))
    except (AccountError, WrongPassphraseError, TooManyAttemptsError, HashBusyError) as exc:
        status, message = _refusal(request, exc)
        return await _page(request, status, message)
    raise web.HTTPSeeOther("/vault?done=changed")


@page("POST", "/passphrase/strength", public=True)
async def strength(request: web.Request) -> web.StreamResponse:
    """The strength meter and advice for a passphrase being typed (setup, a change): the same
    estimate the server applies on submit. Public (setup comes before any account) and
    without side effects; the passphrase is neither kept nor logged."""
    data = await request.post()

    def text(name: str) -> str:
        value = data.get(name, "")
        return value[:MAX_TYPED] if isinstance(value, str) else ""

    changing = "new_passphrase" in data
    typed = text("new_passphrase" if changing else "passphrase")
    found = estimate(typed, (text("business"), text("email")))
    advice = None
    if typed:
        advice = (i18n.t(request, "Güçlü bir parola.", "A strong passphrase.") if found.strong
                  else found.text(i18n.language(request)))
    return render(request, "_strength.html", score=found.score, advice=advice,
                  meter_id="new-passphrase-strength" if changing else "passphrase-strength")
