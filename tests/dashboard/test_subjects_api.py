"""KVKK data-subject requests through the API: access report, erasure, request log."""
import asyncio
import json
import time

from conftest import ApiTenant


async def _setup_person(t: ApiTenant) -> str:
    await t.unlock()
    list_id = (await (await t.call("POST", "/lists", json={"name": "vip"})).json())["id"]
    await t.call("POST", f"/contacts/import?list_id={list_id}",
                 data="telefon;ad soyad;şehir;consent\n0532 444 55 66;Gülşen Ağaoğlu;Rize;evet\n"
                 .encode("cp1254"), headers={"Content-Type": "text/csv"})
    line = (await (await t.call("GET", "/lines")).json())["lines"][0]["id"]
    cid = (await (await t.call("POST", "/campaigns", json={
        "name": "yaz", "line_id": line, "list_id": list_id, "template": "Merhaba {{name}}"})
    ).json())["id"]
    await t.call("POST", f"/campaigns/{cid}/start")
    deadline = time.monotonic() + 20
    while (await (await t.call("GET", f"/campaigns/{cid}")).json())["state"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await t.call("POST", "/sandbox/inbound", json={"line_id": line, "from": "05324445566",
                                                   "text": "beni Rize'den arayın"})
    return line


async def test_access_report_lists_what_is_held(tenant):
    await _setup_person(tenant)
    r = await tenant.call("GET", "/subjects", params={"address": "+905324445566"})
    assert r.status == 200
    report = await r.json()
    assert report["contact"]["name"] == "Gülşen Ağaoğlu"
    assert report["contact"]["attributes"] == {"sehir": "Rize"}
    assert report["contact"]["lists"] == ["vip"]
    assert [c["status"] for c in report["consents"]] == ["granted"]
    assert report["consents"][0]["evidence"]["row"] == 2
    assert [(m["campaign"], m["state"]) for m in report["messages"]] == [("yaz", "sent")]
    assert report["replies_received"] == 1 and report["processors"] == []
    log = (await (await tenant.call("GET", "/subjects/requests")).json())["requests"]
    assert log[0]["kind"] == "access" and log[0]["due_at"] > log[0]["received_at"]


async def test_access_needs_unlock(tenant):
    r = await tenant.call("GET", "/subjects", params={"address": "+905324445566"})
    assert r.status == 423


async def test_erasure_destroys_contact_data_and_keeps_them_unreachable(tenant):
    await _setup_person(tenant)
    r = await tenant.call("POST", "/subjects/erase", json={"address": "0532 444 55 66"})
    assert r.status == 200
    erased = (await r.json())["erased"]
    assert erased["contacts"] == 1 and erased["inbound_messages"] == 1
    assert erased["sandbox_messages"] == 1
    report = await (await tenant.call("GET", "/subjects",
                                      params={"address": "+905324445566"})).json()
    assert report["contact"] is None and report["replies_received"] == 0
    assert [c["status"] for c in report["consents"]] == ["granted"]  # proof is kept
    for purpose in ("commercial", "informational"):
        gate = await (await tenant.call("GET", "/gate", params={
            "address": "+905324445566", "purpose": purpose})).json()
        assert gate == {"allowed": False, "reason": "suppressed"}
    kinds = [r["kind"] for r in (await (await tenant.call(
        "GET", "/subjects/requests")).json())["requests"]]
    assert "erasure" in kinds


PERSON = ("5324445566", "532 444 55 66", "0532 444", "Gülşen", "Ağaoğlu", "Rize", "arayın")


async def _everything_readable(t: ApiTenant) -> list[str]:
    """Opens every sealed field still stored for the tenant, in every table."""
    import sqlalchemy as sa

    from dashboard.keys import db_key, fields_key
    from store.tables import metadata
    app, texts = t.client.app, []
    async with app[db_key].connect() as conn:
        for table in metadata.sorted_tables:
            sealed = [c for c in table.c if c.name.endswith("_sealed")]
            if not sealed or "tenant_id" not in table.c:
                continue
            for row in await conn.execute(sa.select(*sealed).where(table.c.tenant_id == t.id)):
                blobs = [bytes(v) for v in row if v]
                texts += [b.decode() for b in await app[fields_key].open_fields(t.id, blobs)]
    return texts


async def test_erasure_leaves_nothing_readable_and_later_campaigns_skip_them(tenant):
    line = await _setup_person(tenant)
    assert any("Gülşen" in text for text in await _everything_readable(tenant))  # the probe sees
    r = await tenant.call("POST", "/subjects/erase", json={"address": "0532 444 55 66"})
    assert (await r.json())["completed"] is True
    texts = await _everything_readable(tenant)
    assert texts  # consent proof and templates are still there, opened
    assert not [(p, t) for t in texts for p in PERSON if p in t]
    report = await (await tenant.call("GET", "/subjects",
                                      params={"address": "+905324445566"})).json()
    proof = report["consents"][0]["evidence"]
    assert proof["row"] == 2 and proof["pseudonymised"] is True and "address" not in proof
    # The person is imported again by mistake: the row is skipped, so a new campaign never
    # even lists them (tests/optout/test_refusals.py has the details).
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "again"})).json())["id"]
    r = await tenant.call("POST", f"/contacts/import?list_id={list_id}",
                          data=b"telefon,consent\n05324445566,evet\n05320001122,evet\n",
                          headers={"Content-Type": "text/csv"})
    assert (await r.json())["skipped"] == [{"row": 2, "reason": "erased"}]
    cid = (await (await tenant.call("POST", "/campaigns", json={
        "name": "kis", "line_id": line, "list_id": list_id, "template": "Kış indirimi"})
    ).json())["id"]
    await tenant.call("POST", f"/campaigns/{cid}/start")
    deadline = time.monotonic() + 20
    while (status := await (await tenant.call("GET", f"/campaigns/{cid}")).json())[
            "state"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert status["counts"]["sent"] == 1
    assert status["skipped_by_reason"] == {}


async def test_erasure_while_locked_completes_after_the_next_unlock(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    await _setup_person(tenant)
    await tenant.call("POST", "/vault/lock")
    r = await tenant.call("POST", "/subjects/erase", json={"address": "05324445566"})
    assert r.status == 200 and (await r.json())["completed"] is False
    # Locked, the person cannot be found (the number index is the tenant's, issue 17): the
    # request is kept sealed and carried out first thing at the unlock.
    await tenant.unlock()
    from dashboard.keys import erasures_key, inbound_key
    await tenant.client.app[inbound_key].backlog.apply(tenant.id)  # (or its loop did)
    log = (await (await tenant.call("GET", "/subjects/requests")).json())["requests"]
    assert log[0]["kind"] == "erasure" and log[0]["completed_at"] is None
    assert await tenant.client.app[erasures_key].finish_unlocked() == 1
    assert not [(p, t) for t in await _everything_readable(tenant) for p in PERSON if p in t]
    log = (await (await tenant.call("GET", "/subjects/requests")).json())["requests"]
    assert log[0]["completed_at"] is not None


async def test_correction_changes_name_and_attributes(tenant):
    await _setup_person(tenant)
    r = await tenant.call("POST", "/subjects/correct", json={
        "address": "05324445566", "name": "Gülşen Ağaoğlu-Kaya",
        "attributes": {"sehir": "Trabzon"}})
    assert r.status == 200
    report = await (await tenant.call("GET", "/subjects",
                                      params={"address": "+905324445566"})).json()
    assert report["contact"]["name"] == "Gülşen Ağaoğlu-Kaya"
    assert report["contact"]["attributes"] == {"sehir": "Trabzon"}
    r = await tenant.call("POST", "/subjects/correct", json={"address": "05320000000",
                                                             "name": "x"})
    assert r.status == 404
    r = await tenant.call("POST", "/subjects/correct", json={"address": "05324445566"})
    assert r.status == 400


async def test_export_is_decrypted_while_unlocked_and_sealed_to_the_tenant_while_locked(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    from conftest import PASSPHRASE

    import accounts
    from crypto.keys import unwrap_secret
    from dashboard.keys import db_key
    from optout.subjects import open_sealed_export
    await _setup_person(tenant)
    r = await tenant.call("GET", "/subjects/export", params={"address": "05324445566"})
    assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
    plain = await r.json()
    assert plain["format"] == "izinli.subject-export.v1"
    assert plain["contact"]["name"] == "Gülşen Ağaoğlu"
    await tenant.call("POST", "/vault/lock")
    r = await tenant.call("GET", "/subjects/export", params={"address": "05324445566"})
    assert r.status == 423  # locked, the person cannot be found: the index is the tenant's
    await tenant.unlock()
    r = await tenant.call("GET", "/subjects/export", params={"address": "05324445566",
                                                             "sealed": "true"})
    assert r.status == 200
    text = await r.text()
    for secret in PERSON[:6]:
        assert secret not in text
    sealed = json.loads(text)
    assert sealed["format"] == "izinli.sealed-subject-export.v1"
    row = await accounts.tenant_row(tenant.client.app[db_key], tenant.id)
    report = open_sealed_export(sealed, unwrap_secret(row.wrapped_secret, PASSPHRASE))
    assert report["contact"] == plain["contact"] and report["consents"] == plain["consents"]
    kinds = [q["kind"] for q in (await (await tenant.call(
        "GET", "/subjects/requests")).json())["requests"]]
    assert kinds.count("export") == 2
