"""Telegram invitations (issue 15 item 5): a list's t.me deep link and QR code, the /start
<token> consent offer, the tap that joins the list with the invite as evidence, revoking, and
the dashboard page — against the fake Bot API, through the webhook as Telegram delivers."""
from __future__ import annotations

import asyncio
import re
import time

import pytest
from conftest import ApiTenant, make_web_user, with_providers
from fakes.telegram import (
    BOT_USERNAME,
    TOKEN,
    BotApiState,
    callback_update,
    create_bot_api_app,
    text_update,
)

from bot.telegram_updates import ConsentTap, parse_update
from campaigns.ports import Line
from dashboard.keys import credentials_key

CHAT = 700_300_400


@pytest.fixture
async def bot_api(aiohttp_server):
    # No per-chat spacing: the offer, the confirmation and a campaign follow each other at
    # once here (the 1/s per chat limit has tests of its own in test_telegram.py).
    state = BotApiState(chat_interval=0.0)
    server = await aiohttp_server(create_bot_api_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
def config(config, bot_api):
    return with_providers(config, telegram=bot_api[1])


@pytest.fixture
async def tg_line(tenant):
    r = await tenant.call("POST", "/lines", json={"channel": "telegram", "name": "Mağaza botu",
                                                  "bot_token": TOKEN, "rate_per_second": 30})
    assert r.status == 201, await r.text()
    return await r.json()


@pytest.fixture
async def shop_list(tenant) -> str:
    r = await tenant.call("POST", "/lists", json={"name": "Mağaza müşterileri"})
    return (await r.json())["id"]


async def _post_tg(tenant: ApiTenant, line: dict, update: dict):
    creds = await tenant.client.app[credentials_key].telegram(
        Line(line["id"], tenant.id, "telegram", "", 30.0, "active"))
    r = await tenant.client.post(f"/webhooks/telegram/{line['id']}", json=update,
                                 headers={"X-Telegram-Bot-Api-Secret-Token":
                                          creds.webhook_secret})
    assert r.status == 200, await r.text()


async def _invite(tenant: ApiTenant, list_id: str, line: dict) -> dict:
    r = await tenant.call("POST", f"/lists/{list_id}/telegram-invite",
                          json={"line_id": line["id"]})
    assert r.status == 201, await r.text()
    return await r.json()


async def _members(tenant: ApiTenant, list_id: str) -> int:
    lists = (await (await tenant.call("GET", "/lists")).json())["lists"]
    return next(item["members"] for item in lists if item["id"] == list_id)


async def _history(tenant: ApiTenant, chat: int) -> list[dict]:
    r = await tenant.call("GET", "/consents", params={"address": str(chat),
                                                      "channel": "telegram"})
    return (await r.json())["history"]


async def _gate(tenant: ApiTenant, chat: int) -> str:
    r = await tenant.call("GET", "/gate", params={"address": str(chat), "channel": "telegram"})
    return (await r.json())["reason"]


def _buttons(message) -> list[str]:
    return [b["callback_data"] for row in message.reply_markup["inline_keyboard"] for b in row]


async def _until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_telegram_invite_link_joins_list_with_evidence(tenant, bot_api, tg_line,
                                                             shop_list):
    state, _ = bot_api
    await tenant.unlock()
    invite = await _invite(tenant, shop_list, tg_line)
    token = invite["token"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token)
    assert shop_list not in token and tg_line["id"] not in token
    assert invite["link"] == f"https://t.me/{BOT_USERNAME}?start={token}"
    # Asking again gives the same link: a printed one keeps working.
    again = await tenant.call("POST", f"/lists/{shop_list}/telegram-invite",
                              json={"line_id": tg_line["id"]})
    assert again.status == 200 and (await again.json())["token"] == token
    svg = await tenant.client.get(invite["qr_svg_url"], headers=tenant.auth)
    assert svg.status == 200 and svg.content_type == "image/svg+xml"
    assert (await svg.text()).startswith("<svg")

    # Pressing the link: Telegram sends "/start <token>" to the bot.
    await _post_tg(tenant, tg_line, text_update(CHAT, f"/start {token}", 1))
    offer = state.sent[-1]
    assert offer.chat_id == CHAT and "Örnek Mağaza" in offer.text and "davet" in offer.text
    assert _buttons(offer) == [f"consent:yes:{token}", f"consent:no:{token}"]
    assert await _gate(tenant, CHAT) == "no_consent"
    assert await _members(tenant, shop_list) == 0

    await _post_tg(tenant, tg_line, callback_update(
        CHAT, f"consent:yes:{token}", 2, query_id="4382bfdwdsb323b2d9",
        message_id=offer.message_id, message_text=offer.text))
    assert await _gate(tenant, CHAT) == "allowed"
    assert await _members(tenant, shop_list) == 1
    (granted,) = await _history(tenant, CHAT)
    assert granted["status"] == "granted" and granted["source"] == "telegram:invite_button"
    evidence = granted["evidence"]
    assert evidence["invite"] == {"id": invite["id"], "token": token, "list_id": shop_list,
                                  "line_id": tg_line["id"], "link": invite["link"]}
    assert evidence["tap"]["callback_query_id"] == "4382bfdwdsb323b2d9"
    assert evidence["tap"]["message_id"] == offer.message_id
    assert evidence["tap"]["received_at"].endswith("+03:00")
    assert offer.text in evidence["statement"] and evidence["address"] == str(CHAT)

    # A campaign on the list reaches the chat through the bot.
    r = await tenant.call("POST", "/campaigns", json={
        "name": "davet", "line_id": tg_line["id"], "list_id": shop_list,
        "template": "Hafta sonu indirimi!"})
    assert r.status == 201, await r.text()
    cid = (await r.json())["id"]
    await tenant.call("POST", f"/campaigns/{cid}/start")

    async def done():
        c = await (await tenant.call("GET", f"/campaigns/{cid}")).json()
        return c if c["state"] == "completed" else None
    campaign = await _until(done)
    assert campaign["counts"]["sent"] == 1, campaign
    assert any(m.chat_id == CHAT and m.text.startswith("Hafta sonu indirimi!")
               for m in state.sent)


async def test_revoked_or_unknown_token_gets_the_plain_offer_and_joins_no_list(
        tenant, bot_api, tg_line, shop_list):
    state, _ = bot_api
    await tenant.unlock()
    invite = await _invite(tenant, shop_list, tg_line)
    r = await tenant.call("POST", f"/lists/{shop_list}/telegram-invite/revoke",
                          json={"line_id": tg_line["id"]})
    assert r.status == 200 and (await r.json())["revoked"] == [invite["id"]]
    r = await tenant.call("GET", f"/lists/{shop_list}/telegram-invite")
    assert r.status == 404
    assert (await tenant.client.get(invite["qr_svg_url"], headers=tenant.auth)).status == 404

    for update_id, payload in ((1, invite["token"]), (2, "bilinmeyen-davet")):
        await _post_tg(tenant, tg_line, text_update(CHAT, f"/start {payload}", update_id))
        offer = state.sent[-1]
        assert "göndermek istiyor" in offer.text and "davet" not in offer.text
        assert _buttons(offer) == ["consent:yes", "consent:no"]
    # A tap that still carries the revoked token (an offer sent before the revocation) is
    # the person's consent, but joins no list through the invite.
    await _post_tg(tenant, tg_line, callback_update(CHAT, f"consent:yes:{invite['token']}", 3))
    assert await _gate(tenant, CHAT) == "allowed"
    assert await _members(tenant, shop_list) == 0
    (granted,) = await _history(tenant, CHAT)
    assert granted["source"] == "telegram:consent_button" and "invite" not in granted["evidence"]
    # A new invite has a new token.
    assert (await _invite(tenant, shop_list, tg_line))["token"] != invite["token"]


async def test_invite_tap_reconsents_after_a_stop_and_after_an_erasure(tenant, bot_api,
                                                                       tg_line, shop_list):
    await tenant.unlock()
    token = (await _invite(tenant, shop_list, tg_line))["token"]
    # The person refused earlier: their own tap on the invite's offer consents again.
    await _post_tg(tenant, tg_line, text_update(CHAT, "/stop", 1, date=int(time.time()) - 5))
    assert await _gate(tenant, CHAT) == "opted_out"
    await _post_tg(tenant, tg_line, text_update(CHAT, f"/start {token}", 2))
    await _post_tg(tenant, tg_line, callback_update(CHAT, f"consent:yes:{token}", 3))
    assert await _gate(tenant, CHAT) == "allowed"
    assert await _members(tenant, shop_list) == 1
    # Erased (/sil): gone from the list; a later tap starts a new relationship.
    await _post_tg(tenant, tg_line, text_update(CHAT, "/sil", 4))
    assert await _gate(tenant, CHAT) != "allowed"
    await asyncio.sleep(1.05 - time.time() % 1)  # the tap's second is after the erasure's
    await _post_tg(tenant, tg_line, callback_update(CHAT, f"consent:yes:{token}", 5,
                                                    query_id="second-tap"))
    assert await _gate(tenant, CHAT) == "allowed"
    assert await _members(tenant, shop_list) == 1
    history = await _history(tenant, CHAT)
    assert history[-1]["evidence"]["tap"]["callback_query_id"] == "second-tap"


async def test_invite_api_refuses_what_it_cannot_make(tenant, bot_api, tg_line, shop_list):
    lines = (await (await tenant.call("GET", "/lines")).json())["lines"]
    sandbox = next(line for line in lines if line["channel"] == "sandbox")
    cases = [
        (f"/lists/{shop_list}/telegram-invite", {"line_id": sandbox["id"]}, 400, "not_telegram"),
        (f"/lists/{shop_list}/telegram-invite", {}, 400, "missing_field"),
        (f"/lists/{shop_list}/telegram-invite", {"line_id": "nope"}, 404, "not_found"),
        ("/lists/nope/telegram-invite", {"line_id": tg_line["id"]}, 404, "not_found"),
        ("/lists/nope/telegram-invite/revoke", {}, 404, "not_found"),
    ]
    for path, body, status, code in cases:
        r = await tenant.call("POST", path, json=body)
        assert r.status == status, (path, body, await r.text())
        assert (await r.json())["error"]["code"] == code
    state, _ = bot_api
    state.tokens.clear()  # the bot's token was revoked in BotFather
    r = await tenant.call("POST", f"/lists/{shop_list}/telegram-invite",
                          json={"line_id": tg_line["id"]})
    assert r.status == 502 and (await r.json())["error"]["code"] == "telegram_unavailable"


async def test_telegram_invite_page_creates_shows_and_revokes(client, tenant, bot_api, tg_line,
                                                              shop_list):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    owner = await make_web_user(client, tenant, "owner")
    contacts = await (await owner.get("/contacts")).text()
    assert f"/contacts/lists/{shop_list}/telegram" in contacts
    page = await (await owner.get(f"/contacts/lists/{shop_list}/telegram")).text()
    assert "Telegram davet bağlantısı" in page and "telefon numarasına" in page
    assert 'data-testid="create-invite"' in page and "Mağaza botu" in page
    r = await owner.post(f"/contacts/lists/{shop_list}/telegram",
                         {"line_id": tg_line["id"]}, allow_redirects=False)
    assert r.status == 303
    page = await (await owner.get(f"/contacts/lists/{shop_list}/telegram")).text()
    (link,) = re.findall(r'value="(https://t\.me/[^"]+)"', page)
    assert link.startswith(f"https://t.me/{BOT_USERNAME}?start=")
    (img,) = re.findall(r'<img src="([^"]+)"', page)
    svg = await owner.get(img.replace("&amp;", "&"))
    assert svg.status == 200 and svg.content_type == "image/svg+xml"
    r = await owner.post(f"/contacts/lists/{shop_list}/telegram/revoke",
                         {"line_id": tg_line["id"]}, allow_redirects=False)
    assert r.status == 303
    page = await (await owner.get(f"/contacts/lists/{shop_list}/telegram")).text()
    assert link not in page and 'data-testid="create-invite"' in page
    assert (await owner.get(img.replace("&amp;", "&"))).status == 404
    # A viewer (signed in last: the test client holds one session) sees the link but cannot
    # make or revoke one.
    await owner.post(f"/contacts/lists/{shop_list}/telegram", {"line_id": tg_line["id"]})
    viewer = await make_web_user(client, tenant, "viewer")
    seen = await (await viewer.get(f"/contacts/lists/{shop_list}/telegram")).text()
    assert "https://t.me/" in seen and 'data-testid="revoke-invite"' not in seen
    assert 'data-testid="create-invite"' not in seen
    r = await viewer.post(f"/contacts/lists/{shop_list}/telegram/revoke",
                          {"line_id": tg_line["id"]})
    assert r.status == 403


def test_consent_tap_carries_the_invite_token_from_its_callback_data():
    (tap,) = parse_update(callback_update(CHAT, "consent:yes:AbC_-123", 9, message_id=44))
    assert isinstance(tap, ConsentTap) and tap.accepted
    assert (tap.invite_token, tap.message_id) == ("AbC_-123", 44)
    (plain,) = parse_update(callback_update(CHAT, "consent:no", 10))
    assert (plain.accepted, plain.invite_token) == (False, None)
    for data in ("consent:yes:", "consent:yes:a b", "consent:maybe:abc", "consent:yes:" + "a" * 60):
        assert parse_update(callback_update(CHAT, data, 11)) == []
