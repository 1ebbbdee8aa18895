"""DELETE /lines/{id}: tenant-scoped, refused while campaigns still expect to send on the line,
destroys the credentials, stops Telegram polling, audited; the last sandbox line is kept."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from aiohttp import web
from conftest import PASSPHRASE, ApiTenant, make_web_user, with_providers
from fakes.graph import PHONE_NUMBER_ID
from fakes.telegram import TOKEN, BotApiState, create_bot_api_app

import accounts
import bot.telegram_sdk  # noqa: F401  (aiogram's import takes seconds: not inside a wait)
from dashboard.keys import db_key, master_key
from izinli.app import create_app
from store.tables import lines, operators

WHATSAPP = {"channel": "whatsapp", "name": "WA", "phone_number_id": PHONE_NUMBER_ID,
            "access_token": "EAAG-token", "app_secret": "app-secret", "verify_token": "verify"}


async def _line(tenant: ApiTenant, body: dict) -> str:
    r = await tenant.call("POST", "/lines", json=body)
    assert r.status == 201, await r.text()
    return (await r.json())["id"]


async def _campaign(tenant: ApiTenant, line_id: str, send_at: str | None = None) -> str:
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "l"})).json())["id"]
    await tenant.call("POST", f"/contacts/import?list_id={list_id}",  # an empty list never starts
                      data=b"telefon,consent\n05321110001,evet\n",
                      headers={"Content-Type": "text/csv"})
    body = {"name": "c", "line_id": line_id, "list_id": list_id, "purpose": "informational",
            "template": "Merhaba"} | ({"send_at": send_at} if send_at else {})
    r = await tenant.call("POST", "/campaigns", json=body)
    assert r.status == 201, await r.text()
    return (await r.json())["id"]


async def _row(tenant: ApiTenant, line_id: str):
    async with tenant.client.app[db_key].connect() as conn:
        return (await conn.execute(sa.select(lines).where(lines.c.id == line_id))).one()


async def test_deleting_a_line_destroys_its_credentials_and_is_audited(tenant):
    line_id = await _line(tenant, WHATSAPP)
    draft = await _campaign(tenant, line_id)
    r = await tenant.call("DELETE", f"/lines/{line_id}")
    assert r.status == 204, await r.text()
    row = await _row(tenant, line_id)
    assert (row.state, row.wrapped_credentials) == ("deleted", None)
    listed = (await (await tenant.call("GET", "/lines")).json())["lines"]
    assert line_id not in [line["id"] for line in listed]
    assert (await tenant.call("DELETE", f"/lines/{line_id}")).status == 404
    # Its webhooks are gone, its draft is cancelled and no new campaign can use it.
    r = await tenant.client.get(f"/webhooks/whatsapp/{line_id}", params={
        "hub.mode": "subscribe", "hub.verify_token": "verify", "hub.challenge": "1"})
    assert r.status == 404
    c = await (await tenant.call("GET", f"/campaigns/{draft}")).json()
    assert c["state"] == "cancelled"
    r = await tenant.call("POST", "/campaigns", json={
        "name": "c", "line_id": line_id, "list_id": "x", "purpose": "informational",
        "template": "Merhaba"})
    assert r.status == 404
    entries = (await (await tenant.call("GET", "/audit")).json())["entries"]
    [entry] = [e for e in entries if e["action"] == "line.delete"]
    assert entry["detail"]["line_id"] == line_id and entry["detail"]["cancelled_drafts"] == 1
    assert "app-secret" not in str(entries) and "EAAG-token" not in str(entries)


async def test_another_tenants_line_is_404(tenant):
    line_id = await _line(tenant, WHATSAPP)
    app = tenant.client.app
    other_id, key = await accounts.create_tenant(app[db_key], app[master_key], "Başka",
                                                 "başka bir uzun parola 7", kdf="min")
    other = ApiTenant(tenant.client, other_id, key)
    r = await other.call("DELETE", f"/lines/{line_id}")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    assert (await _row(tenant, line_id)).state == "active"


async def test_a_line_with_a_scheduled_campaign_is_refused_until_it_is_cancelled(tenant):
    await tenant.unlock()
    line_id = await _line(tenant, {"channel": "sandbox", "name": "ikinci"})
    campaign = await _campaign(tenant, line_id, (datetime.now(UTC) + timedelta(days=1))
                               .isoformat())
    r = await tenant.call("POST", f"/campaigns/{campaign}/start")
    assert r.status == 200 and (await r.json())["state"] == "scheduled", await r.text()
    r = await tenant.call("DELETE", f"/lines/{line_id}")
    assert r.status == 409
    error = (await r.json())["error"]
    assert error["code"] == "line_in_use" and campaign in error["message"]
    assert (await _row(tenant, line_id)).state == "active"
    assert (await tenant.call("POST", f"/campaigns/{campaign}/cancel")).status == 200
    assert (await tenant.call("DELETE", f"/lines/{line_id}")).status == 204


async def test_the_last_sandbox_line_is_kept(tenant):
    [first] = (await (await tenant.call("GET", "/lines")).json())["lines"]
    r = await tenant.call("DELETE", f"/lines/{first['id']}")
    assert r.status == 409 and (await r.json())["error"]["code"] == "last_sandbox_line"
    second = await _line(tenant, {"channel": "sandbox", "name": "ikinci"})
    assert (await tenant.call("DELETE", f"/lines/{first['id']}")).status == 204
    r = await tenant.call("DELETE", f"/lines/{second}")
    assert r.status == 409 and (await r.json())["error"]["code"] == "last_sandbox_line"


@pytest.fixture
async def bot_api(aiohttp_server):
    state, polls = BotApiState(), []

    @web.middleware
    async def count_polls(request: web.Request, handler):
        if request.path.lower().endswith("/getupdates"):
            polls.append(time.monotonic())
        return await handler(request)
    app = create_bot_api_app(state)
    app.middlewares.append(count_polls)
    return state, polls, str((await aiohttp_server(app)).make_url("")).rstrip("/")


@pytest.fixture
def config(config, bot_api):
    return with_providers(config, telegram=bot_api[2])


async def test_deleting_a_telegram_line_stops_its_polling_and_unlinks_operators(tenant, bot_api):
    _, polls, _ = bot_api
    line_id = await _line(tenant, {"channel": "telegram", "name": "Bot", "bot_token": TOKEN})
    deadline = time.monotonic() + 10  # the poller looks for new bots every 5 s
    while not polls and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert polls, "the new bot was never polled"
    async with tenant.client.app[db_key].begin() as conn:
        await conn.execute(operators.insert().values(
            id="op-1", tenant_id=tenant.id, line_id=line_id, chat_index=b"\0" * 16,
            chat_wrapped=b"x", created_at=time.time()))
    assert (await tenant.call("DELETE", f"/lines/{line_id}")).status == 204
    await asyncio.sleep(1.5)  # a poll in flight ends; the loop finds no credentials
    stopped = len(polls)
    await asyncio.sleep(2.0)
    assert len(polls) == stopped
    async with tenant.client.app[db_key].connect() as conn:
        linked = await conn.execute(sa.select(sa.func.count()).select_from(operators))
        assert linked.scalar() == 0


async def test_lines_page_deletes_a_line_and_shows_why_when_it_cannot(owner, tenant):
    line_id = await _line(tenant, WHATSAPP)
    page = await (await owner.get("/lines")).text()
    assert f'action="/lines/{line_id}/delete"' in page
    r = await owner.post(f"/lines/{line_id}/delete", allow_redirects=False)
    assert r.status == 303
    assert line_id not in await (await owner.get("/lines")).text()
    [sandbox] = (await (await tenant.call("GET", "/lines")).json())["lines"]
    r = await owner.post(f"/lines/{sandbox['id']}/delete")
    assert r.status == 409 and 'data-testid="line-error"' in await r.text()
    other = await _line(tenant, WHATSAPP)
    operator = await make_web_user(owner.client, tenant, "operator")  # signs the client in
    assert (await operator.post(f"/lines/{other}/delete")).status == 403


async def test_deleting_a_telegram_line_removes_its_webhook(config, bot_api, aiohttp_client):
    state, _, _ = bot_api
    config = dataclasses.replace(config, server=dataclasses.replace(
        config.server, public_url="https://izinli.example.com"))
    client = await aiohttp_client(create_app(config))
    app = client.app
    tenant_id, key = await accounts.create_tenant(app[db_key], app[master_key], "Web", PASSPHRASE,
                                                  kdf="min")
    tenant = ApiTenant(client, tenant_id, key)
    line_id = await _line(tenant, {"channel": "telegram", "name": "Bot", "bot_token": TOKEN})
    assert state.webhooks[TOKEN]["url"].endswith(f"/webhooks/telegram/{line_id}")
    assert (await tenant.call("DELETE", f"/lines/{line_id}")).status == 204
    assert TOKEN not in state.webhooks
