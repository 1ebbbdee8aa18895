"""Provider events apply in event order, and once (issue 12 item 4): WhatsApp marketing
preferences, STOP/START replies and statuses, Telegram member updates and consent taps, through
the real webhooks against the fake providers."""
from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from conftest import ApiTenant, open_window
from fakes.graph import (
    PHONE_NUMBER_ID,
    GraphState,
    batch,
    create_graph_app,
    signed_webhook,
    status_body,
    text_message_body,
    user_preferences_body,
)
from fakes.telegram import (
    TOKEN,
    BotApiState,
    callback_update,
    create_bot_api_app,
    kicked_update,
    unblocked_update,
)

from campaigns.lines import get_line
from campaigns.ports import Line
from dashboard.keys import credentials_key, db_key, inbound_key

APP_SECRET, VERIFY = "app-secret-order-77", "verify-order"
T0 = int(time.time()) - 3600  # the "t = 100, 200, 300" are T0 + 100, + 200, + 300
PHONE, WA = "+905350000042", "905350000042"


@pytest.fixture
async def graph(aiohttp_server):
    state = GraphState(pair_interval=0.3, retry_after="1")
    server = await aiohttp_server(create_graph_app(state))
    return state, str(server.make_url("/v21.0"))


@pytest.fixture
async def bot_api(aiohttp_server):
    state = BotApiState()
    server = await aiohttp_server(create_bot_api_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
def config(config, graph, bot_api):
    """The service pointed at the fake providers (operator configuration), with Telegram
    webhooks set rather than polled."""
    return dataclasses.replace(
        config, providers=dataclasses.replace(config.providers, whatsapp_url=graph[1],
                                              telegram_url=bot_api[1]),
        server=dataclasses.replace(config.server, public_url="https://izinli.example.com"))


@pytest.fixture
async def wa_line(tenant, graph) -> dict:
    r = await tenant.call("POST", "/lines", json={
        "channel": "whatsapp", "name": "WhatsApp", "phone_number_id": PHONE_NUMBER_ID,
        "access_token": graph[0].access_token, "app_secret": APP_SECRET,
        "verify_token": VERIFY, "messaging_tier": 1})
    assert r.status == 201, await r.text()
    return await r.json()


@pytest.fixture
async def tg_line(tenant, bot_api) -> dict:
    r = await tenant.call("POST", "/lines", json={"channel": "telegram", "name": "Bot",
                                                  "bot_token": TOKEN})
    assert r.status == 201, await r.text()
    return await r.json()


async def _post_body(tenant: ApiTenant, line: dict, body: bytes, headers: dict) -> dict:
    r = await tenant.client.post(f"/webhooks/whatsapp/{line['id']}", data=body,
                                 headers={**headers, "Content-Type": "application/json"})
    assert r.status == 200, await r.text()
    return await r.json()


async def _post_wa(tenant: ApiTenant, line: dict, payload: dict) -> dict:
    return await _post_body(tenant, line, *signed_webhook(APP_SECRET, payload))


async def _post_tg(tenant: ApiTenant, line: dict, update: dict) -> dict:
    creds = await tenant.client.app[credentials_key].telegram(
        Line(line["id"], tenant.id, "telegram", "", 30.0, "active"))
    r = await tenant.client.post(f"/webhooks/telegram/{line['id']}", json=update, headers={
        "X-Telegram-Bot-Api-Secret-Token": creds.webhook_secret})
    assert r.status == 200, await r.text()
    return await r.json()


async def _gate(tenant: ApiTenant, address: str, channel: str) -> str:
    r = await tenant.call("GET", "/gate", params={"address": address, "channel": channel})
    return (await r.json())["reason"]


async def _consent(tenant: ApiTenant, address: str, channel: str) -> tuple[str | None, int]:
    """(current status, number of history entries)."""
    r = await tenant.call("GET", "/consents", params={"address": address, "channel": channel})
    assert r.status == 200, await r.text()
    body = await r.json()
    return (body["state"] or {}).get("status"), len(body["history"])


def _preference(value: str, at: int) -> dict:
    return user_preferences_body(WA, value, timestamp=at)


async def test_old_preference_event_does_not_undo_newer_stop(tenant, wa_line):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    r = await _post_wa(tenant, wa_line, _preference("stop", T0 + 200))
    assert r["handled"] == 1
    assert await _gate(tenant, PHONE, "whatsapp") == "opted_out"
    assert await _consent(tenant, PHONE, "whatsapp") == ("revoked", 1)
    # A resume from before the stop, delivered late: acknowledged, and nothing changes.
    r = await _post_wa(tenant, wa_line, _preference("resume", T0 + 100))
    assert r["handled"] == 0
    assert await _gate(tenant, PHONE, "whatsapp") == "opted_out"
    assert await _consent(tenant, PHONE, "whatsapp") == ("revoked", 1)
    # Nor does a resume of the stop's own second: a STOP is never undone by a tie.
    await _post_wa(tenant, wa_line, _preference("resume", T0 + 200))
    assert await _gate(tenant, PHONE, "whatsapp") == "opted_out"
    # A newer resume is the person's latest word: as before, it grants and lifts the opt-out.
    r = await _post_wa(tenant, wa_line, _preference("resume", T0 + 300))
    assert r["handled"] == 1
    assert await _gate(tenant, PHONE, "whatsapp") == "allowed"
    assert await _consent(tenant, PHONE, "whatsapp") == ("granted", 2)
    # And the old stop, replayed after it, does not undo that resume either.
    await _post_wa(tenant, wa_line, _preference("stop", T0 + 200))
    assert await _gate(tenant, PHONE, "whatsapp") == "allowed"


async def test_same_signed_delivery_twice_is_a_no_op(tenant, wa_line):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    body, headers = signed_webhook(APP_SECRET, batch(
        _preference("stop", T0 + 200),
        text_message_body(WA, "merhaba", message_id="wamid.ORDER1", timestamp=str(T0))))
    first = await _post_body(tenant, wa_line, body, headers)
    assert first["handled"] == 2 and "duplicate" not in first
    before = await _consent(tenant, PHONE, "whatsapp")
    again = await _post_body(tenant, wa_line, body, headers)
    assert again == {"ok": True, "handled": 0, "duplicate": True}
    assert await _consent(tenant, PHONE, "whatsapp") == before == ("revoked", 1)
    assert await _gate(tenant, PHONE, "whatsapp") == "opted_out"


async def test_same_telegram_update_twice_is_a_no_op(tenant, tg_line):
    """A consent tap carries no time of its own: without the update-id check, Telegram's
    redelivery would record the consent a second time."""
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    chat = 700100900
    tap = callback_update(chat, "consent:yes", 501)
    assert (await _post_tg(tenant, tg_line, tap))["handled"] == 1
    assert await _consent(tenant, str(chat), "telegram") == ("granted", 1)
    await asyncio.sleep(1.05)  # the redelivery comes later: a new second of our clock
    assert (await _post_tg(tenant, tg_line, tap))["handled"] == 0
    assert await _consent(tenant, str(chat), "telegram") == ("granted", 1)


async def test_late_telegram_member_update_does_not_lift_a_newer_block(tenant, tg_line):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    chat = 700100901
    await _post_tg(tenant, tg_line, kicked_update(chat, 601, date=T0 + 200))
    assert await _gate(tenant, str(chat), "telegram") == "blocked"
    # An unblock from before the block, delivered late, must not lift it.
    await _post_tg(tenant, tg_line, unblocked_update(chat, 602, date=T0 + 100))
    assert await _gate(tenant, str(chat), "telegram") == "blocked"
    await _post_tg(tenant, tg_line, unblocked_update(chat, 603, date=T0 + 200))  # a tie
    assert await _gate(tenant, str(chat), "telegram") == "blocked"
    await _post_tg(tenant, tg_line, unblocked_update(chat, 604, date=T0 + 300))
    # Unblocked; the block still counted as a stop, and an unblock is no consent.
    assert await _gate(tenant, str(chat), "telegram") == "opted_out"
    # The other way round: a block older than the unblock already applied does not block.
    other = 700100902
    await _post_tg(tenant, tg_line, unblocked_update(other, 605, date=T0 + 300))
    await _post_tg(tenant, tg_line, kicked_update(other, 606, date=T0 + 200))
    assert await _gate(tenant, str(other), "telegram") == "opted_out"  # revoked, not blocked


async def test_late_stop_and_start_replies_apply_in_event_order(tenant, graph, wa_line):
    state, _ = graph
    await tenant.unlock()
    stop = text_message_body(WA, "DUR", message_id="wamid.S", timestamp=str(T0 + 200))
    late_start = text_message_body(WA, "BAŞLA", message_id="wamid.L",
                                      timestamp=str(T0 + 100))
    assert (await _post_wa(tenant, wa_line, stop))["handled"] == 1
    await _post_wa(tenant, wa_line, late_start)
    assert await _gate(tenant, PHONE, "whatsapp") == "opted_out"
    assert await _consent(tenant, PHONE, "whatsapp") == ("revoked", 1)
    # Only the STOP was confirmed: telling the person "you are back" would be untrue.
    await asyncio.sleep(0.5)
    assert len([m for m in state.sent if m["to"] == WA]) == 1
    start = text_message_body(WA, "BAŞLA", message_id="wamid.N", timestamp=str(T0 + 300))
    await _post_wa(tenant, wa_line, start)
    assert await _gate(tenant, PHONE, "whatsapp") == "allowed"
    assert await _consent(tenant, PHONE, "whatsapp") == ("granted", 2)


async def test_sandbox_replies_out_of_order_are_stale_and_unanswered(tenant):
    """The shared inbound path (every channel): a superseded STOP or START is stored and
    reported stale, changes nothing and gets no confirmation."""
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    app = tenant.client.app
    async with app[db_key].connect() as conn:
        lines = (await (await tenant.call("GET", "/lines")).json())["lines"]
        line = await get_line(conn, tenant.id, lines[0]["id"])
    router = app[inbound_key]
    address = "+905350000043"
    first = await router.receive(line, address, "BAŞLA", "m1", sent_at=T0 + 300)
    late = await router.receive(line, address, "RET", "m2", sent_at=T0 + 200)
    assert (first.stale, late.stale, late.reply) == (False, True, None)
    assert await _gate(tenant, address, "sandbox") == "allowed"
    tie = await router.receive(line, address, "RET", "m3", sent_at=T0 + 300)
    assert not tie.stale and tie.reply is not None  # a stop of the same second wins
    assert await _gate(tenant, address, "sandbox") == "opted_out"


async def _campaign_rows(tenant: ApiTenant, line: dict, phones: list[str]) -> dict[str, dict]:
    await open_window(tenant, line["id"], phones)  # free text needs the 24 h window
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "l"})).json())["id"]
    rows = "".join(f"{p},Kişi,evet\n" for p in phones)
    r = await tenant.call("POST", f"/contacts/import?list_id={list_id}",
                          data=("phone,name,consent\n" + rows).encode(),
                          headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    r = await tenant.call("POST", "/campaigns", json={"name": "c", "line_id": line["id"],
                                                      "list_id": list_id, "template": "Selam"})
    cid = (await r.json())["id"]
    await tenant.call("POST", f"/campaigns/{cid}/start")
    for _ in range(200):
        c = await (await tenant.call("GET", f"/campaigns/{cid}")).json()
        if c["state"] == "completed":
            return cid
        await asyncio.sleep(0.1)
    raise AssertionError("campaign did not complete")


async def test_late_statuses_do_not_move_a_row_backwards(tenant, graph, wa_line):
    state, _ = graph
    await tenant.unlock()
    cid = await _campaign_rows(tenant, wa_line, ["05350000051", "05350000052"])
    sent = {m["to"]: m for m in state.sent}
    read, delivered = sent["905350000051"], sent["905350000052"]

    async def status(msg: dict, value: str, at: int, **kw) -> None:
        await _post_wa(tenant, wa_line, status_body(
            msg["id"], value, msg["to"], reference=msg["reference"], timestamp=str(at), **kw))

    await status(read, "delivered", T0 + 20)
    await status(read, "read", T0 + 30)
    await status(delivered, "delivered", T0 + 20)
    # Late arrivals, older than what was applied: none moves a row back.
    await status(read, "delivered", T0 + 20)
    await status(read, "sent", T0 + 10)
    await status(delivered, "sent", T0 + 10)
    await status(delivered, "failed", T0 + 15, error_code=131026)
    c = await (await tenant.call("GET", f"/campaigns/{cid}")).json()
    assert (c["counts"]["read"], c["counts"]["delivered"], c["counts"]["failed"]) == (1, 1, 0)


async def test_late_provider_opt_out_status_does_not_undo_a_newer_resume(tenant, wa_line):
    """Error 131050 on a failed status is an opt-out dated by that status: a resume the
    person made after it stands."""
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    await _post_wa(tenant, wa_line, _preference("resume", T0 + 300))
    assert await _gate(tenant, PHONE, "whatsapp") == "allowed"
    await _post_wa(tenant, wa_line, status_body(
        "wamid.OLD", "failed", WA, reference="1", error_code=131050, timestamp=str(T0 + 100)))
    assert await _gate(tenant, PHONE, "whatsapp") == "allowed"
    await _post_wa(tenant, wa_line, status_body(
        "wamid.NEW", "failed", WA, reference="2", error_code=131050, timestamp=str(T0 + 400)))
    assert await _gate(tenant, PHONE, "whatsapp") == "opted_out"
