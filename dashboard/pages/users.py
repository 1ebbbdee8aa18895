"""Dashboard users (owners only): list, add, change role, disable — each change needs the
owner's password re-entered. Through dashboard.services.accounts, like the /users API."""
from __future__ import annotations

from aiohttp import web

from accounts import ROLES, AccountError
from dashboard import i18n
from dashboard.context import context_of
from dashboard.labels import error_text
from dashboard.pages.web import form, page, render, too_many
from dashboard.ratelimit import HashBusyError
from dashboard.services import accounts as service
from dashboard.services.values import iso


def _shown(u: service.UserInfo) -> dict:
    return {"id": u.id, "email": u.email, "role": u.role, "created_at": iso(u.created_at),
            "disabled": u.disabled}


def _status(exc: AccountError) -> int:
    return {"not_found": 404, "user_disabled": 409, "last_owner": 409}.get(exc.code, 400)


def _said(request: web.Request, exc: AccountError) -> str:
    return error_text(exc.code, str(exc), i18n.language(request))


async def _show(request: web.Request, status: int = 200, error: str | None = None,
                notice: str | None = None, values: dict | None = None) -> web.StreamResponse:
    people = [_shown(u) for u in await service.list_users(context_of(request))]
    return render(request, "users.html", status=status, people=people, roles=ROLES,
                  error=error, notice=notice, values=values or {})


@page("GET", "/users", "owner")
async def users_page(request: web.Request) -> web.StreamResponse:
    done = request.query.get("done", "")
    return await _show(request, notice=done if done in ("added", "changed", "disabled")
                       else None)


@page("POST", "/users", "owner", reauth=True)
async def add_user(request: web.Request) -> web.StreamResponse:
    data = form(request)
    try:
        await service.add_user(context_of(request), data.get("email", ""),
                               data.get("new_password", ""), data.get("role", "viewer"))
    except HashBusyError:
        return too_many(request, 1)
    except AccountError as exc:
        return await _show(request, status=_status(exc), error=_said(request, exc),
                           values={"email": data.get("email", ""),
                                   "role": data.get("role", "viewer")})
    raise web.HTTPSeeOther("/users?done=added")


@page("POST", "/users/{id}/role", "owner", reauth=True)
async def change_role(request: web.Request) -> web.StreamResponse:
    try:
        await service.update_user(context_of(request), request.match_info["id"],
                                  role=form(request).get("role", ""))
    except AccountError as exc:
        return await _show(request, status=_status(exc), error=_said(request, exc))
    raise web.HTTPSeeOther("/users?done=changed")


@page("POST", "/users/{id}/disable", "owner", reauth=True)
async def disable(request: web.Request) -> web.StreamResponse:
    try:
        await service.update_user(context_of(request), request.match_info["id"], disable=True)
    except AccountError as exc:
        return await _show(request, status=_status(exc), error=_said(request, exc))
    raise web.HTTPSeeOther("/users?done=disabled")
