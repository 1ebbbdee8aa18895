"""The İYS push drains the whole queue in one run, in bulk requests İYS accepts, and uploads each
record once: across a vault lock, a lost answer and two processes pushing the same tenant."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from datetime import datetime

import pytest
from conftest import with_providers
from fakes.iys import BRAND_CODE, IYS_CODE, PASSWORD, USERNAME, IysState, create_iys_app

from crypto.service import FieldCrypto
from dashboard.keys import db_key, directory_key, fields_key, iys_sync_key, keyring_key
from optout import ledger
from optout.deadlines import TZ
from optout.iys_sync import IysSync
from optout.ledger import ConsentEvent
from store import raw
from store.engine import open_database
from store.tenants import SqlDataKeyStore

BULK = "/consents/request"


@pytest.fixture
async def iys(aiohttp_server):
    state = IysState(bulk_pending_polls=0)
    server = await aiohttp_server(create_iys_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
def config(config, iys):
    return with_providers(config, iys=iys[1])


@pytest.fixture
async def ready(tenant):
    """The tenant with İYS enabled and its vault unlocked."""
    r = await tenant.call("PATCH", "/settings", json={
        "iys_enabled": True, "iys_code": IYS_CODE, "iys_brand_code": BRAND_CODE,
        "iys_credentials": {"username": USERNAME, "password": PASSWORD}})
    assert r.status == 200, await r.text()
    await tenant.unlock()
    return tenant


def _number(i: int) -> str:
    return f"+90532{i:07d}"


async def _queue(tenant, numbers: list[str], status: str = "granted",
                 at: float | None = None) -> None:
    """Consent events waiting for İYS, as the import and the API leave them (sealed evidence
    with the number, source HS_WEB), written in one go."""
    app = tenant.client.app
    db, directory, fields = app[db_key], app[directory_key], app[fields_key]
    async with db.connect() as conn:
        profile = await directory.profile(conn, tenant.id)
    sealer = await fields.new_sealer(tenant.id, profile.public_key)
    at = time.time() - 600 if at is None else at
    events = [ConsentEvent(
        address_index=directory.index(tenant.id, number), consent_type="MESAJ", status=status,
        source="HS_WEB", recipient_type="individual", occurred_at=at,
        evidence_sealed=sealer.seal_field(json.dumps({
            "statement": "web formu", "address": number, "source": "HS_WEB",
            "at": datetime.fromtimestamp(at, TZ).isoformat()}).encode()))
        for number in numbers]
    async with db.begin() as conn:
        await ledger.record(conn, tenant.id, events, iys_enabled=True)


async def _states(tenant) -> dict[str, int]:
    async with tenant.client.app[db_key].connect() as conn:
        rows = await raw.fetch(conn, "SELECT iys_sync_state, count(*) FROM consent_events "
                                     "WHERE tenant_id = ? GROUP BY iys_sync_state", (tenant.id,))
    return dict(rows)


def _bulk_posts(state: IysState) -> list:
    return [r for r in state.requests if r.method == "POST" and r.path.endswith(BULK)]


def _uploaded_once(state: IysState) -> bool:
    return bool(state.received) and set(state.received.values()) == {1}


def _sync(tenant, **settings) -> IysSync:
    sync = tenant.client.app[iys_sync_key]
    sync.push_settings = dataclasses.replace(sync.push_settings, **settings)
    return sync


async def test_iys_push_drains_the_queue(ready, iys):
    state, _ = iys
    state.rate_limit, state.bulk_delay = 20, 0.05  # İYS answers the excess with 429
    numbers = [_number(i) for i in range(10_000)]
    await _queue(ready, numbers)
    # Twenty people also replied RET within the same second: their RET must follow the ONAY.
    await _queue(ready, numbers[:20], status="revoked")
    counts = await _sync(ready).push(ready.id)
    assert counts == {"sent": 10_020, "failed": 0}
    assert await _states(ready) == {"sent": 10_020}
    assert _uploaded_once(state) and len(state.entries) == 10_020
    posts = _bulk_posts(state)
    assert all(p.status == 200 for p in posts if p.status != 429)
    assert len([p for p in posts if p.status == 200]) == 11  # 10 full requests, then the RETs
    assert all(len(b["records"]) <= 1000 for b in state.bulks.values())
    for number in numbers[:20]:
        history = state.history(number, "MESAJ")
        assert [e.status for e in history] == ["ONAY", "RET"]
        assert history[1].consent_date > history[0].consent_date
    # What İYS now holds is what the gate checks.
    r = await ready.call("GET", "/gate", params={"address": numbers[20], "channel": "whatsapp"})
    assert (await r.json())["reason"] == "allowed"
    assert await ready.client.app[iys_sync_key].push(ready.id) == {}  # nothing left


async def test_iys_push_stops_cleanly_when_the_vault_locks(ready, iys):
    state, _ = iys
    await _queue(ready, [_number(i) for i in range(300)])
    sync = _sync(ready, bulk_limit=100)
    keyring = ready.client.app[keyring_key]
    state.on_bulk = lambda _request: keyring.lock(ready.id)  # locked during the first request
    counts = await sync.push(ready.id)
    # The request already made is seen through; nothing more is taken from the queue.
    assert counts == {"sent": 100, "failed": 0}
    assert await _states(ready) == {"sent": 100, "pending": 200}
    assert len(_bulk_posts(state)) == 1
    state.on_bulk = None
    assert await sync.push(ready.id) == {}  # still locked: nothing is read or sent
    await ready.unlock()
    assert await sync.push(ready.id) == {"sent": 200, "failed": 0}
    assert _uploaded_once(state) and len(state.entries) == 300


async def test_iys_push_lost_answer_is_settled_without_a_second_upload(ready, iys):
    state, _ = iys
    await _queue(ready, [_number(i) for i in range(250)])
    sync = _sync(ready, bulk_limit=100)
    state.lose_bulk_answers = 1  # İYS takes the first request; its answer never arrives
    assert await sync.push(ready.id) == {"sent": 0, "failed": 0, "unconfirmed": 100}
    # Nothing is marked sent that İYS did not confirm, and nothing is sent again blindly.
    assert await _states(ready) == {"pending": 250}
    assert await sync.push(ready.id) == {"unconfirmed": 100, "sent": 150, "failed": 0}
    assert await _states(ready) == {"pending": 100, "sent": 150}
    # After a while (İYS works through bulk requests later) each record is looked up in İYS.
    sync.push_settings = dataclasses.replace(sync.push_settings, reconcile_after=0)
    assert await sync.push(ready.id) == {"sent": 100, "failed": 0}
    assert await _states(ready) == {"sent": 250}
    assert _uploaded_once(state) and len(_bulk_posts(state)) == 3


async def test_iys_push_lost_request_is_uploaded_again(ready, iys):
    state, _ = iys
    await _queue(ready, [_number(i) for i in range(40)])
    sync = _sync(ready, bulk_limit=100, reconcile_after=0)
    state.lose_bulk_answers, state.bulk_delay = 1, 60
    assert (await sync.push(ready.id))["unconfirmed"] == 40
    state.bulks.clear()  # İYS never processed it: the records are not there
    state.bulk_delay = 0
    assert await sync.push(ready.id) == {"sent": 40, "failed": 0}
    assert _uploaded_once(state) and len(state.entries) == 40


async def test_iys_push_turned_away_is_sent_again_after_retry_after(ready, iys):
    state, _ = iys
    await _queue(ready, [_number(i) for i in range(30)])
    state.outage = True  # 503 before anything is processed
    counts = await _sync(ready, post_attempts=1).push(ready.id)
    assert counts == {} and await _states(ready) == {"pending": 30}
    state.outage = False
    assert await ready.client.app[iys_sync_key].push(ready.id) == {"sent": 30, "failed": 0}
    assert _uploaded_once(state)


def _second_process(tenant, config) -> IysSync:
    """Another process's IysSync: its own engine on the same database, its own lease holder
    (it shares this process's unlocked keys, as the sealed fan-out gives every process)."""
    app = tenant.client.app
    db = open_database(config.database_url)
    fields = FieldCrypto(app[keyring_key], SqlDataKeyStore(db))
    mine = app[iys_sync_key]
    return IysSync(db, mine.master, app[directory_key], fields, mine.watch,
                   iys_url=mine.iys_url, push_settings=mine.push_settings)


async def test_two_processes_pushing_at_once_upload_each_record_once(ready, iys, config):
    state, _ = iys
    state.bulk_delay = 0.05
    await _queue(ready, [_number(i) for i in range(1500)])
    first, second = _sync(ready, bulk_limit=200), _second_process(ready, config)
    try:
        counts = await asyncio.gather(first.push(ready.id), second.push(ready.id))
        assert sorted(c.get("sent", 0) for c in counts) == [0, 1500]
        # The lease passes on when a push ends: the other process finds nothing left.
        assert await second.push(ready.id) == {}
    finally:
        await second.db.close()
    assert _uploaded_once(state) and len(state.entries) == 1500
    assert await _states(ready) == {"sent": 1500}


async def test_a_push_that_lost_its_lease_claims_nothing_more(ready, iys, config):
    state, _ = iys
    state.bulk_delay = 0.2
    await _queue(ready, [_number(i) for i in range(1000)])
    first, second = _sync(ready, bulk_limit=100), _second_process(ready, config)
    posted = asyncio.Event()
    state.on_bulk = lambda _request: posted.set()
    try:
        pushing = asyncio.create_task(first.push(ready.id))
        await posted.wait()
        state.on_bulk = None
        # The first process stalls past its lease (as in a long pause): another takes over.
        async with ready.client.app[db_key].begin() as conn:
            await raw.execute(conn, "UPDATE line_leases SET holder = 'stalled', expires_at = 0 "
                                    "WHERE line_id = ?", (f"iys:{ready.id}",))
        taken_over = await second.push(ready.id)
        stalled = await pushing
    finally:
        await second.db.close()
    assert taken_over["sent"] > 0 and stalled["sent"] > 0
    assert _uploaded_once(state) and len(state.entries) == 1000
    assert len(_bulk_posts(state)) == 10  # no request was made twice
    assert await _states(ready) == {"sent": 1000}
