"""Issue 17 item 1: under `passphrase` custody the number-lookup (blind index) key is the
tenant's. The operator, with every row of the database and the master key, cannot find a
number; what arrives while the vault is locked is kept sealed and applied at the next unlock,
before any campaign sends."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from conftest import PASSPHRASE, ApiTenant, with_providers
from fakes.iys import BRAND_CODE, IYS_CODE, PASSWORD, USERNAME, IysState, create_iys_app

import accounts
from campaigns.lines import line_by_id
from crypto.blind import blind_index
from crypto.errors import CorruptDataError, VaultLockedError
from crypto.service import FieldCrypto
from crypto.vault import Keyring
from dashboard.keys import (
    db_key,
    directory_key,
    inbound_key,
    iys_sync_key,
    keyring_key,
    master_key,
)
from optout.backlog import InboundBacklog
from optout.watch import RevocationWatch
from store.engine import open_database
from store.tables import (
    consent_events,
    inbound_messages,
    metadata,
    sandbox_messages,
    sealed_inbound,
    suppressions,
    tenants,
)
from store.tenants import SqlDataKeyStore

NUMBERS = ["+905321110001", "+905321110002", "+905321110003"]
MASTER_CONTEXTS = ("izinli cluster process v1", "izinli audit checkpoint signing key v1",
                   "izinli user e-mail index", "izinli lookup key", "lookup")


@pytest.fixture
async def iys(aiohttp_server):
    state = IysState()
    server = await aiohttp_server(create_iys_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
def config(config, iys):
    return with_providers(config, iys=iys[1])


async def _sandbox_line(t: ApiTenant) -> str:
    return (await (await t.call("GET", "/lines")).json())["lines"][0]["id"]


async def _import(t: ApiTenant, rows: list[str]) -> str:
    r = await t.call("POST", "/lists", json={"name": "liste"})
    list_id = (await r.json())["id"]
    r = await t.call("POST", f"/contacts/import?list_id={list_id}",
                     data=("\n".join(["phone,name,consent", *rows]) + "\n").encode(),
                     headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    return list_id


async def _campaign(t: ApiTenant, line: str, list_id: str) -> str:
    r = await t.call("POST", "/campaigns", json={"name": "kampanya", "line_id": line,
                                                 "list_id": list_id, "template": "Merhaba",
                                                 "purpose": "commercial"})
    assert r.status == 201, await r.text()
    return (await r.json())["id"]


async def _until(t: ApiTenant, cid: str, states=("completed",), timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = await (await t.call("GET", f"/campaigns/{cid}")).json()
        if c["state"] in states:
            return c
        await asyncio.sleep(0.1)
    raise AssertionError(f"campaign did not reach {states}: {c}")


async def _stop(t: ApiTenant, line: str, number: str, text: str = "DUR") -> dict:
    r = await t.call("POST", "/sandbox/inbound", json={"line_id": line, "from": number,
                                                       "text": text})
    assert r.status == 200, await r.text()
    return await r.json()


async def _rows(db) -> dict[str, list]:
    """Every row of every table, as the operator's database dump has them."""
    found = {}
    async with db.connect() as conn:
        for table in metadata.sorted_tables:
            found[table.name] = [tuple(r) for r in await conn.execute(sa.select(table))]
    return found


async def _count(db, table, *where) -> int:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(table).where(
            *where))).scalar_one()


async def test_operator_with_db_and_master_key_cannot_find_numbers(tenant):
    app, db = tenant.client.app, tenant.client.app[db_key]
    master = app[master_key]
    await tenant.unlock()
    line = await _sandbox_line(tenant)
    list_id = await _import(tenant, [f"{n},Ayşe,evet" for n in NUMBERS])
    await _stop(tenant, line, NUMBERS[0])  # a STOP while unlocked: inbound, suppression
    cid = await _campaign(tenant, line, list_id)
    assert (await tenant.call("POST", f"/campaigns/{cid}/start")).status == 200
    assert (await _until(tenant, cid))["counts"]["sent"] == 2  # sandbox_messages.to_index
    real_key = app[keyring_key].get(tenant.id).lookup_key(
        (await accounts.tenant_row(db, tenant.id)).sealed_lookup_key)
    assert (await tenant.call("POST", "/vault/lock")).status == 204
    await _stop(tenant, line, NUMBERS[1])  # and one while locked: sealed_inbound

    rows = await _rows(db)
    values = [v for table in rows.values() for row in table for v in row]
    blobs = [bytes(v) for v in values if isinstance(v, bytes | bytearray | memoryview)]
    texts = [v for v in values if isinstance(v, str)]
    # Every key the master key opens or derives, and the master key itself.
    candidates = [master._key, *(master.derive(c) for c in MASTER_CONTEXTS)]
    for blob in blobs:
        with contextlib.suppress(CorruptDataError):
            candidates.append(master.unwrap(blob))
    assert (await accounts.tenant_row(db, tenant.id)).wrapped_lookup_key is None
    stored = set(blobs)
    for key in candidates:
        if 16 <= len(key) <= 64:
            assert not [n for n in NUMBERS if blind_index(key, n) in stored]
    for number in NUMBERS:
        forms = {number, number[1:], number[3:], "0" + number[3:]}
        assert not [f for f in forms for b in blobs if f.encode() in b]
        assert not [f for f in forms for s in texts if f in s]
    # The same search with the tenant's own key finds them: the test would see a leak.
    assert all(blind_index(real_key, n) in stored for n in NUMBERS)


