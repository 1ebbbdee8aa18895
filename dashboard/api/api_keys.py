"""API: the tenant's API keys — list, create (the key is shown once, with a role), revoke.
An API key never makes an owner key or one above its own role, nor revokes one above it."""
from __future__ import annotations

from aiohttp import web

import accounts
from dashboard.context import context_of
from dashboard.errors import json_response, parse_body
from dashboard.keys import API_KEY_ID
from dashboard.models import request_model, rule
from dashboard.routing import Operation
from dashboard.services import accounts as service
from dashboard.services.names import named_schema
from dashboard.services.values import iso


def key_json(k: service.ApiKeyInfo, current: str | None = None) -> dict:
    return {"id": k.id, "name": k.name, "name_locked": k.name_locked,
            "created_at": iso(k.created_at),
            "revoked_at": iso(k.revoked_at), "revoked": k.revoked_at is not None,
            "role": k.role, "current": k.id == current}


async def get_keys(request: web.Request) -> web.Response:
    found = await service.list_api_keys(context_of(request))
    return json_response({"api_keys": [key_json(k, request.get(API_KEY_ID)) for k in found]})


@request_model
class CreateApiKey:
    name: str = rule(str, max_length=100, service_checks=True)
    role: str = rule(str, default=accounts.DEFAULT_KEY_ROLE, enum=tuple(accounts.ROLES),
                     service_checks=True)


async def post_key(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateApiKey)
    created = await service.create_api_key(context_of(request), body.name, body.role)
    return json_response({"id": created.id, "name": created.name, "role": created.role,
                          "api_key": created.api_key}, status=201)


async def delete_key(request: web.Request) -> web.Response:
    key_id = request.match_info["id"]
    await service.revoke_api_key(context_of(request), key_id)
    return json_response({"id": key_id, "revoked": True})


OPERATIONS = [
    Operation("GET", "/api/v1/api-keys", get_keys,
              "API keys: id, name, role, created, revoked (never the secret)", role="admin",
              response_schemas={200: named_schema("api_keys")}),
    Operation("POST", "/api/v1/api-keys", post_key,
              "Create an API key with a role (default admin; an API key can grant at most its "
              "own role and never owner); the response holds it once (it is stored only "
              "hashed), and the operators are told",
              model=CreateApiKey,
              responses={201: "{id, name, role, api_key}", 400: "Invalid name or role",
                         403: "Role above the caller's"}, role="admin"),
    Operation("DELETE", "/api/v1/api-keys/{id}", delete_key,
              "Revoke an API key: it stops working at once",
              responses={200: "Revoked", 403: "Key above the caller's role",
                         404: "No such key in force"}, role="admin"),
]
