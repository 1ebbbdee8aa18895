"""KVKK deadlines (issue 14, item 7): a data-subject request is answered within 30 days; the
owners hear about an open one 5 days before its deadline — once, through the operator bot —
and the overview shows it until it is done."""
from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from conftest import ApiTenant, make_web_user, with_providers
from fakes.telegram import TOKEN, BotApiState, create_bot_api_app, text_update

from campaigns.ports import Line
from dashboard.keys import (
    credentials_key,
    db_key,
    erasures_key,
    inbound_key,
    operator_desk_key,
)
from optout import subject_deadlines
from optout.subject_deadlines import ALERT_DAYS_BEFORE, due_soon, warn_deadlines
from optout.subjects import ErasureFinisher
from store.tables import subject_requests

DAY = 86400
OWNER_CHAT = 900100300


@pytest.fixture
async def bot_api(aiohttp_server):
    state = BotApiState()
    server = await aiohttp_server(create_bot_api_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
def config(config, bot_api, monkeypatch):
    # The service's own timers stay out of what these tests look at: the erasures timer (every
    # minute) would finish an erasure during the moment `_open_erasure` holds the vault open,
    # and the hourly KVKK timer would claim the alert the test expects to make. Both are
    # replaced before the app starts (the timers take them at start).
    async def nothing(*args, **kwargs):
        return 0
    monkeypatch.setattr(ErasureFinisher, "finish_unlocked", nothing)
    monkeypatch.setattr(subject_deadlines, "warn_deadlines", nothing)
    return with_providers(config, telegram=bot_api[1])


async def _linked_operator(t: ApiTenant, state: BotApiState) -> None:
    r = await t.call("POST", "/lines", json={"channel": "telegram", "name": "Mağaza botu",
                                             "bot_token": TOKEN})
    assert r.status == 201, await r.text()
    line = await r.json()
    code = (await (await t.call("POST", "/operator-link")).json())["code"]
    creds = await t.client.app[credentials_key].telegram(
        Line(line["id"], t.id, "telegram", "", 30.0, "active"))
    r = await t.client.post(f"/webhooks/telegram/{line['id']}",
                            json=text_update(OWNER_CHAT, f"/link {code}", 1),
                            headers={"X-Telegram-Bot-Api-Secret-Token": creds.webhook_secret})
    assert r.status == 200
    await _said(state, "Bağlandı")


async def _said(state: BotApiState, fragment: str, timeout: float = 8.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in state.sent if m.chat_id == OWNER_CHAT and fragment in m.text]
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"the operator chat never got {fragment!r}")


async def _open_erasure(t: ApiTenant, phone: str) -> str:
    """An erasure made while the vault is locked: kept sealed (the number index is the
    tenant's, issue 17), it becomes an open request at the next unlock, which stays open
    until the erasures are finished (the erasures timer, or `finish`). Left locked."""
    await t.unlock()
    list_id = (await (await t.call("POST", "/lists", json={"name": phone})).json())["id"]
    r = await t.call("POST", f"/contacts/import?list_id={list_id}",
                     data=f"phone,name,consent\n{phone},Ali,evet\n".encode(),
                     headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    await t.call("POST", "/vault/lock")
    body = await (await t.call("POST", "/subjects/erase", json={"address": phone})).json()
    assert body["completed"] is False, body
    await t.unlock()
    await t.client.app[inbound_key].backlog.apply(t.id)  # (or its loop did already)
    await t.call("POST", "/vault/lock")
    async with t.client.app[db_key].connect() as conn:
        return (await conn.execute(sa.select(subject_requests.c.id).order_by(
            subject_requests.c.received_at.desc()).limit(1))).scalar_one()


def test_due_soon_is_five_days_before_the_thirty_day_deadline():
    now = 1_700_000_000.0
    assert ALERT_DAYS_BEFORE == 5
    assert due_soon(now + 5 * DAY, None, now) and due_soon(now - DAY, None, now)
    assert not due_soon(now + 5 * DAY + 1, None, now)
    assert not due_soon(now + DAY, now - 10, now)  # answered


async def test_kvkk_deadline_alerts_reach_the_operator_bot_and_the_overview(
        client, tenant, bot_api):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    state, _ = bot_api
    await _linked_operator(tenant, state)
    near = await _open_erasure(tenant, "05321112233")
    await _open_erasure(tenant, "05321112244")  # fresh: 30 days to go
    db = client.app[db_key]
    async with db.begin() as conn:  # the first one arrived 26 days ago: 4 days left
        await conn.execute(subject_requests.update().where(subject_requests.c.id == near)
                           .values(received_at=time.time() - 26 * DAY,
                                   due_at=time.time() + 4 * DAY))

    # The timer's job (izinli.scheduler "kvkk-deadlines"): the owner's chat hears it once.
    assert await warn_deadlines(db, client.app[operator_desk_key]) == {tenant.id: 1}
    (alert,) = await _said(state, "KVKK")
    assert alert.text.startswith("⏰ 1 KVKK başvurusunun") and "5 günden az" in alert.text
    assert await warn_deadlines(db, client.app[operator_desk_key]) == {}
    await asyncio.sleep(0.3)
    assert len([m for m in state.sent if "KVKK" in m.text]) == 1
    log = (await (await tenant.call("GET", "/subjects/requests")).json())["requests"]
    assert [r["id"] for r in log if r["due_soon"]] == [near]

    # The overview shows it to those who can act on it. (One cookie jar: the owner signs in
    # last, so the pages below are the owner's.)
    viewer = await make_web_user(client, tenant, "viewer")
    assert 'data-testid="kvkk-due"' not in await (await viewer.get("/")).text()
    owner = await make_web_user(client, tenant, "owner")
    page = await (await owner.get("/")).text()
    assert 'data-testid="kvkk-due"' in page and "<strong>1</strong>" in page

    # Answered (the unlock lets the erasures complete): nothing left to warn about.
    await tenant.unlock()
    await client.app[erasures_key].finish(tenant.id)  # the erasures timer's work
    log = (await (await tenant.call("GET", "/subjects/requests")).json())["requests"]
    assert [(r["completed_at"] is not None, r["due_soon"]) for r in log] == [(True, False)] * 2
    page = await (await owner.get("/")).text()
    assert 'data-testid="kvkk-due"' not in page
    async with db.connect() as conn:
        alerted = (await conn.execute(sa.select(subject_requests.c.id).where(
            subject_requests.c.alerted_at.is_not(None)))).scalars().all()
    assert alerted == [near]


async def test_an_alert_that_could_not_go_out_is_tried_again(client, tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    await _open_erasure(tenant, "05321112255")
    db = client.app[db_key]
    async with db.begin() as conn:
        await conn.execute(subject_requests.update().values(due_at=time.time() + DAY))

    class Unreachable:  # stands for the operator channel being down (an external provider)
        async def campaign_event(self, *args):
            raise ConnectionError("unreachable")
    assert await warn_deadlines(db, Unreachable()) == {}
    assert await warn_deadlines(db, client.app[operator_desk_key]) == {tenant.id: 1}
