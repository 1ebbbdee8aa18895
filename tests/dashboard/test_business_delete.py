"""Deleting a business (issue 17 item 6): every row gone, its keys destroyed, the others
untouched, the audit chain still verifying with one operator-level entry."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import PASSPHRASE, ApiTenant

import accounts
from accounts import deletion
from crypto.audit_key import AuditKey
from dashboard.keys import db_key, keyring_key, master_key
from optout import audit
from store.purge import tenant_tables

CSV = "phone,name\n0532 111 22 33,Şükrü Çağlayan\n0532 111 22 44,Işıl Ünlü\n"
AUDIENCE = "telefon;ad;izin\n" + "".join(f"0532 444 56 {i:02d};Kişi {i};evet\n"
                                         for i in range(20))


async def _populate(tenant: ApiTenant, passphrase: str) -> str:
    """Contacts, a STOP, and a campaign sending slowly (2 a second); its id."""
    await tenant.unlock(passphrase)
    r = await tenant.call("POST", "/contacts/import", data=CSV.encode(),
                          headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    r = await tenant.call("POST", "/sandbox/inbound", json={
        "line_id": line, "from": "+905321112244", "text": "RET"})
    assert r.status == 200, await r.text()
    r = await tenant.call("PATCH", f"/lines/{line}", json={"rate_per_second": 2})
    assert r.status == 200, await r.text()
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "on"})).json())["id"]
    await tenant.call("POST", f"/contacts/import?list_id={list_id}", data=AUDIENCE.encode(),
                      headers={"Content-Type": "text/csv"})
    r = await tenant.call("POST", "/campaigns", json={
        "name": "yaz", "line_id": line, "list_id": list_id, "template": "Merhaba"})
    assert r.status == 201, await r.text()
    campaign = (await r.json())["id"]
    r = await tenant.call("POST", f"/campaigns/{campaign}/start")
    assert r.status == 200, await r.text()
    return campaign


async def _sending(tenant: ApiTenant, campaign: str) -> None:
    deadline = time.monotonic() + 10
    while not (await (await tenant.call("GET", f"/campaigns/{campaign}")).json())[
            "counts"].get("sent"):
        assert time.monotonic() < deadline, "the campaign never started sending"
        await asyncio.sleep(0.05)


async def _rows_of(conn, tenant_id: str) -> dict[str, int]:
    counts = {}
    for table in await tenant_tables(conn) + ["audit_log", "tenants"]:
        column = "id" if table == "tenants" else "tenant_id"
        counts[table] = (await conn.execute(sa.text(
            f"SELECT count(*) FROM {table} WHERE {column} = :t"), {"t": tenant_id})).scalar()
    return counts


async def _blobs_in_columns(conn, blobs: list[bytes]) -> list[str]:
    """Every binary column of every table searched for the blobs (both databases)."""
    def binary_columns(sync):
        inspector = sa.inspect(sync)
        return [(t, c["name"]) for t in inspector.get_table_names()
                for c in inspector.get_columns(t)
                if isinstance(c["type"], sa.LargeBinary | sa.types._Binary)]
    found = []
    for table, column in await conn.run_sync(binary_columns):
        for blob in blobs:
            q = sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :b")
            if (await conn.execute(q, {"b": blob})).scalar():
                found.append(f"{table}.{column}")
    return found


async def test_tenant_delete_shreds(client, tenant, owner, config):
    db = client.app[db_key]
    neighbour = "kırmızı kalem defter silgi"
    other_id, other_key = await accounts.create_tenant(
        db, client.app[master_key], "Komşu Kırtasiye", neighbour, kdf="min")
    other = ApiTenant(client, other_id, other_key)
    campaign = await _populate(tenant, PASSPHRASE)
    await _populate(other, neighbour)
    await _sending(tenant, campaign)
    await owner.post("/vault/recovery-code")  # a second wrap of the key, to destroy as well
    row = await accounts.tenant_row(db, tenant.id)
    assert row.wrapped_secret and row.recovery_wrapped_secret
    keys = [k for k in (row.wrapped_secret, row.recovery_wrapped_secret, row.wrapped_lookup_key,
                        getattr(row, "sealed_lookup_key", None)) if k]
    async with db.connect() as conn:
        mine, theirs = await _rows_of(conn, tenant.id), await _rows_of(conn, other_id)
    assert mine["contacts"] == 22 and mine["users"] == 1 and mine["suppressions"] >= 1
    assert mine["audit_log"] and mine["outbox"] == 20 and mine["campaigns"] == 1

    page = await (await owner.get("/business/delete")).text()
    assert "Örnek Mağaza" in page
    r = await owner.post("/business/delete", data={
        "password": owner.password, "passphrase": PASSPHRASE, "business": "Örnek Magaza"})
    assert r.status == 400 and "hiçbir şey silinmedi" in await r.text()
    r = await owner.post("/business/delete", data={
        "password": owner.password, "passphrase": "yanlış parola 123",
        "business": "Örnek Mağaza"})
    assert r.status == 403
    r = await owner.post("/business/delete", data={
        "password": owner.password, "passphrase": PASSPHRASE, "business": " Örnek Mağaza "})
    assert r.status == 200 and 'data-testid="business-deleted"' in await r.text()
    await asyncio.sleep(1.5)  # the dispatcher had a line sending for it: it sends no more

    async with db.connect() as conn:
        assert set((await _rows_of(conn, tenant.id)).values()) == {0}
        left = await _rows_of(conn, other_id)
    # The neighbour keeps everything (its campaign goes on sending meanwhile, so its counter
    # moves, day counts, sandbox inbox and audit entries move on by themselves).
    moving = ("outbox_moves", "tenant_day_counts", "sandbox_messages", "audit_log")
    assert {t: n for t, n in left.items() if t not in moving} == {
        t: n for t, n in theirs.items() if t not in moving}
    assert left["contacts"] == 22 and left["sandbox_messages"] >= theirs["sandbox_messages"]
    async with db.connect() as conn:
        assert await _blobs_in_columns(conn, keys) == []
        deleted = (await conn.execute(sa.text(
            "SELECT tenant_id, detail FROM audit_log WHERE action = 'tenant.delete'"))).one()
    assert deleted.tenant_id is None and tenant.id in deleted.detail
    assert "Mağaza" not in deleted.detail  # ids and counts, never the name
    assert not client.app[keyring_key].is_unlocked(tenant.id)
    if db.dialect == "sqlite":  # nor anywhere in the file: no free page, no old WAL frame
        path = Path(config.database_url.split("///", 1)[1])
        files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
        assert files and not any(key in f.read_bytes() for f in files for key in keys)
    verdict = await audit.verify_chain(db, AuditKey(client.app[master_key]).public)
    assert verdict.broken_at is None and verdict.redacted > 0, verdict
    # The session went with the business; the other tenant still works.
    assert (await owner.get("/vault", allow_redirects=False)).status == 303
    r = await other.call("GET", "/contacts", params={"address": "+905321112233"})
    assert r.status == 200 and (await r.json())["name"] == "Şükrü Çağlayan"


async def test_a_blanked_audit_entry_needs_the_deletion_that_names_it(client, tenant):
    db = client.app[db_key]
    public = AuditKey(client.app[master_key]).public
    async with db.begin() as conn:
        await conn.execute(sa.text(
            "UPDATE audit_log SET tenant_id = NULL, actor = '', action = 'redacted', "
            "detail = '' WHERE seq = 1"))
    verdict = await audit.verify_chain(db, public)
    assert verdict.code == "entry_altered" and verdict.broken_at == 1


async def test_deleting_needs_the_name(client, tenant):
    with pytest.raises(accounts.AccountError) as caught:
        await deletion.delete_tenant(client.app[db_key], tenant.id, "Başka", "test",
                                     client.app[keyring_key].lock)
    assert caught.value.code == "name_mismatch"
    assert (await accounts.tenant_row(client.app[db_key], tenant.id)).name == "Örnek Mağaza"
