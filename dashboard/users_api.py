"""API: the tenant's dashboard users — list, add, change role, disable. API keys are
owner-equivalent; in the dashboard only owners reach these (the /users page)."""
from __future__ import annotations

from aiohttp import web

from dashboard import users
from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.keys import TENANT, actor_of, db_key, master_key, settings_key
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
        kdf=request.app[settings_key].kdf)
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
    if target["role"] == "owner" and role != "owner" and not any(
            u["role"] == "owner" and not u["disabled"] and u["id"] != user_id
            for u in everyone):
        raise ApiError(409, "last_owner", "the business must keep at least one active owner")
    await users.change_role(request.app[db_key], request[TENANT], user_id, role,
                            actor_of(request))
    (changed,) = [u for u in await _all(request) if u["id"] == user_id]
    return json_response(_user_json(changed))


USER_BODY = {"type": "object", "required": ["email", "password"], "properties": {
    "email": {"type": "string"}, "password": {"type": "string", "minLength": users.MIN_PASSWORD},
    "role": {"enum": list(users.ROLES)}}}

OPERATIONS = [
    Operation("GET", "/api/v1/users", get_users,
              "Dashboard users: e-mail, role, whether disabled"),
    Operation("POST", "/api/v1/users", post_user, "Add a dashboard user", body=USER_BODY,
              responses={201: "User created", 400: "Invalid e-mail, weak password, taken "
                                                   "e-mail or unknown role"}),
    Operation("PATCH", "/api/v1/users/{id}", patch_user,
              "Change a user's role ({role}) or disable them ({disabled: true}; their sessions "
              "end)", body={"type": "object", "properties": {
                  "role": {"enum": list(users.ROLES)}, "disabled": {"const": True}}},
              responses={200: "The user", 400: "Invalid", 404: "No such user",
                         409: "Disabled user, or the last active owner"}),
]
