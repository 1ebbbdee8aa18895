"""Names a business types — lists, campaigns, lines, API keys — are sealed (issue 17 item 2):
written while the vault is locked, read only while it is unlocked. Locked, the API answers
`"name": null, "name_locked": true` and pages show a lock; unlocked, everything reads as typed.
Migration 0031 seals the names already stored, without any tenant secret."""
from __future__ import annotations

import nacl.bindings
import pytest
import sqlalchemy as sa
from conftest import make_web_user

from dashboard.keys import db_key
from store import raw

LIST, CAMPAIGN, LINE, KEY = ("Kış müşterileri", "Bahar indirimi", "Vitrin hattı",
                             "Muhasebe anahtarı")


async def _json(r, status: int) -> dict:
    assert r.status == status, await r.text()
    return await r.json()


async def test_names_written_locked_read_after_unlock(tenant, client):
    # Everything is named while the vault is locked: sealing needs only the public key.
    line = await _json(await tenant.call("POST", "/lines", json={"channel": "sandbox",
                                                                 "name": LINE}), 201)
    listed = await _json(await tenant.call("POST", "/lists", json={"name": LIST}), 201)
    await _json(await tenant.call("POST", "/api-keys", json={"name": KEY}), 201)
    campaign = await _json(await tenant.call("POST", "/campaigns", json={
        "name": CAMPAIGN, "line_id": line["id"], "list_id": listed["id"],
        "template": "Merhaba"}), 201)
    # The caller typed it: the answer to a create says it back.
    assert (line["name"], listed["name"], campaign["name"]) == (LINE, LIST, CAMPAIGN)

    lists = (await _json(await tenant.call("GET", "/lists"), 200))["lists"]
    assert [(x["name"], x["name_locked"]) for x in lists] == [(None, True)]
    got = await _json(await tenant.call("GET", f"/campaigns/{campaign['id']}"), 200)
    assert (got["name"], got["name_locked"]) == (None, True)
    listed_campaigns = (await _json(await tenant.call("GET", "/campaigns"), 200))["campaigns"]
    assert [(c["name"], c["name_locked"]) for c in listed_campaigns] == [(None, True)]
    lines = (await _json(await tenant.call("GET", "/lines"), 200))["lines"]
    assert {(x["name"], x["name_locked"]) for x in lines} == {(None, True)}
    keys = (await _json(await tenant.call("GET", "/api-keys"), 200))["api_keys"]
    assert {(k["name"], k["name_locked"]) for k in keys} == {(None, True)}
    # Pages: a lock in Turkish (and English) instead of the name.
    owner = await make_web_user(client, tenant)
    page = await (await owner.get("/campaigns")).text()
    assert "🔒 Kasa kilitli" in page and CAMPAIGN not in page
    page = await (await owner.get(f"/campaigns/{campaign['id']}")).text()
    assert "🔒 Kasa kilitli" in page and LIST not in page and LINE not in page

    await tenant.unlock()
    lists = (await _json(await tenant.call("GET", "/lists"), 200))["lists"]
    assert [(x["name"], x["name_locked"]) for x in lists] == [(LIST, False)]
    got = await _json(await tenant.call("GET", f"/campaigns/{campaign['id']}"), 200)
    assert (got["name"], got["name_locked"]) == (CAMPAIGN, False)
    lines = (await _json(await tenant.call("GET", "/lines"), 200))["lines"]
    assert LINE in {x["name"] for x in lines} and not any(x["name_locked"] for x in lines)
    keys = (await _json(await tenant.call("GET", "/api-keys"), 200))["api_keys"]
    assert {k["name"] for k in keys} == {"default", KEY}
    page = await (await owner.get(f"/campaigns/{campaign['id']}")).text()
    assert CAMPAIGN in page and LIST in page and LINE in page and "Kasa kilitli" not in page

    # Nothing readable is left: the columns are gone, the names are field blobs.
    async with client.app[db_key].connect() as conn:
        for table in ("contact_lists", "campaigns", "lines", "api_keys"):
            columns = {c for c in (await raw.fetch(conn, f"SELECT * FROM {table} LIMIT 1"))[0]
                       ._mapping}
            assert "name" not in columns and "name_sealed" in columns
        audit = " ".join(r[0] for r in await raw.fetch(conn, "SELECT detail FROM audit_log"))
    assert not any(name in audit for name in (LIST, CAMPAIGN, LINE, KEY))