async def test_stop_while_locked_applies_before_any_send(tenant):
    db = tenant.client.app[db_key]
    await tenant.unlock()
    line = await _sandbox_line(tenant)
    list_id = await _import(tenant, [f"{n},Ayşe,evet" for n in NUMBERS])
    cid = await _campaign(tenant, line, list_id)
    assert (await tenant.call("POST", "/vault/lock")).status == 204
    assert (await tenant.call("POST", f"/campaigns/{cid}/start")).status == 200
    assert (await _until(tenant, cid, states=("waiting_unlock",)))["counts"]["pending"] == 3

    outcome = await _stop(tenant, line, NUMBERS[0])
    assert outcome == {"intent": "stop", "duplicate": False, "replied": True}
    # Confirmed at once, nothing readable kept: no index of the number, only sealed bytes.
    async with db.connect() as conn:
        sent = list(await conn.execute(sa.select(sandbox_messages.c.to_index)))
        kept = [bytes(r.sealed) for r in await conn.execute(sa.select(sealed_inbound))]
    assert [r.to_index for r in sent] == [None]
    assert len(kept) == 1 and not any(NUMBERS[0][3:].encode() in k for k in kept)
    assert await _count(db, inbound_messages) == 0
    assert await _count(db, suppressions) == 0
    await asyncio.sleep(0.5)  # the dispatcher ticks meanwhile: the campaign keeps waiting
    assert (await _until(tenant, cid, states=("waiting_unlock",)))["counts"]["sent"] == 0

    await tenant.unlock()
    c = await _until(tenant, cid)
    assert c["counts"]["sent"] == 2 and c["skipped_by_reason"] == {"opted_out": 1}, c
    assert await _count(db, sealed_inbound) == 0
    r = await tenant.call("GET", "/sandbox/messages", params={"to": NUMBERS[0]})
    texts = [m["text"] for m in (await r.json())["messages"]]
    assert len(texts) == 1 and "Merhaba" not in texts[0]  # only the confirmation


async def test_duplicate_inbound_while_locked_is_applied_once(tenant):
    app, db = tenant.client.app, tenant.client.app[db_key]
    await tenant.unlock()
    line_id = await _sandbox_line(tenant)
    await tenant.call("POST", "/vault/lock")
    async with db.connect() as conn:
        line = await line_by_id(conn, line_id)
    router = app[inbound_key]
    first = await router.receive(line, NUMBERS[2], "DUR", provider_message_id="wamid.A1")
    again = await router.receive(line, NUMBERS[2], "DUR", provider_message_id="wamid.A1")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert first.reply and again.reply is None  # one confirmation
    assert await _count(db, sealed_inbound) == 1
    await tenant.unlock()
    await router.backlog.apply(tenant.id)  # (or the backlog's own loop did already)
    assert await _count(db, sealed_inbound) == 0
    assert await _count(db, inbound_messages) == 1
    assert await _count(db, consent_events, consent_events.c.status == "revoked") == 1
    # Delivered once more after the unlock: recognised by its provider id.
    later = await router.receive(line, NUMBERS[2], "DUR", provider_message_id="wamid.A1")
    assert later.duplicate and await _count(db, inbound_messages) == 1


