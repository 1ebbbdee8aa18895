"""Owner pages for the business's whole life: the recovery code (make one while unlocked, use
one to set a forgotten passphrase; each new code is shown once, printable) and deleting the
business. Through dashboard.services.business."""
from __future__ import annotations

from aiohttp import web

from accounts import AccountError
from crypto.errors import VaultLockedError, WrongPassphraseError
from dashboard import i18n
from dashboard.context import context_of
from dashboard.pages.vault import _refusal
from dashboard.pages.web import SESSION_COOKIE, USER, form, page, render
from dashboard.ratelimit import HashBusyError, TooManyAttemptsError
from dashboard.services import business

REFUSED = (AccountError, WrongPassphraseError, TooManyAttemptsError, HashBusyError)
WRONG_CODE = ("Kurtarma kodu yanlış.", "Wrong recovery code.")


def _said(request: web.Request, exc: Exception) -> tuple[int, str]:
    if getattr(exc, "code", None) == "wrong_recovery_code":
        return 403, i18n.t(request, *WRONG_CODE)
    return _refusal(request, exc)


def _shown_once(request: web.Request, code: str, recovered: bool) -> web.Response:
    return render(request, "recovery_code.html", code=code, recovered=recovered)


@page("GET", "/vault/recover", "owner")
async def recover_form(request: web.Request) -> web.StreamResponse:
    return render(request, "vault_recover.html", error=None)


@page("POST", "/vault/recover", "owner")
async def recover(request: web.Request) -> web.StreamResponse:
    data = form(request)
    if data.get("new_passphrase", "") != data.get("new_passphrase_again", ""):
        return render(request, "vault_recover.html", status=400, error=i18n.t(
            request, "Yeni parolalar birbirini tutmuyor.", "The new passphrases do not match."))
    try:
        code = await business.recover_vault(context_of(request), data.get("code", ""),
                                            data.get("new_passphrase", ""))
    except REFUSED as exc:
        status, message = _said(request, exc)
        return render(request, "vault_recover.html", status=status, error=message)
    return _shown_once(request, code, recovered=True)


@page("POST", "/vault/recovery-code", "owner")
async def new_code(request: web.Request) -> web.StreamResponse:
    try:
        code = await business.issue_recovery_code(context_of(request))
    except VaultLockedError:
        raise web.HTTPSeeOther("/vault?done=locked_for_code") from None
    return _shown_once(request, code, recovered=False)


@page("GET", "/business/delete", "owner")
async def delete_form(request: web.Request) -> web.StreamResponse:
    return render(request, "business_delete.html", error=None, deleted=False)


@page("POST", "/business/delete", "owner", reauth=True)
async def delete(request: web.Request) -> web.StreamResponse:
    data = form(request)
    try:
        await business.delete_business(context_of(request), data.get("passphrase", ""),
                                       data.get("business", ""))
    except REFUSED as exc:
        status, message = _refusal(request, exc)
        if getattr(exc, "code", None) == "name_mismatch":
            message = i18n.t(request, "Yazılan işletme adı tutmuyor; hiçbir şey silinmedi.",
                             "The business name typed does not match; nothing was deleted.")
        return render(request, "business_delete.html", status=status, error=message,
                      deleted=False)
    request[USER] = None  # signed out with the business: the page shows no menu
    response = render(request, "business_delete.html", error=None, deleted=True)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response

