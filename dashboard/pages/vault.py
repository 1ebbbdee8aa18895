"""The vault: whether the tenant's keys are unlocked (and for how long), unlock with the
passphrase, lock now."""
from __future__ import annotations

from aiohttp import web

from dashboard.web import USER, api, form, page, render

DEFAULT_TTL_MINUTES = 60


async def _page(request: web.Request, status: int = 200, error: str | None = None,
                ttl_minutes: str = str(DEFAULT_TTL_MINUTES)) -> web.Response:
    vault = (await api(request, "GET", "/vault")).data or {}
    return render(request, "vault.html", status=status, vault=vault, error=error,
                  ttl_minutes=ttl_minutes, can_act=request[USER].can("operator"),
                  done=request.query.get("done") if request.query.get("done") in (
                      "unlocked", "locked") else None)


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
    result = await api(request, "POST", "/vault/unlock", body={
        "passphrase": data.get("passphrase", ""), "ttl_seconds": minutes * 60})
    if not result.ok:
        messages = {
            "wrong_passphrase": "Kasa parolası yanlış. / Wrong vault passphrase.",
            "too_many_attempts": "Çok fazla yanlış deneme ya da sunucu meşgul; biraz sonra "
                                 "tekrar deneyin. / Too many wrong attempts, or the server "
                                 "is busy; try again later.",
        }
        message = messages.get(result.code) or result.error or str(result.status)
        return await _page(request, result.status if result.status < 500 else 400, message,
                           raw_ttl[:10])
    raise web.HTTPSeeOther("/vault?done=unlocked")


@page("POST", "/vault/lock", "operator")
async def lock(request: web.Request) -> web.StreamResponse:
    await api(request, "POST", "/vault/lock")
    raise web.HTTPSeeOther("/vault?done=locked")
