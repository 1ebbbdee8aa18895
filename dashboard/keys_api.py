"""API: the tenant's API keys — list, create (the key is shown once), revoke."""
from __future__ import annotations

from aiohttp import web

from dashboard import accounts
from dashboard.errors import field, json_body, json_response
from dashboard.keys import API_KEY_ID, TENANT, actor_of, db_key
from dashboard.lines_api import iso
from dashboard.routing import Operation


async def get_keys(request: web.Request) -> web.Response:
    current = request.get(API_KEY_ID)
    found = await accounts.api_keys_of(request.app[db_key], request[TENANT])
    return json_response({"api_keys": [
        {"id": k["id"], "name": k["name"], "created_at": iso(k["created_at"]),
         "revoked_at": iso(k["revoked_at"]), "revoked": k["revoked_at"] is not None,
         "current": k["id"] == current} for k in found]})


async def post_key(request: web.Request) -> web.Response:
    body = await json_body(request)
    key_id, key = await accounts.create_api_key(request.app[db_key], request[TENANT],
                                                field(body, "name", str), actor_of(request))
    return json_response({"id": key_id, "name": body["name"].strip(), "api_key": key},
                         status=201)


async def delete_key(request: web.Request) -> web.Response:
    key_id = request.match_info["id"]
    await accounts.revoke_key(request.app[db_key], request[TENANT], key_id, actor_of(request))
    return json_response({"id": key_id, "revoked": True})


OPERATIONS = [
    Operation("GET", "/api/v1/api-keys", get_keys,
              "API keys: id, name, created, revoked (never the secret)"),
    Operation("POST", "/api/v1/api-keys", post_key,
              "Create an API key; the response holds it once (it is stored only hashed)",
              body={"type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string", "maxLength": 100}}},
              responses={201: "{id, name, api_key}", 400: "Invalid name"}),
    Operation("DELETE", "/api/v1/api-keys/{id}", delete_key,
              "Revoke an API key: it stops working at once",
              responses={200: "Revoked", 404: "No such key in force"}),
]
