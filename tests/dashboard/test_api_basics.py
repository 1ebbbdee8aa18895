"""Auth, error shape, size limits, OpenAPI coverage, health and metrics."""
import asyncio

from dashboard.app import operations


async def test_api_requires_a_valid_key(client, tenant):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": f"Bearer {tenant.key}x"},
                    {"Authorization": "Bearer izk_" + tenant.key.split("_")[1] + "_wrong"}):
        r = await client.get("/api/v1/vault", headers=headers)
        assert r.status == 401
        body = await r.json()
        assert body["error"]["code"] == "unauthorized" and body["error"]["message"]
    assert (await tenant.call("GET", "/vault")).status == 200


async def test_unknown_route_and_method_are_json_errors(tenant):
    r = await tenant.call("GET", "/no-such-thing")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await tenant.call("DELETE", "/vault/unlock")
    assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"


async def test_oversized_body_is_413(client, tenant):
    """Refused from its Content-Length alone, before any of it is read. (A raw socket: an
    HTTP client still writing the body would see the early answer as a broken pipe.)"""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write((f"POST /api/v1/vault/unlock HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {tenant.key}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {1024 * 1024 + 10}\r\n\r\n{{").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    body = await reader.read(200)
    writer.close()
    await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 413") and b"payload_too_large" in body


async def test_openapi_covers_every_route(client):
    doc = await (await client.get("/api/v1/openapi.json")).json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    from dashboard.pages.web import _PAGES
    pages = {(method, path) for method, path, _ in _PAGES}  # HTML pages, not the API
    served = {(r.method, r.resource.canonical) for r in client.app.router.routes()
              if r.method != "HEAD" and (r.method, r.resource.canonical) not in pages
              and not r.resource.canonical.startswith("/static")
              and r.resource.canonical != "/favicon.ico"}  # a static file at the root
    assert served == documented
    assert {(o.method, o.path) for o in operations()} == documented


async def test_health_and_metrics(client, tenant):
    assert (await client.get("/healthz")).status == 200
    await tenant.call("GET", "/vault")
    text = await (await client.get("/metrics")).text()
    assert 'izinli_http_requests_total{method="GET",route="/api/v1/vault",status="200"}' in text
