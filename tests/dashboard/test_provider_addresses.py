"""Provider addresses belong to the operator: a tenant request naming one is a 400 that names
the field and calls nothing, and credentials stored with a tenant's base_url by older versions
send only to the operator's configured providers (and lose the address at start-up)."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from aiohttp import web
from conftest import PASSPHRASE, with_providers
from fakes.graph import PHONE_NUMBER_ID, GraphState, create_graph_app
from fakes.iys import BRAND_CODE, IYS_CODE, PASSWORD, USERNAME, IysState, create_iys_app
from fakes.telegram import TOKEN, BotApiState, create_bot_api_app

import accounts
from campaigns.lines import add_provider_line
from campaigns.ports import OutboundMessage, Sent
from dashboard.keys import channels_key, db_key, iys_sync_key, master_key
from izinli.app import create_app
from izinli.runtime import master_key_for, open_store
from store.tables import lines, tenant_settings


class Capture:
    """Where a hostile tenant points its line or İYS setting: counts every request."""

    def __init__(self) -> None:
        self.requests = 0

    def app(self) -> web.Application:
        async def anything(request: web.Request) -> web.Response:
            self.requests += 1
            return web.json_response({})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        return app


@pytest.fixture
async def capture(aiohttp_server) -> tuple[Capture, str]:
    seen = Capture()
    server = await aiohttp_server(seen.app(), host="127.0.0.1")
    return seen, str(server.make_url("")).rstrip("/")


WHATSAPP = {"channel": "whatsapp", "name": "WA", "phone_number_id": PHONE_NUMBER_ID,
            "access_token": "EAAG-token", "app_secret": "secret", "verify_token": "verify"}
TELEGRAM = {"channel": "telegram", "name": "Bot", "bot_token": TOKEN}
IYS = {"iys_enabled": True, "iys_code": IYS_CODE, "iys_brand_code": BRAND_CODE}


async def _refused(response, field: str) -> None:
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "address_not_allowed" and f"'{field}'" in error["message"], error


async def test_tenant_urls_are_refused_and_nothing_is_called(tenant, capture):
    seen, hostile = capture
    for field in ("base_url", "url", "api_url", "endpoint", "graph_url"):
        for line in (WHATSAPP, TELEGRAM):
            await _refused(await tenant.call("POST", "/lines", json={**line, field: hostile}),
                           field)
        await _refused(await tenant.call("PATCH", "/settings", json={**IYS, "iys_credentials": {
            "username": USERNAME, "password": PASSWORD, field: hostile}}),
            f"iys_credentials.{field}")
    # An unknown field carrying a URL, and İYS's address at the top of the settings.
    await _refused(await tenant.call("POST", "/lines", json={**TELEGRAM, "proxy": hostile}),
                   "proxy")
    await _refused(await tenant.call("PATCH", "/settings", json={**IYS, "iys_url": hostile}),
                   "iys_url")
    # Nothing was stored, and nothing that runs later finds an address to call.
    lines_now = (await (await tenant.call("GET", "/lines")).json())["lines"]
    assert [line["channel"] for line in lines_now] == ["sandbox"]
    settings = await (await tenant.call("GET", "/settings")).json()
    assert settings["iys_connected"] is False and settings["iys_enabled"] is False
    assert await tenant.client.app[iys_sync_key].pull_all() == 0
    assert seen.requests == 0


@pytest.fixture
async def fakes(aiohttp_server):
    graph, bots, iys = GraphState(), BotApiState(), IysState()
    urls = []
    for app in (create_graph_app(graph), create_bot_api_app(bots), create_iys_app(iys)):
        urls.append(str((await aiohttp_server(app)).make_url("")).rstrip("/"))
    return (graph, bots, iys), {"whatsapp": urls[0] + "/v21.0", "telegram": urls[1],
                                "iys": urls[2]}


async def _legacy_rows(config, hostile: str) -> tuple[str, str, str]:
    """A tenant with a WhatsApp line, a Telegram bot and an İYS account stored the way older
    versions did: each with the tenant's base_url inside the wrapped credentials."""
    db, master = await open_store(config), master_key_for(config)
    try:
        tenant_id, _ = await accounts.create_tenant(db, master, "Eski", PASSPHRASE, kdf="min")
        wa = {"phone_number_id": PHONE_NUMBER_ID, "access_token": GraphState().access_token,
              "app_secret": "s", "verify_token": "v", "base_url": hostile + "/v21.0"}
        tg = {"bot_token": TOKEN, "base_url": hostile, "webhook_secret": "s"}
        iys = {"base_url": hostile, "username": USERNAME, "password": PASSWORD,
               "iys_code": IYS_CODE, "brand_code": BRAND_CODE}
        async with db.begin() as conn:
            ids = [(await add_provider_line(conn, tenant_id, channel, channel, 30.0,
                                            master.wrap(json.dumps(creds).encode()))).id
                   for channel, creds in (("whatsapp", wa), ("telegram", tg))]
            await conn.execute(lines.update().values(credentials_format=1))
            await conn.execute(tenant_settings.update().where(
                tenant_settings.c.tenant_id == tenant_id).values(
                iys_credentials=master.wrap(json.dumps(iys).encode()),
                iys_credentials_format=1))
    finally:
        await db.close()
    return tenant_id, ids[0], ids[1]


async def test_stored_base_urls_are_dropped_and_sends_go_to_the_operators_providers(
        config, fakes, capture, aiohttp_client):
    (graph, bots, iys), urls = fakes
    seen, hostile = capture
    config = with_providers(config, **urls)
    tenant_id, wa_id, tg_id = await _legacy_rows(config, hostile)
    client = await aiohttp_client(create_app(config))  # start-up rewraps them
    app = client.app
    async with app[db_key].connect() as conn:
        rows = list(await conn.execute(sa.select(lines.c.channel, lines.c.wrapped_credentials,
                                                 lines.c.credentials_format)))
        account = (await conn.execute(sa.select(
            tenant_settings.c.iys_credentials, tenant_settings.c.iys_credentials_format).where(
            tenant_settings.c.tenant_id == tenant_id))).one()
    for wrapped, version in [(r.wrapped_credentials, r.credentials_format) for r in rows] + [
            tuple(account)]:
        assert version == 2
        if wrapped is not None:
            assert "base_url" not in json.loads(app[master_key].unwrap(bytes(wrapped)))
    # A row the rewrap has not reached yet (format 1, address inside) is read without it.
    async with app[db_key].begin() as conn:
        await conn.execute(lines.update().where(lines.c.id == tg_id).values(
            credentials_format=1, wrapped_credentials=app[master_key].wrap(json.dumps(
                {"bot_token": TOKEN, "base_url": hostile}).encode())))
    from campaigns.lines import line_by_id
    async with app[db_key].connect() as conn:
        wa_line, tg_line = await line_by_id(conn, wa_id), await line_by_id(conn, tg_id)
    channels = app[channels_key]
    assert isinstance(await channels["whatsapp"].send(
        wa_line, "+905321112233", OutboundMessage("Merhaba")), Sent)
    assert isinstance(await channels["telegram"].send(
        tg_line, "500100200", OutboundMessage("Merhaba")), Sent)
    await app[iys_sync_key].pull(tenant_id)
    assert len(graph.sent) == 1 and len(bots.sent) == 1 and iys.requests
    assert seen.requests == 0
