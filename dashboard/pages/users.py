"""Dashboard users (owners only): list, add, change role, disable — each change needs the
owner's password re-entered. Everything goes through the /users API."""
from __future__ import annotations

from aiohttp import web

from dashboard.users import ROLES
from dashboard.web import api, error_page, form, page, render


async def _show(request: web.Request, status: int = 200, error: str | None = None,
                notice: str | None = None, values: dict | None = None) -> web.StreamResponse:
    result = await api(request, "GET", "/users")
    if not result.ok:
        return error_page(request, result.status, result.error)
    return render(request, "users.html", status=status, people=result.data["users"],
                  roles=ROLES, error=error, notice=notice, values=values or {})


@page("GET", "/users", "owner")
async def users_page(request: web.Request) -> web.StreamResponse:
    done = request.query.get("done", "")
    return await _show(request, notice=done if done in ("added", "changed", "disabled")
                       else None)


@page("POST", "/users", "owner", reauth=True)
async def add_user(request: web.Request) -> web.StreamResponse:
    data = form(request)
    result = await api(request, "POST", "/users", body={
        "email": data.get("email", ""), "password": data.get("new_password", ""),
        "role": data.get("role", "viewer")})
    if not result.ok:
        return await _show(request, status=result.status, error=result.error,
                           values={"email": data.get("email", ""),
                                   "role": data.get("role", "viewer")})
    raise web.HTTPSeeOther("/users?done=added")


@page("POST", "/users/{id}/role", "owner", reauth=True)
async def change_role(request: web.Request) -> web.StreamResponse:
    result = await api(request, "PATCH", f"/users/{request.match_info['id']}",
                       body={"role": form(request).get("role", "")})
    if not result.ok:
        return await _show(request, status=result.status, error=result.error)
    raise web.HTTPSeeOther("/users?done=changed")


@page("POST", "/users/{id}/disable", "owner", reauth=True)
async def disable(request: web.Request) -> web.StreamResponse:
    result = await api(request, "PATCH", f"/users/{request.match_info['id']}",
                       body={"disabled": True})
    if not result.ok:
        return await _show(request, status=result.status, error=result.error)
    raise web.HTTPSeeOther("/users?done=disabled")
