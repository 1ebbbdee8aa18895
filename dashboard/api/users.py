"""API: the tenant's dashboard users — list, add, change role, disable. An API key (admin or
owner) may manage users up to its own role but never makes an owner nor touches a user above
its own role; in the dashboard only owners reach these (the /users page)."""
from __future__ import annotations

from aiohttp import web

import accounts
from accounts import users
from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.routing import Operation
from dashboard.services import accounts as service
from dashboard.services import context_of
from dashboard.services.values import iso


def user_json(u: service.UserInfo) -> dict:
    return {"id": u.id, "email": u.email, "role": u.role, "created_at": iso(u.created_at),
            "disabled": u.disabled}


async def get_users(request: web.Request) -> web.Response:
    found = await service.list_users(context_of(request))
    return json_response({"users": [user_json(u) for u in found]})


async def post_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    created = await service.add_user(
        context_of(request), field(body, "email", str), field(body, "password", str),
        field(body, "role", str, required=False, default="viewer"))
    return json_response(user_json(created), status=201)


async def patch_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    role = field(body, "role", str, required=False, default=None)
    disable = field(body, "disabled", bool, required=False, default=None)
    if (role is None) == (disable is None) or disable is False:
        raise ApiError(400, "invalid_field",
                       "give either 'role' or 'disabled': true (a disabled user stays disabled)")
    changed = await service.update_user(context_of(request), request.match_info["id"], role,
                                        disable=bool(disable))
    return json_response(user_json(changed))


USER_BODY = {"type": "object", "required": ["email", "password"], "properties": {
    "email": {"type": "string"}, "password": {"type": "string", "minLength": users.MIN_PASSWORD},
    "role": {"enum": list(accounts.ROLES)}}}

OPERATIONS = [
    Operation("GET", "/api/v1/users", get_users,
              "Dashboard users: e-mail, role, whether disabled", role="admin"),
    Operation("POST", "/api/v1/users", post_user,
              "Add a dashboard user (an API key cannot make an owner)", body=USER_BODY,
              responses={201: "User created", 400: "Invalid e-mail, weak password, taken "
                                                   "e-mail or unknown role",
                         403: "Role not allowed for this API key",
                         429: "Server busy hashing passwords"}, role="admin"),
    Operation("PATCH", "/api/v1/users/{id}", patch_user,
              "Change a user's role ({role}) or disable them ({disabled: true}; their sessions "
              "end)", body={"type": "object", "properties": {
                  "role": {"enum": list(accounts.ROLES)}, "disabled": {"const": True}}},
              responses={200: "The user", 400: "Invalid", 403: "Role not allowed for this API key",
                         404: "No such user",
                         409: "Disabled user, or the last active owner"}, role="admin"),
]
