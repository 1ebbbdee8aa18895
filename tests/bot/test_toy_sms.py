"""The one-module rule: a channel defined only in tests (toy_sms) and registered through
bot.registry alone is added over the API with checked credentials, sends campaigns through
the dispatcher and receives its delivery reports on its own webhook route."""
from __future__ import annotations

import asyncio
import time

import pytest
import toy_sms
from fakes.sms import SmsState, create_sms_app, delivery_report

from bot import registry
from optout import subjects

SECRET = "sms-webhook-secret"


@pytest.fixture
async def sms(aiohttp_server):
    state = SmsState()
    server = await aiohttp_server(create_sms_app(state))
    return state, str(server.make_url(""))


@pytest.fixture
def config(config, sms):
    """One register() call before the app is built; withdrawn after the test."""
    registry.register(toy_sms.spec(sms[1], SECRET))
    yield config
    registry.unregister("sms")


async def _until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_toy_sms_channel_through_registry_alone(tenant, sms):
    state, _ = sms
    openapi = await (await tenant.client.get("/api/v1/openapi.json")).json()
    body = openapi["paths"]["/api/v1/lines"]["post"]["requestBody"]["content"]
    assert "sms" in body["application/json"]["schema"]["properties"]["channel"]["enum"]
    assert "/webhooks/sms/{line_id}" in openapi["paths"]
    # Credentials are checked by the spec's fields; the rate by its maximum.
    r = await tenant.call("POST", "/lines", json={"channel": "sms", "name": "SMS"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "missing_field"
    r = await tenant.call("POST", "/lines", json={"channel": "sms", "name": "SMS",
                                                  "api_key": state.api_key,
                                                  "sender": "not a sender id!"})
    assert r.status == 400 and "sender id" in (await r.json())["error"]["message"]
    r = await tenant.call("POST", "/lines", json={"channel": "sms", "name": "SMS",
                                                  "api_key": state.api_key, "sender": "IZINLI",
                                                  "rate_per_second": 500})
    assert r.status == 400 and "at most 50" in (await r.json())["error"]["message"]
    r = await tenant.call("POST", "/lines", json={"channel": "sms", "name": "SMS",
                                                  "api_key": state.api_key, "sender": "IZINLI"})
    assert r.status == 201, await r.text()
    line = await r.json()
    assert line["rate_per_second"] == 10.0 and line["webhook_path"] == f"/webhooks/sms/{line['id']}"
    assert state.api_key not in str(line)
    # A campaign on it goes through the dispatcher to the fake gateway.
    await tenant.unlock()
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "sms"})).json())["id"]
    r = await tenant.call("POST", f"/contacts/import?list_id={list_id}",
                          data=b"phone,name,consent\n05350000011,Ada,evet\n05350000012,Baran,evet\n",
                          headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    r = await tenant.call("POST", "/campaigns", json={
        "name": "sms", "line_id": line["id"], "list_id": list_id, "purpose": "commercial",
        "template": "Merhaba {{name}}"})
    assert r.status == 201, await r.text()
    cid = (await r.json())["id"]
    await tenant.call("POST", f"/campaigns/{cid}/start")

    async def completed():
        c = await (await tenant.call("GET", f"/campaigns/{cid}")).json()
        return c if c["state"] == "completed" else None
    c = await _until(completed)
    assert c["counts"]["sent"] == 2, c
    assert sorted(m["to"] for m in state.sent) == ["+905350000011", "+905350000012"]
    assert all(m["from"] == "IZINLI" and m["text"].startswith("Merhaba") for m in state.sent)
    # Its delivery reports arrive on its own route, checked with its own signature.
    path = f"/webhooks/sms/{line['id']}"
    raw, headers = delivery_report(SECRET, state.sent[0], "delivered")
    assert (await tenant.client.post(path, data=raw, headers={
        **headers, "X-Sms-Signature": "sha256=00"})).status == 401
    r = await tenant.client.post(path, data=raw, headers=headers)
    assert r.status == 200 and (await r.json())["handled"] == 1
    raw, headers = delivery_report(SECRET, state.sent[1], "read")
    assert (await tenant.client.post(path, data=raw, headers=headers)).status == 200
    c = await (await tenant.call("GET", f"/campaigns/{cid}")).json()
    assert (c["counts"]["delivered"], c["counts"]["read"]) == (1, 1), c
    # Its error codes become reasons through the one mapping (campaigns.ports.reason_of).
    assert registry.get("sms").reason_for_error(30007) == "filtered"
    # The consent ledger and KVKK reports know the channel from its registration.
    r = await tenant.call("GET", "/gate", params={"address": "+905350000011",
                                                  "channel": "sms"})
    assert (await r.json())["reason"] == "allowed"
    report = subjects.build_report("+905350000011", {
        "contact": None, "consents": [], "suppressions": [], "replies_received": 0,
        "messages": [{"channel": "sms"}, {"channel": "whatsapp"}]}, [])
    assert toy_sms.PROCESSOR in report["processors"] and len(report["processors"]) == 2
