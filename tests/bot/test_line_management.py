"""Managing lines (issue 15 item 4): PATCH, pause / resume / archive over the API, the CLI and
the dashboard, against the fake Graph API (which checks the access token)."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
import sqlalchemy as sa
from conftest import ApiTenant, open_window, with_providers
from fakes.graph import PHONE_NUMBER_ID, GraphState, create_graph_app

from dashboard.keys import db_key
from store.tables import audit_log

APP_SECRET, VERIFY = "app-secret-123", "verify-me"


@pytest.fixture
async def graph(aiohttp_server):
    state = GraphState(pair_interval=0.1)
    server = await aiohttp_server(create_graph_app(state))
    return state, str(server.make_url("/v21.0"))


@pytest.fixture
def config(config, graph):
    return with_providers(config, whatsapp=graph[1])


@pytest.fixture
async def wa_line(tenant, graph):
    r = await tenant.call("POST", "/lines", json={
        "channel": "whatsapp", "name": "Mağaza", "phone_number_id": PHONE_NUMBER_ID,
        "access_token": graph[0].access_token, "app_secret": APP_SECRET,
        "verify_token": VERIFY, "messaging_tier": 1})
    assert r.status == 201, await r.text()
    return await r.json()


async def _until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def _campaign(t: ApiTenant, line_id: str, phones: list[str], start: bool = True) -> str:
    await open_window(t, line_id, phones)
    list_id = (await (await t.call("POST", "/lists", json={"name": "l"})).json())["id"]
    rows = "".join(f"{p},Kişi,evet\n" for p in phones)
    r = await t.call("POST", f"/contacts/import?list_id={list_id}",
                     data=("phone,name,consent\n" + rows).encode(),
                     headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    r = await t.call("POST", "/campaigns", json={"name": "c", "line_id": line_id,
                                                 "list_id": list_id, "template": "Merhaba"})
    assert r.status == 201, await r.text()
    cid = (await r.json())["id"]
    if start:
        assert (await t.call("POST", f"/campaigns/{cid}/start")).status == 200
    return cid


async def _line(t: ApiTenant, line_id: str) -> dict:
    lines = (await (await t.call("GET", "/lines")).json())["lines"]
    return next(line for line in lines if line["id"] == line_id)


async def _state(t: ApiTenant, cid: str) -> dict:
    return await (await t.call("GET", f"/campaigns/{cid}")).json()


async def test_line_resume_edit_archive(tenant, graph, wa_line):
    state, _ = graph
    line_id = wa_line["id"]
    await tenant.unlock()
    # WhatsApp answers 131048 (spam rate limit): the dispatcher pauses the line.
    state.fail["905350000021"] = 131048
    cid = await _campaign(tenant, line_id, ["05350000021", "05350000022"])

    async def paused():
        line = await _line(tenant, line_id)
        return line if line["state"] == "paused" else None
    assert (await _until(paused))["state_reason"] == "spam_rate_limited"
    # The owner resumes it and is told why it had been paused.
    del state.fail["905350000021"]
    r = await tenant.call("POST", f"/lines/{line_id}/resume")
    assert r.status == 200
    resumed = await r.json()
    assert (resumed["state"], resumed["resumed_from"]) == ("active", "spam_rate_limited")

    async def done():
        c = await _state(tenant, cid)
        return c if c["state"] == "completed" else None
    assert (await _until(done))["counts"]["sent"] == 1
    # Edit: name, rate, tier; the rate is checked against the channel's maximum (1,000).
    r = await tenant.call("PATCH", f"/lines/{line_id}", json={
        "name": "Yeni ad", "rate_per_second": 200, "messaging_tier": 2, "waba_id": "1234"})
    assert r.status == 200, await r.text()
    edited = await r.json()
    assert (edited["name"], edited["rate_per_second"], edited["messaging_tier"],
            edited["waba_id"]) == ("Yeni ad", 200.0, 2, "1234")
    for body, code in (({"rate_per_second": 5000}, "invalid_line"),
                       ({"messaging_tier": 9}, "invalid_field"),
                       ({"waba_id": "abc"}, "invalid_field"),
                       ({"phone_number_id": "1"}, "unknown_field"),
                       ({"bot_token": "x"}, "unknown_field"),
                       ({}, "missing_field")):
        r = await tenant.call("PATCH", f"/lines/{line_id}", json=body)
        assert r.status == 400 and (await r.json())["error"]["code"] == code, body
    assert (await _line(tenant, line_id))["rate_per_second"] == 200.0
    # Token rotation: Graph now takes only the new token; the next send uses it.
    state.access_token = "EAAG-rotated-token"
    r = await tenant.call("PATCH", f"/lines/{line_id}",
                          json={"access_token": "EAAG-rotated-token"})
    assert r.status == 200 and "EAAG-rotated" not in await r.text()
    cid2 = await _campaign(tenant, line_id, ["05350000023"])

    async def done2():
        c = await _state(tenant, cid2)
        return c if c["state"] == "completed" else None
    assert (await _until(done2))["counts"]["sent"] == 1
    assert state.sent[-1]["to"] == "905350000023"
    # Archive: a running campaign on the line (held by an owner's pause) is paused with the
    # reason; the archived line stays listed, and cannot be resumed or changed.
    r = await tenant.call("POST", f"/lines/{line_id}/pause")
    assert (await r.json())["state_reason"] == "paused by owner"
    cid3 = await _campaign(tenant, line_id, ["05350000024"])
    assert (await _state(tenant, cid3))["state"] == "running"
    r = await tenant.call("POST", f"/lines/{line_id}/archive")
    assert r.status == 200
    archived = await r.json()
    assert archived["state"] == "archived" and archived["paused_campaigns"] == [cid3]
    c3 = await _state(tenant, cid3)
    assert (c3["state"], c3["state_reason"]) == ("paused", "line archived")
    r = await tenant.call("POST", f"/lines/{line_id}/resume")
    assert r.status == 409 and (await r.json())["error"]["code"] == "line_archived"
    assert (await tenant.call("PATCH", f"/lines/{line_id}", json={"name": "x"})).status == 409
    # Nothing can send on it again: its paused campaign is not resumed, no new one is made.
    r = await tenant.call("POST", f"/campaigns/{cid3}/resume")
    assert r.status == 409 and (await r.json())["error"]["code"] == "line_archived"
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "m"})).json())["id"]
    r = await tenant.call("POST", "/campaigns", json={"name": "d", "line_id": line_id,
                                                      "list_id": list_id, "template": "Merhaba"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "line_archived"
    assert (await _line(tenant, line_id))["state"] == "archived"
    async with tenant.client.app[db_key].connect() as conn:
        entries = [(r.action, r.detail) for r in await conn.execute(sa.select(
            audit_log.c.action, audit_log.c.detail).where(
            audit_log.c.action.like("line.%")).order_by(audit_log.c.seq))]
    assert [a for a, _ in entries] == ["line.resume", "line.update", "line.update",
                                       "line.pause", "line.archive"]
    assert json.loads(entries[0][1])["previous_reason"] == "spam_rate_limited"
    assert all("EAAG" not in detail for _, detail in entries)
