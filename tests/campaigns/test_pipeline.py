"""The campaign pipeline through the API with the real dispatcher running in the app."""
from __future__ import annotations

import asyncio
import dataclasses
import random
import time

import pytest
import sqlalchemy as sa
from conftest import ApiTenant

from dashboard.keys import db_key
from store.tables import inbound_messages, outbox, sandbox_messages


@pytest.fixture(params=["rounds one at a time", "rounds overlapped"])
def config(config, request):
    """Every test here runs twice: with the rounds a real line has, and with rounds of one
    message (campaigns.max_batch = 1), so each round is full and the dispatcher overlaps
    rounds (the next claim taken while a round sends, results written while the next one is
    planned)."""
    if request.param == "rounds one at a time":
        return config
    return dataclasses.replace(config, campaigns=dataclasses.replace(config.campaigns,
                                                                     max_batch=1))


async def _lines(t: ApiTenant) -> str:
    return (await (await t.call("GET", "/lines")).json())["lines"][0]["id"]


async def _line(t: ApiTenant, rate: float, **simulate) -> str:
    body = {"channel": "sandbox", "name": f"line-{rate}", "rate_per_second": rate}
    if simulate:
        body["simulate"] = simulate
    r = await t.call("POST", "/lines", json=body)
    assert r.status == 201, await r.text()
    return (await r.json())["id"]


