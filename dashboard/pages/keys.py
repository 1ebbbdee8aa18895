"""API keys (owners only): list, create with a role (the key is shown once; the password is
re-entered; the operators are told), revoke. Through dashboard.services.accounts, like the
/api-keys API."""
from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from accounts import DEFAULT_KEY_ROLE, ROLES, AccountError, NotFoundError
from dashboard import i18n
from dashboard.context import context_of
from dashboard.labels import error_text
from dashboard.pages.web import form, page, render
from dashboard.services import accounts as service
from dashboard.services.values import iso


def _shown(k: service.ApiKeyInfo) -> dict:
    return {"id": k.id, "name": k.name, "name_locked": k.name_locked,
            "created_at": iso(k.created_at),
            "revoked_at": iso(k.revoked_at), "revoked": k.revoked_at is not None,
            "role": k.role}


def _said(request: web.Request, exc: AccountError) -> str:
    return error_text(exc.code, str(exc), i18n.language(request))


async def _show(request: web.Request, status: int = 200, error: str | None = None,
                notice: str | None = None) -> web.StreamResponse:
    keys = [_shown(k) for k in await service.list_api_keys(context_of(request))]
    return render(request, "keys.html", status=status, keys=keys, error=error, notice=notice,
                  created=None, roles=ROLES, default_role=DEFAULT_KEY_ROLE)


@page("GET", "/keys", "owner")
async def keys_page(request: web.Request) -> web.StreamResponse:
    return await _show(request, notice="revoked" if request.query.get("done") == "revoked"
                       else None)


@page("POST", "/keys", "owner", reauth=True)
async def create_key(request: web.Request) -> web.StreamResponse:
    try:
        created = await service.create_api_key(
            context_of(request), form(request).get("name", ""),
            form(request).get("role", "") or DEFAULT_KEY_ROLE)
    except AccountError as exc:
        return await _show(request, status=400, error=_said(request, exc))
    return render(request, "key_created.html", created=asdict(created))


@page("POST", "/keys/{id}/revoke", "owner")
async def revoke_key(request: web.Request) -> web.StreamResponse:
    try:
        await service.revoke_api_key(context_of(request), request.match_info["id"])
    except AccountError as exc:
        return await _show(request, status=404 if isinstance(exc, NotFoundError) else 400,
                           error=_said(request, exc))
    raise web.HTTPSeeOther("/keys?done=revoked")
