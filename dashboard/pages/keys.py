"""API keys (owners only): list, create with a role (the key is shown once; the password is
re-entered; the API handler tells the operators), revoke. Everything goes through the
/api-keys API."""
from __future__ import annotations

from aiohttp import web

from dashboard.accounts import DEFAULT_KEY_ROLE, ROLES
from dashboard.web import api, error_page, form, page, render


async def _show(request: web.Request, status: int = 200, error: str | None = None,
                notice: str | None = None) -> web.StreamResponse:
    result = await api(request, "GET", "/api-keys")
    if not result.ok:
        return error_page(request, result.status, result.error)
    return render(request, "keys.html", status=status, keys=result.data["api_keys"],
                  error=error, notice=notice, created=None, roles=ROLES,
                  default_role=DEFAULT_KEY_ROLE)


@page("GET", "/keys", "owner")
async def keys_page(request: web.Request) -> web.StreamResponse:
    return await _show(request, notice="revoked" if request.query.get("done") == "revoked"
                       else None)


@page("POST", "/keys", "owner", reauth=True)
async def create_key(request: web.Request) -> web.StreamResponse:
    result = await api(request, "POST", "/api-keys", body={
        "name": form(request).get("name", ""),
        "role": form(request).get("role", "") or DEFAULT_KEY_ROLE})
    if not result.ok:
        return await _show(request, status=result.status, error=result.error)
    return render(request, "key_created.html", created=result.data)


@page("POST", "/keys/{id}/revoke", "owner")
async def revoke_key(request: web.Request) -> web.StreamResponse:
    result = await api(request, "DELETE", f"/api-keys/{request.match_info['id']}")
    if not result.ok:
        return await _show(request, status=result.status, error=result.error)
    raise web.HTTPSeeOther("/keys?done=revoked")