@pytest.mark.fresh_database
async def test_0031_seals_the_names_already_stored(config):
    from alembic import command

    from crypto.vault import UnlockedTenant
    from store.engine import open_database
    from store.migrate import _alembic_config, upgrade

    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config.database_url)
    public, secret = nacl.bindings.crypto_box_keypair()
    try:
        async with db.begin() as conn:
            await conn.run_sync(lambda s: command.upgrade(_alembic_config(s), "0030"))
            await raw.execute(conn, "INSERT INTO tenants (id, name, created_at, public_key, "
                                    "wrapped_secret, wrapped_lookup_key) VALUES "
                                    "('t', 'Eski', 1, ?, ?, ?)", (public, b"w", b"l"))
            await raw.execute(conn, "INSERT INTO lines (id, tenant_id, channel, name, "
                                    "rate_per_second, created_at) VALUES "
                                    "('l', 't', 'sandbox', ?, 1, 1), "
                                    "('tg', 't', 'telegram', 'Mağaza botu', 1, 2)", (LINE,))
            await raw.execute(conn, "INSERT INTO contact_lists (id, tenant_id, name, created_at) "
                                    "VALUES ('list', 't', ?, 1), "
                                    "('subs', 't', 'Telegram: Mağaza botu', 2)", (LIST,))
            await raw.execute(conn, "INSERT INTO campaigns (id, tenant_id, name, line_id, "
                                    "list_id, purpose, template_sealed, state, created_at) "
                                    "VALUES ('c', 't', ?, 'l', 'list', 'commercial', ?, "
                                    "'draft', 1)", (CAMPAIGN, b"x"))
            await raw.execute(conn, "INSERT INTO api_keys (id, tenant_id, name, secret_hash, "
                                    "created_at) VALUES ('k', 't', ?, ?, 1)", (KEY, b"h"))
        await upgrade(db)
        tenant = UnlockedTenant(secret)
        async with db.connect() as conn:
            tenant.add_sealed_deks({bytes(r[0]): bytes(r[1]) for r in await raw.fetch(
                conn, "SELECT id, sealed FROM data_keys WHERE tenant_id = 't'")})
            opened = {}
            for table in ("contact_lists", "campaigns", "lines", "api_keys"):
                rows = await conn.execute(sa.text(f"SELECT id, name_sealed FROM {table}"))
                opened |= {(table, r[0]): tenant.open_field(bytes(r[1])).decode() for r in rows}
            subscribers = dict((r[0], r[1]) for r in await raw.fetch(
                conn, "SELECT id, subscribers_of FROM contact_lists"))
    finally:
        await db.close()
    assert opened == {("contact_lists", "list"): LIST,
                      ("contact_lists", "subs"): "Telegram: Mağaza botu",
                      ("campaigns", "c"): CAMPAIGN, ("lines", "l"): LINE,
                      ("lines", "tg"): "Mağaza botu", ("api_keys", "k"): KEY}
    # The bot's subscriber list is found by the line from now on (names cannot be matched).
    assert subscribers == {"list": None, "subs": "tg"}


async def test_kvkk_reports_name_lists_and_campaigns(tenant, client):
    """The access report and the sealed export (opened with the tenant key) carry the list
    and campaign names opened, like before they were sealed."""
    import asyncio
    import time

    from dashboard.keys import keyring_key
    from optout import subjects

    await tenant.unlock()
    listed = await _json(await tenant.call("POST", "/lists", json={"name": LIST}), 201)
    r = await tenant.call("POST", f"/contacts/import?list_id={listed['id']}",
                          data="telefon;ad;consent\n05321112233;Ayşe;granted\n".encode(),
                          headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    line = next(x for x in (await _json(await tenant.call("GET", "/lines"), 200))["lines"]
                if x["channel"] == "sandbox")
    campaign = await _json(await tenant.call("POST", "/campaigns", json={
        "name": CAMPAIGN, "line_id": line["id"], "list_id": listed["id"],
        "template": "Merhaba {{name}}"}), 201)
    await _json(await tenant.call("POST", f"/campaigns/{campaign['id']}/start"), 200)
    deadline = time.monotonic() + 20
    while (await _json(await tenant.call("GET", f"/campaigns/{campaign['id']}"), 200)
           )["state"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    report = await _json(await tenant.call("GET", "/subjects",
                                           params={"address": "+905321112233"}), 200)
    assert report["contact"]["lists"] == [LIST]
    assert [m["campaign"] for m in report["messages"]] == [CAMPAIGN]
    sealed = await _json(await tenant.call("GET", "/subjects/export", params={
        "address": "+905321112233", "sealed": "true"}), 200)
    assert LIST not in str(sealed)
    secret = client.app[keyring_key].get(tenant.id).secret_key()
    opened = subjects.open_sealed_export(sealed, secret)
    assert opened["contact"]["lists"] == [LIST]
    assert [m["campaign"] for m in opened["messages"]] == [CAMPAIGN]
