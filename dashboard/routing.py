"""Declared operations: each route is registered once and described in the OpenAPI document."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    body: dict | None = None          # JSON schema of the request body
    body_type: str = "application/json"
    responses: dict[int, str] = field(default_factory=lambda: {200: "OK"})
    auth: bool = True
    query: tuple[str, ...] = ()


def register(app: web.Application, operations: Iterable[Operation]) -> None:
    for op in operations:
        app.router.add_route(op.method, op.path, op.handler)


def openapi_document(operations: Iterable[Operation], version: str) -> dict:
    paths: dict[str, dict] = {}
    for op in operations:
        entry: dict = {"summary": op.summary, "responses": {
            str(code): {"description": text} for code, text in op.responses.items()}}
        params = [{"name": n, "in": "query", "schema": {"type": "string"}} for n in op.query]
        params += [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                   for n in _path_params(op.path)]
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {"required": True,
                                    "content": {op.body_type: {"schema": op.body}}}
        if op.auth:
            entry["security"] = [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "izinli API", "version": version},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": ERROR_SCHEMA}},
        "paths": paths,
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
