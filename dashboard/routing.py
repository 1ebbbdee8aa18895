"""Declared operations: each route is registered once and described in the OpenAPI document."""
from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from accounts import at_least
from dashboard.errors import ApiError
from dashboard.keys import API_KEY_ROLE
from dashboard.models import schema_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    # The JSON body's request model (dashboard.models): its schema is the document's
    # requestBody, and the handler parses the body with it (parse_body).
    model: type | None = None
    body: dict | None = None  # the schema of a body that is not JSON (a CSV upload)
    body_type: str = "application/json"
    responses: dict[int, str] = field(default_factory=lambda: {200: "OK"})
    # JSON schemas of answers, by status, where the description alone would not document it.
    response_schemas: dict[int, dict] = field(default_factory=dict)
    auth: bool = True
    query: tuple[str, ...] = ()
    # The least role an API key needs (like a page's role for a user); None: viewer to read,
    # operator to change.
    role: str | None = None

    @property
    def body_schema(self) -> dict | None:
        """The request body's schema: the model's, or the declared one of a non-JSON body."""
        return schema_of(self.model) if self.model is not None else self.body

    @property
    def needed_role(self) -> str:
        return self.role or ("viewer" if self.method in ("GET", "HEAD") else "operator")


def register(app: web.Application, operations: Iterable[Operation]) -> None:
    for op in operations:
        app.router.add_route(op.method, op.path, _role_checked(op) if op.auth else op.handler)


def require_key_role(request: web.Request, needed: str) -> None:
    """For an operation whose role depends on its arguments (a download): 403 for an API
    key below `needed`."""
    role = request.get(API_KEY_ROLE)
    if role is not None and not at_least(role, needed):
        raise ApiError(403, "forbidden", f"this API key's role ({role}) cannot do this; "
                                         f"it needs {needed} or higher")


def _role_checked(op: Operation) -> Handler:
    """The handler, refusing API keys whose role is below the operation's. A dashboard page
    running the operation in-process carries no key role: the page checked the user's."""
    needed = op.needed_role

    @functools.wraps(op.handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        require_key_role(request, needed)
        return await op.handler(request)
    return checked


def openapi_document(operations: Iterable[Operation], version: str) -> dict:
    paths: dict[str, dict] = {}
    for op in operations:
        entry: dict = {"summary": op.summary, "responses": {
            str(code): {"description": text} | _content(op.response_schemas.get(code))
            for code, text in op.responses.items()}}
        params = [{"name": n, "in": "query", "schema": _query_schema(n)} for n in op.query]
        params += [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                   for n in _path_params(op.path)]
        if params:
            entry["parameters"] = params
        schema = op.body_schema
        if schema is not None:
            entry["requestBody"] = {"required": True,
                                    "content": {op.body_type: {"schema": schema}}}
        if op.auth:
            entry["security"] = [{"bearer": []}]
            entry["x-izinli-role"] = op.needed_role
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "izinli API", "version": version},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": ERROR_SCHEMA}},
        "paths": paths,
    }


def _content(schema: dict | None) -> dict:
    return {} if schema is None else {"content": {"application/json": {"schema": schema}}}


# Query parameters are named alike across operations: one schema per name documents them all.
_ADDRESS = {"type": "string", "examples": ["+905321112233", "05321112233", "700100200"]}
QUERY_SCHEMAS = {
    "purpose": {"enum": ["commercial", "informational"]},
    "format": {"enum": ["csv", "json"]},
    "limit": {"type": "integer", "minimum": 1},
    "before": {"type": "integer", "minimum": 1},
    "download": {"type": "boolean"},
    "sealed": {"type": "boolean"},
    "address": _ADDRESS,
    "to": _ADDRESS,
    "consent_text": {"type": "string", "maxLength": 2000, "description": (
        "the consent statement people were shown (form or checkbox text), stored in every "
        "imported consent's sealed evidence")},
}


def _query_schema(name: str) -> dict:
    if name == "channel":  # the channels registered now (bot.registry)
        from bot import registry
        return {"enum": registry.names()}
    return QUERY_SCHEMAS.get(name, {"type": "string"})


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
