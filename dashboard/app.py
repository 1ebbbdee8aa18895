"""The web application's routes and middlewares. Resources come from the composition root
through the app keys in dashboard.keys; views never create them."""
from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

import accounts
from dashboard.api import api_keys as keys_api
from dashboard.api import audience as audience_api
from dashboard.api import audit as audit_api
from dashboard.api import campaigns as campaign_api
from dashboard.api import consent as consent_api
from dashboard.api import invites as invites_api
from dashboard.api import lines as lines_api
from dashboard.api import operator as operator_api
from dashboard.api import settings as settings_api
from dashboard.api import subjects as subjects_api
from dashboard.api import users as users_api
from dashboard.api import vault as vault_api
from dashboard.api import whatsapp_templates as whatsapp_templates_api
from dashboard.errors import (
    RETRY_AFTER_SECONDS,
    error_middleware,
    error_response,
    input_middleware,
    json_response,
)
from dashboard.keys import API_KEY_ID, API_KEY_ROLE, TENANT, db_key, registry_key
from dashboard.pages.web import setup_web
from dashboard.routing import Operation, openapi_document, register
from dashboard.webhooks import providers as webhooks

API_PREFIX = "/api/v1/"
PUBLIC_API = {"/api/v1/openapi.json"}
_metrics = web.AppKey("http_metrics", tuple)


@web.middleware
async def auth_middleware(request: web.Request, handler):
    if not request.path.startswith(API_PREFIX) or request.path in PUBLIC_API:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    found = None
    if scheme.lower() == "bearer" and token.strip():
        found = await accounts.authenticate(request.app[db_key], token.strip())
    if found is None:
        return error_response(401, "unauthorized",
                              "a valid API key is required (Authorization: Bearer <key>)")
    request[TENANT], request[API_KEY_ID], request[API_KEY_ROLE] = found
    return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    requests, latency = request.app[_metrics]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        # The route pattern, never the concrete path: paths can carry ids.
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        requests.labels(request.method, route, str(status)).inc()
        latency.labels(route).observe(time.perf_counter() - started)


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers (and takes writes again after a failed one); 503 with
    Retry-After naming the fault (unreachable, disk_full, io_error) otherwise."""
    fault = await request.app[db_key].health()
    if fault is None:
        return json_response({"status": "ok", "database": "ok"})
    response = json_response({"status": "unavailable", "database": fault}, status=503)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[registry_key])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(operations(), "1"))


PROBES = [
    Operation("GET", "/healthz", healthz, "Liveness and database reachability", auth=False),
    Operation("GET", "/metrics", metrics, "Prometheus metrics", auth=False),
]
BASE_OPERATIONS = [
    *PROBES,
    Operation("GET", "/api/v1/openapi.json", openapi, "This document", auth=False),
]


def operations() -> list[Operation]:
    return [*BASE_OPERATIONS, *vault_api.OPERATIONS, *lines_api.operations(),
            *audience_api.OPERATIONS, *consent_api.OPERATIONS, *settings_api.OPERATIONS,
            *campaign_api.OPERATIONS, *webhooks.operations(), *operator_api.OPERATIONS,
            *subjects_api.OPERATIONS, *audit_api.OPERATIONS, *users_api.OPERATIONS,
            *keys_api.OPERATIONS, *invites_api.OPERATIONS,
            *whatsapp_templates_api.OPERATIONS]


def setup(app: web.Application) -> None:
    """Adds middlewares and routes; the app keys of dashboard.keys must be provided."""
    registry = app[registry_key]
    app[_metrics] = (
        Counter("izinli_http_requests", "HTTP requests", ["method", "route", "status"],
                registry=registry),
        Histogram("izinli_http_request_seconds", "HTTP request latency", ["route"],
                  registry=registry),
    )
    # metrics outermost: it counts the status error_middleware actually sent, not the
    # exception a handler raised (a handled 4xx used to be counted as 500).
    app.middlewares.extend([metrics_middleware, error_middleware, input_middleware,
                            auth_middleware])
    vault_api.setup(app)
    webhooks.setup(app)
    register(app, operations())
    setup_web(app)


def setup_probes(app: web.Application) -> None:
    """A worker process's whole web surface (izinli serve --role worker): liveness for the
    operator's health checks and metrics for the scraper. No API, page or webhook: those are
    the web processes', and a worker holds no sessions to check them against."""
    app.middlewares.append(error_middleware)  # anything else: a JSON 404
    register(app, PROBES)
