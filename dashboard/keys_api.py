"""API: the tenant's API keys — list, create (the key is shown once, with a role), revoke.
An API key never makes an owner key or one above its own role, nor revokes one above it."""
from __future__ import annotations

from aiohttp import web

from dashboard import accounts, notices
from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.keys import API_KEY_ID, API_KEY_ROLE, TENANT, actor_of, db_key
from dashboard.lines_api import iso
from dashboard.routing import Operation


async def get_keys(request: web.Request) -> web.Response:
    current = request.get(API_KEY_ID)
    found = await accounts.api_keys_of(request.app[db_key], request[TENANT])
    return json_response({"api_keys": [
        {"id": k["id"], "name": k["name"], "created_at": iso(k["created_at"]),
         "revoked_at": iso(k["revoked_at"]), "revoked": k["revoked_at"] is not None,
         "role": k["role"], "current": k["id"] == current} for k in found]})


async def post_key(request: web.Request) -> web.Response:
    body = await json_body(request)
    role = field(body, "role", str, required=False, default=accounts.DEFAULT_KEY_ROLE)
    key_id, key = await accounts.create_api_key(
        request.app[db_key], request[TENANT], field(body, "name", str), actor_of(request),
        role=role, granted_by_key=request.get(API_KEY_ROLE))
    await notices.notify(request, "security_api_key")
    return json_response({"id": key_id, "name": body["name"].strip(), "role": role,
                          "api_key": key}, status=201)


async def delete_key(request: web.Request) -> web.Response:
    key_id = request.match_info["id"]
    caller = request.get(API_KEY_ROLE)
    if caller is not None:
        found = await accounts.api_keys_of(request.app[db_key], request[TENANT])
        target = next((k for k in found if k["id"] == key_id), None)
        if target is not None and not accounts.at_least(caller, target["role"]):
            raise ApiError(403, "role_not_allowed",
                           "an API key cannot revoke a key whose role is above its own")
    await accounts.revoke_key(request.app[db_key], request[TENANT], key_id, actor_of(request))
    return json_response({"id": key_id, "revoked": True})


OPERATIONS = [
    Operation("GET", "/api/v1/api-keys", get_keys,
              "API keys: id, name, role, created, revoked (never the secret)", role="admin"),
    Operation("POST", "/api/v1/api-keys", post_key,
              "Create an API key with a role (default admin; an API key can grant at most its "
              "own role and never owner); the response holds it once (it is stored only "
              "hashed), and the operators are told",
              body={"type": "object", "required": ["name"], "properties": {
                  "name": {"type": "string", "maxLength": 100},
                  "role": {"enum": list(accounts.ROLES)}}},
              responses={201: "{id, name, role, api_key}", 400: "Invalid name or role",
                         403: "Role above the caller's"}, role="admin"),
    Operation("DELETE", "/api/v1/api-keys/{id}", delete_key,
              "Revoke an API key: it stops working at once",
              responses={200: "Revoked", 403: "Key above the caller's role",
                         404: "No such key in force"}, role="admin"),
]
