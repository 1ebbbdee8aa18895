"""API: the tenant's dashboard users — list, add, change role, disable. An API key (admin or
owner) may manage users up to its own role but never makes an owner nor touches a user above
its own role; in the dashboard only owners reach these (the /users page)."""
from __future__ import annotations

from aiohttp import web

from dashboard import accounts, users
from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.keys import (
    API_KEY_ROLE,
    TENANT,
    actor_of,
    db_key,
    hash_slots_key,
    master_key,
    sessions_key,
    settings_key,
)
from dashboard.lines_api import iso
from dashboard.routing import Operation


def _user_json(u: dict) -> dict:
    return {"id": u["id"], "email": u["email"], "role": u["role"],
            "created_at": iso(u["created_at"]), "disabled": u["disabled"]}


async def _all(request: web.Request) -> list[dict]:
    return await users.list_users(request.app[db_key], request.app[master_key],
                                  request[TENANT])


async def get_users(request: web.Request) -> web.Response:
    return json_response({"users": [_user_json(u) for u in await _all(request)]})


async def post_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    user_id = await users.create_user(
        request.app[db_key], request.app[master_key], request[TENANT],
        field(body, "email", str), field(body, "password", str),
        field(body, "role", str, required=False, default="viewer"), actor_of(request),
        kdf=request.app[settings_key].kdf, granted_by_key=request.get(API_KEY_ROLE),
        run=request.app[hash_slots_key].run)
    (created,) = [u for u in await _all(request) if u["id"] == user_id]
    return json_response(_user_json(created), status=201)


async def patch_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    role = field(body, "role", str, required=False, default=None)
    disable = field(body, "disabled", bool, required=False, default=None)
    if (role is None) == (disable is None) or disable is False:
        raise ApiError(400, "invalid_field",
                       "give either 'role' or 'disabled': true (a disabled user stays disabled)")
    if role is not None and role not in users.ROLES:
        raise ApiError(400, "invalid_role", f"role must be one of {', '.join(users.ROLES)}")
    user_id = request.match_info["id"]
    everyone = await _all(request)
    target = next((u for u in everyone if u["id"] == user_id), None)
    if target is None:
        raise ApiError(404, "not_found", "no such user")
    if target["disabled"]:
        raise ApiError(409, "user_disabled", "this user is disabled")
    key_role = request.get(API_KEY_ROLE)
    if key_role is not None:
        if not accounts.at_least(key_role, target["role"]):
            raise ApiError(403, "role_not_allowed",
                           "an API key cannot change a user whose role is above its own")
        if role is not None:
            accounts.check_role_grant(role, key_role)
    if target["role"] == "owner" and role != "owner" and not any(
            u["role"] == "owner" and not u["disabled"] and u["id"] != user_id
            for u in everyone):
        raise ApiError(409, "last_owner", "the business must keep at least one active owner")
    await users.change_role(request.app[db_key], request[TENANT], user_id, role,
                            actor_of(request), request.app.get(sessions_key))
    (changed,) = [u for u in await _all(request) if u["id"] == user_id]
    return json_response(_user_json(changed))


USER_BODY = {"type": "object", "required": ["email", "password"], "properties": {
    "email": {"type": "string"}, "password": {"type": "string", "minLength": users.MIN_PASSWORD},
    "role": {"enum": list(users.ROLES)}}}

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
                  "role": {"enum": list(users.ROLES)}, "disabled": {"const": True}}},
              responses={200: "The user", 400: "Invalid", 403: "Role not allowed for this API key",
                         404: "No such user",
                         409: "Disabled user, or the last active owner"}, role="admin"),
]