async def test_iys_refusal_pulled_while_locked_applies_at_unlock(tenant, iys):
    state, _ = iys
    db = tenant.client.app[db_key]
    await tenant.unlock()
    r = await tenant.call("POST", "/consents", json={
        "address": NUMBERS[0], "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "web formu"})
    assert r.status in (200, 201), await r.text()
    r = await tenant.call("PATCH", "/settings", json={
        "iys_enabled": True, "iys_code": IYS_CODE, "iys_brand_code": BRAND_CODE,
        "iys_credentials": {"username": USERNAME, "password": PASSWORD}})
    assert r.status == 200, await r.text()
    await tenant.call("POST", "/vault/lock")
    state.citizen_refuse(NUMBERS[0], "MESAJ", datetime.now(UTC))
    sync = tenant.client.app[iys_sync_key]
    assert await sync.pull(tenant.id) == 1
    assert await _count(db, sealed_inbound) == 1
    assert await _count(db, consent_events, consent_events.c.status == "revoked") == 0
    assert await sync.pull(tenant.id) == 0  # the cursor moved on: not kept twice
    await tenant.unlock()
    await tenant.client.app[inbound_key].backlog.apply(tenant.id)  # (or its loop did)
    assert await _count(db, sealed_inbound) == 0
    r = await tenant.call("GET", "/gate", params={"address": NUMBERS[0],
                                                  "channel": "whatsapp"})
    assert (await r.json())["reason"] == "iys_refused"


async def test_tenant_made_the_old_way_moves_its_key_at_unlock(tenant):
    app, db = tenant.client.app, tenant.client.app[db_key]
    master, directory = app[master_key], app[directory_key]
    await tenant.unlock()
    line = await _sandbox_line(tenant)
    await _stop(tenant, line, NUMBERS[0])
    key = app[keyring_key].get(tenant.id).lookup_key(
        (await accounts.tenant_row(db, tenant.id)).sealed_lookup_key)
    await tenant.call("POST", "/vault/lock")
    async with db.begin() as conn:  # as every tenant was before migration 0030
        await conn.execute(tenants.update().where(tenants.c.id == tenant.id).values(
            wrapped_lookup_key=master.wrap(key), sealed_lookup_key=None))
    async with db.connect() as conn:  # the old way: the master key finds numbers
        assert (await directory.indexer(conn, tenant.id))(NUMBERS[0]) == \
            blind_index(key, NUMBERS[0])

    await tenant.unlock()
    row = await accounts.tenant_row(db, tenant.id)
    assert row.wrapped_lookup_key is None and row.sealed_lookup_key is not None
    assert app[keyring_key].get(tenant.id).lookup_key(row.sealed_lookup_key) == key
    r = await tenant.call("GET", "/gate", params={"address": NUMBERS[0], "channel": "sandbox"})
    assert (await r.json())["reason"] == "opted_out"  # its suppression still matches
    await tenant.call("POST", "/vault/lock")
    async with db.connect() as conn:
        with pytest.raises(VaultLockedError):
            await directory.indexer(conn, tenant.id)
    r = await tenant.call("GET", "/gate", params={"address": NUMBERS[0], "channel": "sandbox"})
    assert r.status == 423


async def test_two_processes_unlocking_at_once_apply_each_item_once(tenant, config):
    app, db = tenant.client.app, tenant.client.app[db_key]
    await tenant.unlock()
    line = await _sandbox_line(tenant)
    await tenant.call("POST", "/vault/lock")
    router = app[inbound_key]
    numbers = [f"+90532222{i:04d}" for i in range(12)]
    public_key = (await accounts.tenant_row(db, tenant.id)).public_key
    for i, number in enumerate(numbers):
        await router.backlog.keep(tenant.id, public_key, "stop", {
            "line_id": line, "channel": "sandbox", "address": number, "source": "test",
            "evidence": "DUR", "kind": "opted_out", "at": int(time.time()) - 60 + i})
    # A second process: its own database handle, keyring, directory and backlog.
    other_db = open_database(config.store.url)
    try:
        from bot.inbound import InboundRouter
        from optout.tenants import TenantDirectory
        keyring = Keyring()
        directory = TenantDirectory(app[master_key], keyring)
        fields = FieldCrypto(keyring, SqlDataKeyStore(other_db))
        other = InboundBacklog(other_db, fields, directory, RevocationWatch())
        InboundRouter(other_db, fields, directory, {}, RevocationWatch(), backlog=other)
        await accounts.unlock(other_db, keyring, tenant.id, PASSPHRASE, 600)
        await tenant.unlock()
        done = await asyncio.gather(router.backlog.apply(tenant.id), other.apply(tenant.id))
    finally:
        await other_db.close()
    assert sum(done) <= len(numbers)  # the app's own loop may have taken some
    assert await _count(db, sealed_inbound) == 0
    assert await _count(db, consent_events, consent_events.c.status == "revoked") == \
        len(numbers)
    assert await _count(db, suppressions) == len(numbers)
    async with db.connect() as conn:
        kinds = [r[0] for r in await conn.execute(sa.select(suppressions.c.kind))]
    assert kinds == ["opted_out"] * len(numbers)


def test_sealed_item_dedup_hides_the_provider_id():
    from optout.backlog import dedup_of
    wamid = "wamid.HBgMOTA1MzIxMTEwMDAxFQIAEhgUM0VCMA=="
    assert len(dedup_of("t", wamid)) == 16 and dedup_of("t", wamid) != dedup_of("u", wamid)
    assert hashlib.blake2b(wamid.encode(), digest_size=16).digest() != dedup_of("t", wamid)
