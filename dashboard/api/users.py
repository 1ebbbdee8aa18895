"""API: the tenant's dashboard users — list, add, change role, disable. An API key (admin or
owner) may manage users up to its own role but never makes an owner nor touches a user above
its own role; in the dashboard only owners reach these (the /users page)."""
from __future__ import annotations

from aiohttp import web

import accounts
from accounts import users
from dashboard.context import context_of
from dashboard.errors import ApiError, json_response, parse_body
from dashboard.models import request_model, rule
from dashboard.routing import Operation
from dashboard.services import accounts as service
from dashboard.services.values import iso


def user_json(u: service.UserInfo) -> dict:
    return {"id": u.id, "email": u.email, "role": u.role, "created_at": iso(u.created_at),
            "disabled": u.disabled}


async def get_users(request: web.Request) -> web.Response:
    found = await service.list_users(context_of(request))
    return json_response({"users": [user_json(u) for u in found]})


@request_model
class AddUser:
    email: str = rule(str)
    password: str = rule(str, min_length=users.MIN_PASSWORD, service_checks=True)
    role: str = rule(str, default="viewer", enum=tuple(accounts.ROLES), service_checks=True)


@request_model
class ChangeUser:
    """Exactly one of them: a new role, or disabled: true."""
    role: str | None = rule(str, default=None, enum=tuple(accounts.ROLES), service_checks=True)
    disabled: bool | None = rule(bool, default=None, schema={"const": True})


async def post_user(request: web.Request) -> web.Response:
    body = await parse_body(request, AddUser)
    created = await service.add_user(context_of(request), body.email, body.password,
                                      body.role)
    return json_response(user_json(created), status=201)


async def patch_user(request: web.Request) -> web.Response:
    body = await parse_body(request, ChangeUser)
    role, disable = body.role, body.disabled
    if (role is None) == (disable is None) or disable is False:
        raise ApiError(400, "invalid_field",
                       "give either 'role' or 'disabled': true (a disabled user stays disabled)")
    changed = await service.update_user(context_of(request), request.match_info["id"], role,
                                        disable=bool(disable))
    return json_response(user_json(changed))


OPERATIONS = [
    Operation("GET", "/api/v1/users", get_users,
              "Dashboard users: e-mail, role, whether disabled", role="admin"),
    Operation("POST", "/api/v1/users", post_user,
              "Add a dashboard user (an API key cannot make an owner)", model=AddUser,
              responses={201: "User created", 400: "Invalid e-mail, weak password, taken "
                                                   "e-mail or unknown role",
                         403: "Role not allowed for this API key",
                         429: "Server busy hashing passwords"}, role="admin"),
    Operation("PATCH", "/api/v1/users/{id}", patch_user,
              "Change a user's role ({role}) or disable them ({disabled: true}; their sessions "
              "end)", model=ChangeUser,
              responses={200: "The user", 400: "Invalid", 403: "Role not allowed for this API key",
                         404: "No such user",
                         409: "Disabled user, or the last active owner"}, role="admin"),
]
