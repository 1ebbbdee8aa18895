"""Refusals made in İYS reach the gate (and so a running campaign) at the next pull."""
import asyncio
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from conftest import with_providers
from fakes.iys import BRAND_CODE, IYS_CODE, PASSWORD, USERNAME, IysState, create_iys_app

from dashboard.keys import db_key, iys_sync_key
from store.tables import consent_events


@pytest.fixture
async def iys(aiohttp_server):
    state = IysState()
    server = await aiohttp_server(create_iys_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
def config(config, iys):
    """The service pointed at the fake İYS, as an operator would (providers.iys_url)."""
    return with_providers(config, iys=iys[1])


async def _enable(tenant, base: str):
    r = await tenant.call("PATCH", "/settings", json={
        "iys_enabled": True, "iys_code": IYS_CODE, "iys_brand_code": BRAND_CODE,
        "iys_credentials": {"username": USERNAME, "password": PASSWORD}})
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["iys_connected"] is True and PASSWORD not in await r.text()


async def _gate(tenant, address):
    r = await tenant.call("GET", "/gate", params={"address": address, "channel": "whatsapp"})
    return (await r.json())["reason"]


async def test_refusal_in_iys_blocks_commercial_sends_after_a_pull(tenant, iys):
    state, base = iys
    await tenant.unlock()  # the blind-index key is the tenant's (issue 17)
    await tenant.call("POST", "/consents", json={
        "address": "05321239876", "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "web formu"})
    await _enable(tenant, base)
    sync = tenant.client.app[iys_sync_key]
    state.citizen_refuse("+905321239876", "MESAJ", datetime.now(UTC))
    assert await sync.pull(tenant.id) == 1
    assert await _gate(tenant, "+905321239876") == "iys_refused"
    # The cursor is kept: the same change is not applied twice.
    assert await sync.pull(tenant.id) == 0
    history = (await (await tenant.call("GET", "/consents", params={
        "address": "+905321239876", "channel": "whatsapp"})).json())["history"]
    # İYS dates have whole seconds, so within one second the order may tie; both are kept.
    assert sorted(h["status"] for h in history) == ["granted", "revoked"]
    assert any(h["source"].startswith("IYS") for h in history)


async def test_iys_outage_is_retried_and_reported_not_fatal(tenant, iys):
    state, base = iys
    await _enable(tenant, base)
    state.outage = True
    sync = tenant.client.app[iys_sync_key]
    assert await sync.pull_all() == 0  # logged, retried next time, nothing applied
    state.outage = False
    state.citizen_refuse("+905321239877", "MESAJ", datetime.now(UTC))
    assert await sync.pull_all() == 1


async def test_iys_credentials_need_the_codes(tenant):
    r = await tenant.call("PATCH", "/settings", json={
        "iys_credentials": {"username": USERNAME, "password": PASSWORD}})
    assert r.status == 400


async def test_consents_collected_here_are_pushed_to_iys(tenant, iys):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    state, base = iys
    await _enable(tenant, base)
    for status in ("granted", "revoked"):
        r = await tenant.call("POST", "/consents", json={
            "address": "05321239878", "channel": "whatsapp", "status": status,
            "source": "HS_WEB", "evidence": "web formu"})
        assert r.status == 201
    sync = tenant.client.app[iys_sync_key]
    assert await _gate(tenant, "+905321239878") in ("opted_out", "iys_pending")
    await tenant.call("POST", "/vault/lock")
    assert await sync.push(tenant.id) == {}  # locked: the numbers are sealed; it waits
    await tenant.unlock()
    # Granted and revoked within one second: İYS gets them one second apart, in order.
    sent, deadline = 0, time.monotonic() + 5
    while sent < 2:
        counts = await sync.push(tenant.id)
        assert not counts.get("failed"), counts
        sent += counts.get("sent", 0)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    history = state.history("+905321239878", "MESAJ")
    assert [e.status for e in history] == ["ONAY", "RET"]
    assert history[1].consent_date > history[0].consent_date
    states = [h["iys_sync_state"] for h in (await (await tenant.call("GET", "/consents", params={
        "address": "+905321239878", "channel": "whatsapp"})).json())["history"]]
    assert "pending" not in states
    assert await sync.push(tenant.id) == {}  # nothing left


async def test_with_iys_on_a_consent_is_pending_until_iys_accepts_it(tenant, iys):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    _, base = iys
    await _enable(tenant, base)
    await tenant.call("POST", "/consents", json={
        "address": "05321239879", "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "web formu"})
    assert await _gate(tenant, "+905321239879") == "iys_pending"
    await tenant.unlock()
    assert (await tenant.client.app[iys_sync_key].push(tenant.id))["sent"] == 1
    assert await _gate(tenant, "+905321239879") == "allowed"


async def test_deadlines_at_risk_are_found(tenant, iys):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    _, base = iys
    await _enable(tenant, base)
    await tenant.call("POST", "/consents", json={
        "address": "05321239880", "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "web formu"})
    sync = tenant.client.app[iys_sync_key]
    assert await sync.at_risk() == {}
    in_five_days = datetime.now(UTC).timestamp() + 5 * 86400
    assert await sync.at_risk(now=in_five_days) == {tenant.id: 1}


async def test_records_iys_rejects_are_shown_to_the_owner_without_the_number(tenant, iys):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    state, base = iys
    await _enable(tenant, base)
    # İYS already holds an ONAY for this number (given through another provider): ours is a
    # repeated state, which İYS refuses with a message that quotes the number.
    state._append(BRAND_CODE, {"recipient": "+905321239881", "type": "MESAJ",
                               "recipientType": "BIREYSEL", "source": "HS_WEB",
                               "status": "ONAY"}, state.now())
    await tenant.call("POST", "/consents", json={
        "address": "05321239881", "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "web formu"})
    await tenant.unlock()
    assert (await tenant.client.app[iys_sync_key].push(tenant.id))["failed"] == 1
    r = await tenant.call("GET", "/iys")
    body = await r.json()
    assert body["enabled"] and body["failed"] == 1 and body["pending"] == 0
    (rejection,) = body["rejections"]
    assert rejection["error"].split(":")[0] in ("H175", "H176")
    assert "5321239881" not in await r.text()
    r = await tenant.call("POST", "/iys/retry")
    assert (await r.json()) == {"requeued": 1}
    assert (await (await tenant.call("GET", "/iys")).json())["pending"] == 1


async def test_consents_from_import_bot_and_api_reach_iys_before_their_deadline(tenant, iys):
    state, base = iys
    await _enable(tenant, base)
    await tenant.unlock()
    csv_text = ("telefon;izin;izin kaynağı\n0532 123 98 82;evet;HS_FIZIKSEL_ORTAM\n"
                "0532 123 98 83;evet;HS_WEB\n")
    r = await tenant.call("POST", "/contacts/import", data=csv_text.encode("cp1254"),
                          headers={"Content-Type": "text/csv"})
    assert r.status in (200, 201), await r.text()
    await tenant.call("POST", "/consents", json={
        "address": "05321239884", "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "web formu"})
    sync = tenant.client.app[iys_sync_key]
    assert (await sync.push(tenant.id))["sent"] == 3
    # The person then replies DUR on the business's line: the refusal goes to İYS too.
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    await tenant.call("POST", "/sandbox/inbound", json={"line_id": line, "from": "05321239882",
                                                        "text": "DUR"})
    # İYS keeps whole seconds: a DUR within the second of the import goes one second later.
    deadline = time.monotonic() + 5
    while not (await sync.push(tenant.id)).get("sent"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    for number, statuses in (("+905321239882", ["ONAY", "RET"]), ("+905321239883", ["ONAY"]),
                             ("+905321239884", ["ONAY"])):
        entries = state.history(number, "MESAJ")
        assert [e.status for e in entries] == statuses
    status = await (await tenant.call("GET", "/iys")).json()
    assert status["pending"] == 0 and status["failed"] == 0 and status["sent"] == 4
    # Each upload happened before its 3-business-day deadline.
    async with tenant.client.app[db_key].connect() as conn:
        rows = list(await conn.execute(sa.select(consent_events.c.iys_deadline).where(
            consent_events.c.tenant_id == tenant.id)))
    assert rows and all(r.iys_deadline > time.time() for r in rows)
