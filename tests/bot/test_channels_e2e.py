"""WhatsApp and Telegram lines end to end: the service against fake provider servers that
reproduce the documented APIs (tests/fakes), through the HTTP API and the webhooks."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from conftest import ApiTenant, open_window, with_providers
from fakes.graph import (
    PHONE_NUMBER_ID,
    WABA_ID,
    GraphState,
    button_body,
    create_graph_app,
    signed_webhook,
    status_body,
    template,
    text_message_body,
    user_preferences_body,
)
from fakes.telegram import (
    TOKEN,
    BotApiState,
    callback_update,
    create_bot_api_app,
    kicked_update,
    text_update,
)

from dashboard.keys import credentials_key

APP_SECRET, VERIFY = "app-secret-123", "verify-me"


async def _until(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def _gate(t: ApiTenant, address: str, channel: str) -> str:
    r = await t.call("GET", "/gate", params={"address": address, "channel": channel})
    return (await r.json())["reason"]


async def _campaign(t: ApiTenant, line: str, rows: list[str]) -> dict:
    await open_window(t, line, [row.split(",")[0] for row in rows])  # free text may go
    list_id = (await (await t.call("POST", "/lists", json={"name": "l"})).json())["id"]
    r = await t.call("POST", f"/contacts/import?list_id={list_id}",
                     data=("phone,name,consent\n" + "\n".join(rows) + "\n").encode(),
                     headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    r = await t.call("POST", "/campaigns", json={"name": "c", "line_id": line,
                                                 "list_id": list_id,
                                                 "template": "Merhaba {{name}}"})
    cid = (await r.json())["id"]
    await t.call("POST", f"/campaigns/{cid}/start")

    async def done():
        c = await (await t.call("GET", f"/campaigns/{cid}")).json()
        return c if c["state"] == "completed" else None
    return await _until(done)


@pytest.fixture
async def graph(aiohttp_server):
    state = GraphState(pair_interval=0.3, retry_after="1")  # shortened to keep tests quick
    server = await aiohttp_server(create_graph_app(state))
    return state, str(server.make_url("/v21.0"))


@pytest.fixture
async def bot_api(aiohttp_server):
    state = BotApiState()
    server = await aiohttp_server(create_bot_api_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
def config(config, graph, bot_api):
    """The service pointed at the fake Graph API and Bot API, as an operator would."""
    return with_providers(config, whatsapp=graph[1], telegram=bot_api[1])


@pytest.fixture
async def wa_line(tenant, graph):
    state, _ = graph
    r = await tenant.call("POST", "/lines", json={
        "channel": "whatsapp", "name": "Mağaza WhatsApp", "phone_number_id": PHONE_NUMBER_ID,
        "access_token": state.access_token, "app_secret": APP_SECRET, "verify_token": VERIFY,
        "messaging_tier": 1, "waba_id": WABA_ID})
    assert r.status == 201, await r.text()
    line = await r.json()
    assert state.access_token not in json.dumps(line) and APP_SECRET not in json.dumps(line)
    return line


async def _post_wa(client, line_id: str, payload: dict, secret: str = APP_SECRET):
    body, headers = signed_webhook(secret, payload)
    return await client.post(f"/webhooks/whatsapp/{line_id}", data=body,
                             headers={**headers, "Content-Type": "application/json"})


async def test_whatsapp_campaign_statuses_and_stop(tenant, graph, wa_line):
    state, _ = graph
    await tenant.unlock()
    c = await _campaign(tenant, wa_line["id"], ["05350000001,Elif,evet", "05350000002,Can,evet"])
    assert c["counts"]["sent"] == 2, c
    texts = {m["to"]: m for m in state.sent}
    assert texts["905350000001"]["text"].startswith("Merhaba Elif")
    assert "RET yazıp yanıtlayın" in texts["905350000001"]["text"]
    client = tenant.client
    # Delivery and read receipts move the outbox forward; a redelivery changes nothing.
    msg = texts["905350000001"]
    for status in ("delivered", "read", "delivered"):
        r = await _post_wa(client, wa_line["id"], status_body(
            msg["id"], status, "+905350000001", reference=msg["reference"]))
        assert r.status == 200
    c = await (await tenant.call("GET", f"/campaigns/{c['id']}")).json()
    assert (c["counts"]["read"], c["counts"]["sent"]) == (1, 1)
    # A STOP arrives as a quick-reply button; its confirmation goes out through Graph.
    r = await _post_wa(client, wa_line["id"], button_body("+905350000002", "Stop promotions",
                                                             message_id="wamid.B1"))
    assert r.status == 200
    assert await _gate(tenant, "+905350000002", "whatsapp") == "opted_out"
    async def confirmed():  # Graph asked to wait (131056): the confirmation follows shortly
        return [m for m in state.sent if m["to"] == "905350000002"][1:]
    (confirmation,) = await _until(confirmed, timeout=5)
    assert "BAŞLA" in confirmation["text"]
    # Meta retries webhooks: the same message id is acknowledged and ignored.
    await _post_wa(client, wa_line["id"], button_body("+905350000002", "Stop promotions",
                                                         message_id="wamid.B1"))
    await asyncio.sleep(0.6)
    assert len([m for m in state.sent if m["to"] == "905350000002"]) == 2


async def test_whatsapp_webhook_signature_and_handshake(tenant, wa_line):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    client = tenant.client
    payload = text_message_body("+905350000003", "DUR", message_id="wamid.X")
    r = await _post_wa(client, wa_line["id"], payload, secret="wrong")
    assert r.status == 401 and (await r.json())["error"]["code"] == "bad_signature"
    assert await _gate(tenant, "+905350000003", "whatsapp") == "no_consent"
    r = await client.post(f"/webhooks/whatsapp/{wa_line['id']}", data=json.dumps(payload))
    assert r.status == 401
    r = await client.get(f"/webhooks/whatsapp/{wa_line['id']}", params={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"})
    assert r.status == 200 and await r.text() == "1158201444"
    r = await client.get(f"/webhooks/whatsapp/{wa_line['id']}", params={
        "hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"})
    assert r.status == 403
    r = await client.get("/webhooks/whatsapp/no-such-line", params={"hub.mode": "subscribe"})
    assert r.status == 404


async def test_whatsapp_user_preferences_stop(tenant, wa_line):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    await tenant.call("POST", "/consents", json={
        "address": "05350000004", "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "web formu"})
    assert await _gate(tenant, "+905350000004", "whatsapp") == "allowed"
    r = await _post_wa(tenant.client, wa_line["id"],
                       user_preferences_body("905350000004", "stop"))
    assert r.status == 200
    assert await _gate(tenant, "+905350000004", "whatsapp") == "opted_out"


async def test_whatsapp_undeliverable_and_provider_opt_out(tenant, graph, wa_line):
    state, _ = graph
    state.fail["905350000005"] = 131026
    state.fail["905350000006"] = 131050
    await tenant.unlock()
    c = await _campaign(tenant, wa_line["id"], ["05350000005,A,evet", "05350000006,B,evet",
                                                "05350000007,C,evet"])
    assert c["counts"]["sent"] == 1 and c["counts"]["failed"] == 1, c
    assert c["skipped_by_reason"] == {"opted_out": 1}
    assert await _gate(tenant, "+905350000006", "whatsapp") == "opted_out"


@pytest.fixture
async def tg_line(tenant):
    r = await tenant.call("POST", "/lines", json={"channel": "telegram", "name": "Mağaza botu",
                                                  "bot_token": TOKEN})
    assert r.status == 201, await r.text()
    line = await r.json()
    assert TOKEN not in json.dumps(line)
    return line


async def _post_tg(tenant: ApiTenant, line: dict, update: dict, secret: str | None = None):
    if secret is None:
        from campaigns.ports import Line
        creds = await tenant.client.app[credentials_key].telegram(
            Line(line["id"], tenant.id, "telegram", "", 30.0, "active"))
        secret = creds.webhook_secret
    return await tenant.client.post(f"/webhooks/telegram/{line['id']}", json=update,
                                    headers={"X-Telegram-Bot-Api-Secret-Token": secret})


async def test_telegram_start_consent_campaign_stop_and_block(tenant, bot_api, tg_line):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    state, _ = bot_api
    await tenant.unlock()
    chat = 700100200
    r = await _post_tg(tenant, tg_line, text_update(chat, "/start", 1))
    assert r.status == 200
    offer = state.sent[-1]
    assert offer.chat_id == chat and "Kabul" in offer.text and offer.reply_markup
    assert await _gate(tenant, str(chat), "telegram") == "no_consent"
    await _post_tg(tenant, tg_line, callback_update(chat, "consent:yes", 2))
    assert await _gate(tenant, str(chat), "telegram") == "allowed"
    # The subscriber joined the bot's list; a campaign to it goes out through the bot.
    from dashboard.keys import db_key
    from store import raw
    async with tenant.client.app[db_key].connect() as conn:
        (list_id,) = (await raw.fetch(conn, "SELECT id FROM contact_lists WHERE "
                                            "subscribers_of = ?", (tg_line["id"],)))[0]
    # Its name is the bot's: "Telegram: <line name>", opened while unlocked.
    lists = (await (await tenant.call("GET", "/lists")).json())["lists"]
    assert {"id": list_id, "name": "Telegram: Mağaza botu", "name_locked": False}.items() <= \
        next(x for x in lists if x["id"] == list_id).items()
    await asyncio.sleep(1.1)  # Telegram: one message a second per chat
    r = await tenant.call("POST", "/campaigns", json={
        "name": "tg", "line_id": tg_line["id"], "list_id": list_id,
        "template": "Hafta sonu indirimi!"})
    assert r.status == 201
    cid = (await r.json())["id"]
    await tenant.call("POST", f"/campaigns/{cid}/start")

    async def done():
        c = await (await tenant.call("GET", f"/campaigns/{cid}")).json()
        return c if c["state"] == "completed" else None
    c = await _until(done)
    assert c["counts"]["sent"] == 1, c
    assert any(m.chat_id == chat and m.text.startswith("Hafta sonu indirimi!")
               for m in state.sent)
    # /verilerim answers what is held; /stop opts out; blocking suppresses.
    await _post_tg(tenant, tg_line, text_update(chat, "/verilerim", 3))

    async def answered():  # Telegram allows one message a second per chat: it may follow
        return [m for m in state.sent if "izin kaydı" in m.text]
    (data,) = await _until(answered, timeout=8)
    assert "var" in data.text
    await _post_tg(tenant, tg_line, text_update(chat, "/stop", 4))
    assert await _gate(tenant, str(chat), "telegram") == "opted_out"
    await _post_tg(tenant, tg_line, text_update(chat, "/sil", 6))

    async def erased():
        return [m for m in state.sent if m.chat_id == chat and "silindi" in m.text]
    await _until(erased, timeout=8)
    r = await tenant.call("GET", "/gate", params={"address": str(chat), "channel": "telegram",
                                                  "purpose": "informational"})
    assert (await r.json())["reason"] in ("opted_out", "suppressed")
    other = 700100201
    await _post_tg(tenant, tg_line, kicked_update(other, 5))
    r = await tenant.call("GET", "/gate", params={"address": str(other), "channel": "telegram",
                                                  "purpose": "informational"})
    assert (await r.json())["reason"] == "blocked"


async def test_telegram_webhook_needs_the_secret(tenant, tg_line):
    r = await _post_tg(tenant, tg_line, text_update(1, "/stop", 1), secret="wrong")
    assert r.status == 401
    r = await tenant.client.post(f"/webhooks/telegram/{tg_line['id']}", json={})
    assert r.status == 401


async def test_telegram_long_polling_without_public_url(tenant, bot_api, tg_line):
    state, _ = bot_api
    state.pending_updates.append(text_update(700100300, "/start", 10))

    async def offered():
        return any(m.chat_id == 700100300 for m in state.sent)
    assert await _until(offered, timeout=15)


async def test_operator_bot_links_steers_and_alerts(tenant, bot_api, tg_line):
    state, _ = bot_api
    await tenant.unlock()
    owner = 900100200
    r = await tenant.call("POST", "/operator-link")
    assert r.status == 201
    code = (await r.json())["code"]
    await _post_tg(tenant, tg_line, text_update(owner, "/campaigns", 20))

    async def said(fragment):
        async def check():
            return [m for m in state.sent if m.chat_id == owner and fragment in m.text]
        return await _until(check, timeout=8)

    await said("işletme kullanıcıları")  # not linked yet
    await _post_tg(tenant, tg_line, text_update(owner, f"/link {code}", 21))
    await said("Bağlandı")
    await _post_tg(tenant, tg_line, text_update(owner, "/link AAAA-BBBB", 22))
    await said("geçersiz")
    # A sandbox campaign finishes: the owner's chat hears about it.
    sandbox = next(line for line in (await (await tenant.call("GET", "/lines")).json())["lines"]
               if line["channel"] == "sandbox")["id"]
    c = await _campaign(tenant, sandbox, ["05360000001,A,evet"])
    await said(f"«{c['name']}» tamamlandı")
    await _post_tg(tenant, tg_line, text_update(owner, "/campaigns", 23))
    await said(c["id"][:8])
    await _post_tg(tenant, tg_line, text_update(owner, "/unlock parolam", 24))
    await said("parola kabul etmez")


async def test_operator_link_needs_a_telegram_line(tenant):
    r = await tenant.call("POST", "/operator-link")
    assert r.status == 400 and (await r.json())["error"]["code"] == "no_telegram_line"


async def test_whatsapp_campaign_with_an_approved_template(tenant, graph, wa_line):
    state, _ = graph
    state.templates = [template("kampanya_duyuru", body="Merhaba {{1}}, Örnek Mağaza {{2}} "
                                "şubesinde indirim!", footer="Mesaj almak istemiyorsanız RET "
                                                             "yazıp yanıtlayın.")]
    r = await tenant.call("POST", f"/lines/{wa_line['id']}/templates/sync")
    assert r.status == 200, await r.text()
    await tenant.unlock()
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "t"})).json())["id"]
    await tenant.call("POST", f"/contacts/import?list_id={list_id}",
                      data="phone,name,sehir,consent\n05370000001,Ayşe,Van,evet\n".encode(),
                      headers={"Content-Type": "text/csv"})
    body = {"name": "şablon", "line_id": wa_line["id"], "list_id": list_id,
            "template": "Merhaba {{name}}", "whatsapp_template": {
                "name": "kampanya_duyuru", "language": "tr",
                "parameters": ["{{name}}", "{{sehir|şehriniz}}"]}}
    r = await tenant.call("POST", "/campaigns", json={
        **body, "whatsapp_template": {"name": "x", "parameters": ["{{ilce}}"]}})
    assert r.status == 400 and "ilce" in (await r.json())["error"]["message"]
    cid = (await (await tenant.call("POST", "/campaigns", json=body)).json())["id"]
    await tenant.call("POST", f"/campaigns/{cid}/start")

    async def sent():
        return [m for m in state.sent if m["type"] == "template"]
    (msg,) = await _until(sent)
    assert msg["template"]["name"] == "kampanya_duyuru"
    params = [p["text"] for p in msg["template"]["components"][0]["parameters"]]
    assert params == ["Ayşe", "Van"] and msg["reference"]


async def test_whatsapp_stop_while_locked_is_confirmed_now_and_applied_at_unlock(
        tenant, graph, wa_line):
    """Issue 17: locked, the number index is the tenant's. The signed webhook's STOP is
    confirmed at once, kept sealed (a retry with the same message id kept once), and applied
    at the unlock."""
    from dashboard.keys import db_key, inbound_key
    from store.tables import inbound_messages, sealed_inbound
    state, _ = graph
    await tenant.unlock()
    await tenant.call("POST", "/consents", json={
        "address": "05350000009", "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "web formu"})
    await tenant.call("POST", "/vault/lock")
    now = int(time.time())
    for delay in (0, 1):  # Meta retries with another envelope, the same message id
        r = await _post_wa(tenant.client, wa_line["id"], text_message_body(
            "+905350000009", "DUR", message_id="wamid.LOCKED1", timestamp=str(now + delay)))
        assert r.status == 200
    await asyncio.sleep(0.2)
    assert len([m for m in state.sent if m["to"] == "905350000009"]) == 1  # the confirmation
    db = tenant.client.app[db_key]
    async with db.connect() as conn:
        kept = (await conn.execute(sealed_inbound.select())).all()
        stored = (await conn.execute(inbound_messages.select())).all()
    assert len(kept) == 1 and stored == []
    await tenant.unlock()
    await tenant.client.app[inbound_key].backlog.apply(tenant.id)  # (or its loop did already)
    assert await _gate(tenant, "+905350000009", "whatsapp") == "opted_out"
    assert len([m for m in state.sent if m["to"] == "905350000009"]) == 1  # not confirmed twice


async def test_whatsapp_message_ids_do_not_reveal_numbers(tenant, graph, wa_line):
    """A WhatsApp message id is base64 that embeds the person's number (the fake's, like
    Meta's): what the service keeps of an outgoing and an incoming id must not let whoever
    reads the database decode the number back."""
    import base64

    import sqlalchemy as sa

    from dashboard.keys import db_key
    from store.tables import metadata
    state, _ = graph
    await tenant.unlock()
    await _campaign(tenant, wa_line["id"], ["05350000021,Ayşe,evet"])
    wamid_in = "wamid." + base64.b64encode(b"\x1c\x18\x0c905350000021\x15\x02\x00\x12"
                                           b"\x18\x14ABCDEF0123456789").decode()
    r = await _post_wa(tenant.client, wa_line["id"], text_message_body(
        "+905350000021", "Teşekkürler", message_id=wamid_in))
    assert r.status == 200
    sent = [m["id"] for m in state.sent if m["to"] == "905350000021"]
    assert sent and all("905350000021" in base64.b64decode(i[6:]).decode() for i in sent)
    found = []
    async with tenant.client.app[db_key].connect() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).all():
                for value in row:
                    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    if "wamid." in text or "905350000021" in text:
                        found.append(f"{table.name}: {text[:40]}")
    assert found == [], found
    stored = await _until(lambda: _inbound_ids(tenant))
    assert stored and all(s.startswith("b2:") for s in stored)


async def _inbound_ids(t: ApiTenant) -> list[str]:
    import sqlalchemy as sa

    from dashboard.keys import db_key
    from store.tables import inbound_messages
    async with t.client.app[db_key].connect() as conn:
        return list((await conn.execute(sa.select(inbound_messages.c.provider_message_id))
                     ).scalars())