async def _list(t: ApiTenant, rows: list[str], header="phone,name,consent,sehir") -> str:
    r = await t.call("POST", "/lists", json={"name": "liste"})
    list_id = (await r.json())["id"]
    r = await t.call("POST", f"/contacts/import?list_id={list_id}",
                     data=("\n".join([header, *rows]) + "\n").encode(),
                     headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    return list_id


def _phones(n: int, start: int = 0) -> list[str]:
    return [f"+9053300{i:05d}" for i in range(start, start + n)]


async def _campaign(t: ApiTenant, line: str, list_id: str, template="Merhaba {{name}}",
                    purpose="commercial") -> str:
    r = await t.call("POST", "/campaigns", json={"name": "kampanya", "line_id": line,
                                                 "list_id": list_id, "template": template,
                                                 "purpose": purpose})
    assert r.status == 201, await r.text()
    return (await r.json())["id"]


async def _state(t: ApiTenant, cid: str) -> dict:
    return await (await t.call("GET", f"/campaigns/{cid}")).json()


async def _until(t: ApiTenant, cid: str, states=("completed", "cancelled", "failed"),
                 timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = await _state(t, cid)
        if c["state"] in states:
            return c
        await asyncio.sleep(0.1)
    raise AssertionError(f"campaign did not reach {states}: {c}")


async def _run(t: ApiTenant, cid: str, **kw) -> dict:
    r = await t.call("POST", f"/campaigns/{cid}/start")
    assert r.status == 200, await r.text()
    return await _until(t, cid, **kw)


async def _inbox(t: ApiTenant, to: str | None = None) -> list[dict]:
    r = await t.call("GET", "/sandbox/messages", params={"to": to} if to else None)
    return (await r.json())["messages"]


async def test_campaign_sends_with_footer_and_skips_without_consent(tenant):
    await tenant.unlock()
    list_id = await _list(tenant, ["05330000001,Elif,evet,İzmir", "05330000002,Deniz,,Muğla"])
    cid = await _campaign(tenant, await _lines(tenant), list_id,
                          "Merhaba {{name}}, {{sehir|şehriniz}} mağazamızda indirim!")
    c = await _run(tenant, cid)
    assert c["counts"]["sent"] == 1 and c["skipped_by_reason"] == {"no_consent": 1}
    (msg,) = await _inbox(tenant, "+905330000001")
    assert msg["text"].startswith("Merhaba Elif, İzmir mağazamızda indirim!")
    assert msg["text"].endswith("Mesaj almak istemiyorsanız RET yazıp yanıtlayın.")
    assert "Örnek Mağaza" in msg["text"]
    assert await _inbox(tenant, "+905330000002") == []


async def test_informational_needs_no_consent_and_has_no_footer(tenant):
    await tenant.unlock()
    list_id = await _list(tenant, ["05330000003,Ali,,Bursa"])
    cid = await _campaign(tenant, await _lines(tenant), list_id,
                          "Randevunuz yarın 10:00'da, {{name}}.", purpose="informational")
    assert (await _run(tenant, cid))["counts"]["sent"] == 1
    (msg,) = await _inbox(tenant, "+905330000003")
    assert msg["text"] == "Randevunuz yarın 10:00'da, Ali."


async def test_unknown_placeholder_is_400_naming_it(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    list_id = await _list(tenant, ["05330000004,Ali,evet,Bursa"])
    r = await tenant.call("POST", "/campaigns", json={
        "name": "x", "line_id": await _lines(tenant), "list_id": list_id,
        "template": "Merhaba {{isim}} {{sehir}}"})
    body = await r.json()
    assert r.status == 400 and body["error"]["code"] == "unknown_placeholder"
    assert "isim" in body["error"]["message"] and "sehir" in body["error"]["message"]
    r = await tenant.call("POST", "/campaigns", json={
        "name": "x", "line_id": "nope", "list_id": list_id, "template": "a"})
    assert r.status == 404


async def test_preview_renders_for_a_contact(tenant):
    await tenant.unlock()
    list_id = await _list(tenant, ["05330000005,Ayşe,evet,", "05330000006,Can,evet,Van"])
    cid = await _campaign(tenant, await _lines(tenant), list_id,
                          "Selam {{name}} ({{sehir|?}})")
    r = await tenant.call("POST", f"/campaigns/{cid}/preview", json={"address": "05330000006"})
    body = await r.json()
    assert body["to"] == "+905330000006" and body["text"].startswith("Selam Can (Van)")
    await tenant.call("POST", "/vault/lock")
    r = await tenant.call("POST", f"/campaigns/{cid}/preview", json={})
    assert r.status == 423


async def test_state_machine_rejects_invalid_actions(tenant):
    await tenant.unlock()
    list_id = await _list(tenant, ["05330000007,Ali,evet,"])
    cid = await _campaign(tenant, await _line(tenant, 0.5), list_id)
    assert (await tenant.call("POST", f"/campaigns/{cid}/resume")).status == 409
    assert (await tenant.call("POST", f"/campaigns/{cid}/start")).status == 200
    r = await tenant.call("POST", f"/campaigns/{cid}/start")
    assert r.status == 409 and (await r.json())["error"]["code"] == "invalid_state"
    assert (await (await tenant.call("POST", f"/campaigns/{cid}/pause")).json())["state"] == \
        "paused"
    assert (await (await tenant.call("POST", f"/campaigns/{cid}/cancel")).json())["state"] == \
        "cancelled"
    assert (await tenant.call("GET", "/campaigns/other-tenant-or-missing")).status == 404


async def test_cancel_skips_what_is_left(tenant):
    await tenant.unlock()
    list_id = await _list(tenant, [f"{p},N,evet," for p in _phones(30, 100)])
    cid = await _campaign(tenant, await _line(tenant, 10), list_id)
    await tenant.call("POST", f"/campaigns/{cid}/start")
    await asyncio.sleep(0.6)
    c = await (await tenant.call("POST", f"/campaigns/{cid}/cancel")).json()
    assert c["state"] == "cancelled"
    await asyncio.sleep(0.5)  # an in-flight round finishes; nothing new starts
    c = await _state(tenant, cid)
    assert c["counts"]["pending"] == 0 and c["counts"]["sent"] < 30
    assert c["skipped_by_reason"]["cancelled"] == 30 - c["counts"]["sent"] - \
        c["counts"]["sending"] - c["counts"]["unknown"]


async def test_waiting_unlock_resumes_by_itself(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    list_id = await _list(tenant, ["05330000008,Ali,evet,"])
    cid = await _campaign(tenant, await _lines(tenant), list_id)
    await tenant.call("POST", "/vault/lock")
    await tenant.call("POST", f"/campaigns/{cid}/start")
    c = await _until(tenant, cid, states=("waiting_unlock",))
    assert c["state_reason"] == "vault is locked" and c["counts"]["pending"] == 1
    await tenant.unlock()
    assert (await _until(tenant, cid))["counts"]["sent"] == 1


async def test_frequency_cap_across_campaigns(tenant):
    await tenant.unlock()
    list_id = await _list(tenant, ["05330000009,Ali,evet,"])
    line = await _lines(tenant)
    for _ in range(3):
        assert (await _run(tenant, await _campaign(tenant, line, list_id)))["counts"]["sent"] == 1
    c = await _run(tenant, await _campaign(tenant, line, list_id))
    assert c["skipped_by_reason"] == {"frequency_cap": 1}
    c = await _run(tenant, await _campaign(tenant, line, list_id, "Kargonuz yolda",
                                           purpose="informational"))
    assert c["counts"]["sent"] == 1  # the cap is for commercial messages


async def test_provider_rate_limit_requeues_and_loses_nothing(tenant):
    await tenant.unlock()
    phones = _phones(40, 200)
    list_id = await _list(tenant, [f"{p},N,evet," for p in phones])
    line = await _line(tenant, 100, enforced_rate_per_second=20)
    c = await _run(tenant, await _campaign(tenant, line, list_id))
    assert c["counts"]["sent"] == 40, c
    sent_to = sorted(m["to"] for m in await _inbox(tenant))
    assert sent_to == sorted(phones)


async def test_error_run_pauses_after_consecutive_errors_and_retry_requeues(tenant):
    await tenant.unlock()
    list_id = await _list(tenant, [f"{p},N,evet," for p in _phones(60, 300)])
    line = await _line(tenant, 1000, failure_rate=1)
    cid = await _campaign(tenant, line, list_id)
    await tenant.call("POST", f"/campaigns/{cid}/start")
    c = await _until(tenant, cid, states=("paused",))
    assert c["state_reason"].startswith("error_run") and c["counts"]["failed"] >= 50
    r = await tenant.call("POST", f"/campaigns/{cid}/retry")
    assert r.status == 200
    assert (await _state(tenant, cid))["counts"]["failed"] == 0


async def test_no_commercial_send_without_consent_at_send_time(tenant):
    """Consent revoked after the campaign started, before the recipient's turn."""
    await tenant.unlock()
    phones = _phones(12, 400)
    list_id = await _list(tenant, [f"{p},N,evet," for p in phones])
    cid = await _campaign(tenant, await _line(tenant, 4), list_id)
    await tenant.call("POST", f"/campaigns/{cid}/start")
    last = phones[-1]
    r = await tenant.call("POST", "/consents", json={
        "address": last, "channel": "sandbox", "status": "revoked", "source": "HS_MESAJ",
        "evidence": "müşteri telefonla reddetti"})
    assert r.status == 201
    c = await _until(tenant, cid)
    assert c["skipped_by_reason"] == {"opted_out": 1} and c["counts"]["sent"] == 11
    assert await _inbox(tenant, last) == []


async def test_no_send_starts_after_optout_commit(tenant):
    """STOPs arrive at high rate while a campaign runs: no message to a stopped recipient
    starts after its STOP was received (and so before its revocation committed)."""
    await tenant.unlock()
    phones = _phones(300, 1000)
    list_id = await _list(tenant, [f"{p},N,evet," for p in phones])
    line = await _line(tenant, 400)
    cid = await _campaign(tenant, line, list_id)
    stoppers = random.Random(5).sample(phones, 120)
    await tenant.call("POST", f"/campaigns/{cid}/start")

    async def stop(phone: str):
        await asyncio.sleep(random.random() * 0.6)
        r = await tenant.call("POST", "/sandbox/inbound", json={"line_id": line, "from": phone,
                                                                "text": "DUR"})
        assert r.status == 200

    await asyncio.gather(*(stop(p) for p in stoppers))
    c = await _until(tenant, cid, states=("completed", "paused"))
    if c["state"] == "paused":  # the spam guard noticed the opt-outs, as it should
        assert c["state_reason"].startswith("optout_rate")
        await tenant.call("POST", f"/campaigns/{cid}/resume")
        c = await _until(tenant, cid)
    assert c["counts"]["sent"] + c["skipped_by_reason"].get("opted_out", 0) == 300
    db = tenant.client.app[db_key]
    async with db.connect() as conn:
        stops = {bytes(r.address_index): r.received_at for r in await conn.execute(
            sa.select(inbound_messages.c.address_index, inbound_messages.c.received_at))}
        sends = list(await conn.execute(sa.select(sandbox_messages.c.to_index,
                                                  sandbox_messages.c.at)))
    late = [at - stops[bytes(ix)] for ix, at in sends
            if bytes(ix) in stops and at > stops[bytes(ix)]]
    # The confirmations are the only messages after a STOP: one per stopper.
    assert len(late) == len(stoppers), late


async def test_at_most_one_outbox_row_per_campaign_and_contact(tenant):
    await tenant.unlock()
    list_id = await _list(tenant, ["05330000010,A,evet,", "0533 000 00 10,A2,evet,"])
    cid = await _campaign(tenant, await _lines(tenant), list_id)
    c = await _run(tenant, cid)
    assert c["counts"]["sent"] == 1
    async with tenant.client.app[db_key].connect() as conn:
        n = (await conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.campaign_id == cid))).scalar()
    assert n == 1
    assert len(await _inbox(tenant, "+905330000010")) == 1


@pytest.mark.parametrize("purpose", ["commercial"])
async def test_quiet_hours_hold_commercial_sends(tenant, purpose):
    await tenant.unlock()
    hour = time.gmtime().tm_hour  # a one-hour window that is surely not now (UTC zone)
    start = (hour + 2) % 24
    r = await tenant.call("PATCH", "/settings", json={
        "quiet_hours": True, "quiet_start_hour": start, "quiet_end_hour": (start + 1) % 24,
        "timezone": "UTC"})
    assert r.status == 200
    list_id = await _list(tenant, ["05330000011,A,evet,"])
    cid = await _campaign(tenant, await _lines(tenant), list_id, purpose=purpose)
    await tenant.call("POST", f"/campaigns/{cid}/start")
    await asyncio.sleep(0.8)
    c = await _state(tenant, cid)
    assert (c["state"], c["state_reason"], c["counts"]["pending"]) == ("running",
                                                                        "quiet_hours", 1)


async def test_send_at_schedules_the_start(tenant):
    await tenant.unlock()
    list_id = await _list(tenant, ["05330000012,A,evet,"])
    send_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    r = await tenant.call("POST", "/campaigns", json={
        "name": "zamanlı", "line_id": await _lines(tenant), "list_id": list_id,
        "template": "Merhaba", "send_at": send_at})
    cid = (await r.json())["id"]
    c = await (await tenant.call("POST", f"/campaigns/{cid}/start")).json()
    assert c["state"] == "scheduled" and c["counts"]["pending"] == 1
    await asyncio.sleep(0.5)
    assert (await _state(tenant, cid))["state"] == "scheduled"
    assert (await _until(tenant, cid, timeout=15))["counts"]["sent"] == 1


async def test_frequency_cap_is_each_businesss_setting(tenant):
    await tenant.unlock()
    r = await tenant.call("PATCH", "/settings", json={"frequency_cap": 1,
                                                      "frequency_window_days": 30})
    assert (await r.json())["frequency_cap"] == 1
    list_id = await _list(tenant, ["05330000010,Ali,evet,"])
    line = await _lines(tenant)
    assert (await _run(tenant, await _campaign(tenant, line, list_id)))["counts"]["sent"] == 1
    c = await _run(tenant, await _campaign(tenant, line, list_id))
    assert c["skipped_by_reason"] == {"frequency_cap": 1}
    await tenant.call("PATCH", "/settings", json={"frequency_cap": 0})  # no cap
    c = await _run(tenant, await _campaign(tenant, line, list_id))
    assert c["counts"]["sent"] == 1
    for bad in ({"frequency_cap": -1}, {"frequency_window_days": 0}, {"frequency_cap": "3"}):
        assert (await tenant.call("PATCH", "/settings", json=bad)).status == 400


async def test_sandbox_messages_limit_keeps_the_newest(tenant: ApiTenant):
    """The sandbox page asks for the newest messages only (a sandbox campaign to thousands
    must not render them all); the API lists them oldest first either way."""
    await tenant.unlock()
    line = await _line(tenant, 500)
    list_id = await _list(tenant, [f"{p},Kişi {i},evet,İzmir" for i, p in
                                   enumerate(_phones(12))])
    await _run(tenant, await _campaign(tenant, line, list_id))
    everything = (await (await tenant.call("GET", "/sandbox/messages")).json())["messages"]
    assert len(everything) == 12
    r = await tenant.call("GET", "/sandbox/messages", params={"limit": "5"})
    assert r.status == 200
    assert (await r.json())["messages"] == everything[-5:]
    r = await tenant.call("GET", "/sandbox/messages", params={"limit": "beş"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_field"
