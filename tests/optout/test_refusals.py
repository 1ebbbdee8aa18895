"""A refusal is lifted only by the person, and erased stays erased: re-imports, plain API
consents, the person's own START / reconsent / ONAY in İYS, and what an import says about
its rows (issue 14, items 1–3)."""
from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from conftest import ApiTenant

from dashboard.keys import db_key, directory_key, fields_key
from store.tables import consent_events, contacts, metadata

REFUSER_DATED, REFUSER_UNDATED = "+905440001122", "+905440001133"
STAYS_DATED, STAYS_UNDATED = "+905440001144", "+905440001155"
WEEKLY_FILE = (
    "telefon;ad soyad;şehir;consent;izin tarihi\n"
    "0544 000 11 22;Elif Şahin;İzmir;evet;2025-01-10 10:00:00\n"
    "0544 000 11 33;Deniz Kaya;Muğla;evet;\n"
    "0544 000 11 44;Can Öztürk;Rize;evet;2025-01-10 10:00:00\n"
    "0544 000 11 55;Işıl Ünlü;Bursa;evet;\n")


async def _import(t: ApiTenant, text: str, list_id: str | None = None, **query) -> dict:
    params = {**({"list_id": list_id} if list_id else {}), **query}
    r = await t.call("POST", "/contacts/import", params=params, data=text.encode("utf-8"),
                     headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    return await r.json()


async def _gate(t: ApiTenant, address: str, purpose: str = "commercial") -> str:
    r = await t.call("GET", "/gate", params={"address": address, "purpose": purpose})
    assert r.status == 200, await r.text()
    return (await r.json())["reason"]


async def _consents(t: ApiTenant, address: str) -> dict:
    r = await t.call("GET", "/consents", params={"address": address})
    assert r.status == 200, await r.text()
    return await r.json()


async def _line(t: ApiTenant) -> str:
    return (await (await t.call("GET", "/lines")).json())["lines"][0]["id"]


async def _reply(t: ApiTenant, frm: str, text: str) -> dict:
    r = await t.call("POST", "/sandbox/inbound", json={"line_id": await _line(t), "from": frm,
                                                       "text": text})
    assert r.status == 200, await r.text()
    return await r.json()


async def _new_list(t: ApiTenant, name: str) -> str:
    r = await t.call("POST", "/lists", json={"name": name})
    assert r.status == 201, await r.text()
    return (await r.json())["id"]


async def _next_second() -> None:
    """Events are ordered by the whole second (optout.order): a person's next act comes in
    the next second, as it does in life."""
    await asyncio.sleep(1.01 - time.time() % 1)


async def _pending_for_iys(t: ApiTenant) -> set[str]:
    async with t.client.app[db_key].connect() as conn:
        rows = await conn.execute(sa.select(consent_events.c.id).where(
            consent_events.c.tenant_id == t.id, consent_events.c.iys_sync_state == "pending"))
        return {r.id for r in rows}


async def _run_campaign(t: ApiTenant, list_id: str) -> dict:
    r = await t.call("POST", "/campaigns", json={
        "name": "haftalık", "line_id": await _line(t), "list_id": list_id,
        "template": "Merhaba {{name}}, yeni sezon ürünleri mağazamızda."})
    assert r.status == 201, await r.text()
    cid = (await r.json())["id"]
    assert (await t.call("POST", f"/campaigns/{cid}/start")).status == 200
    deadline = time.monotonic() + 20
    while (status := await (await t.call("GET", f"/campaigns/{cid}")).json())[
            "state"] != "completed":
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)
    return status


async def test_reimport_after_stop_keeps_the_refusal(tenant):
    await tenant.unlock()
    r = await tenant.call("PATCH", "/settings", json={
        "iys_enabled": True, "iys_code": "123456", "iys_brand_code": "654321"})
    assert r.status == 200, await r.text()
    list_id = await _new_list(tenant, "haftalık müşteriler")
    first = await _import(tenant, WEEKLY_FILE, list_id)
    assert (first["imported"], first["kept_refusal"], first["undated"]) == (4, 0, 2)
    for person in (REFUSER_DATED, REFUSER_UNDATED):
        assert (await _reply(tenant, person, "RET"))["intent"] == "stop"
    queued = await _pending_for_iys(tenant)  # four ONAY and two RET, waiting for İYS
    assert len(queued) == 6

    again = await _import(tenant, WEEKLY_FILE, list_id)

    assert (again["imported"], again["updated"], again["invalid"]) == (0, 4, [])
    assert again["kept_refusal"] == 2 and again["erased"] == 0
    assert again["skipped"] == [{"row": 2, "reason": "refused_earlier"},
                                {"row": 3, "reason": "refused_earlier"}]
    assert again["undated"] == 1  # only the row that was recorded
    for person in (REFUSER_DATED, REFUSER_UNDATED):
        got = await _consents(tenant, person)
        assert got["state"]["status"] == "revoked"
        assert [h["status"] for h in got["history"]] == ["granted", "revoked"]
        assert await _gate(tenant, person) == "opted_out"
    # Nothing new for İYS about them: only the two people who never refused got a new ONAY.
    added = await _pending_for_iys(tenant) - queued
    async with tenant.client.app[db_key].connect() as conn:
        rows = list(await conn.execute(sa.select(
            consent_events.c.status, consent_events.c.address_index).where(
            consent_events.c.id.in_(added))))
    assert sorted(r.status for r in rows) == ["granted", "granted"]
    index = tenant.client.app[directory_key].index
    assert {bytes(r.address_index) for r in rows} == {
        index(tenant.id, STAYS_DATED), index(tenant.id, STAYS_UNDATED)}
    # A plain API consent does not undo the refusal either.
    r = await tenant.call("POST", "/consents", json={
        "address": REFUSER_DATED, "channel": "sandbox", "status": "granted",
        "source": "HS_WEB", "evidence": "eski kampanya formu"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "refused_earlier"
    assert (await _consents(tenant, REFUSER_DATED))["state"]["status"] == "revoked"
    assert await _pending_for_iys(tenant) - queued == added
    # A campaign to the list skips both; the others wait for their İYS upload.
    status = await _run_campaign(tenant, list_id)
    assert status["skipped_by_reason"] == {"opted_out": 2, "iys_pending": 2}


async def test_reconsent_by_the_person_lifts_the_refusal(tenant):
    await tenant.unlock()
    await _import(tenant, WEEKLY_FILE)
    for person in (REFUSER_DATED, REFUSER_UNDATED):
        await _reply(tenant, person, "DUR")
    stopped_at = time.time()
    await _next_second()
    # The person's own START reply.
    assert (await _reply(tenant, REFUSER_DATED, "BAŞLA"))["intent"] == "start"
    assert await _gate(tenant, REFUSER_DATED) == "allowed"
    got = await _consents(tenant, REFUSER_DATED)
    assert [h["status"] for h in got["history"]] == ["granted", "revoked", "granted"]
    # An evidenced reconsent through the API, said explicitly — and audited.
    body = {"address": REFUSER_UNDATED, "channel": "sandbox", "status": "granted",
            "source": "HS_FIZIKSEL_ORTAM", "evidence": "Mağazada yeni izin formu imzalandı"}
    r = await tenant.call("POST", "/consents", json=body)
    assert r.status == 409 and (await r.json())["error"]["code"] == "refused_earlier"
    r = await tenant.call("POST", "/consents", json={**body, "reconsent": True,
                                                     "occurred_at": stopped_at - 3600})
    assert r.status == 409 and (await r.json())["error"]["code"] == "reconsent_not_newer"
    r = await tenant.call("POST", "/consents", json={**body, "status": "revoked",
                                                     "reconsent": True})
    assert r.status == 400
    assert await _gate(tenant, REFUSER_UNDATED) == "opted_out"
    r = await tenant.call("POST", "/consents", json={**body, "reconsent": True})
    assert r.status == 201, await r.text()
    assert (await r.json())["state"]["status"] == "granted"
    assert await _gate(tenant, REFUSER_UNDATED) == "allowed"
    got = await _consents(tenant, REFUSER_UNDATED)
    assert got["history"][-1]["evidence"]["reconsent"] is True
    entries = (await (await tenant.call("GET", "/audit")).json())["entries"]
    reconsent = [e for e in entries if e["action"] == "consent.reconsent"]
    assert len(reconsent) == 1 and reconsent[0]["detail"]["lifted_refusal"] is True
    # Having consented again, both are ordinary contacts: the weekly file applies again.
    again = await _import(tenant, WEEKLY_FILE)
    assert again["kept_refusal"] == 0 and again["skipped"] == []


PERSON = ("5324445566", "532 444 55 66", "Gülşen", "Ağaoğlu", "Hopa")
ERASED_FILE = ("telefon;ad soyad;ilçe;consent\n"
               "0532 444 55 66;Gülşen Ağaoğlu;Hopa;evet\n"
               "0532 000 11 22;Ahmet Yıldız;Merkez;evet\n")


async def _readable(t: ApiTenant) -> list[str]:
    """Every sealed field stored for the tenant, in every table, opened."""
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


async def _contact_status(t: ApiTenant, address: str) -> int:
    r = await t.call("GET", "/contacts", params={"address": address})
    return r.status


async def test_reimport_after_erasure_recreates_nothing(tenant):
    from optout import retention
    await tenant.unlock()
    await _import(tenant, ERASED_FILE, await _new_list(tenant, "vip"))
    r = await tenant.call("POST", "/subjects/erase", json={"address": "0532 444 55 66"})
    assert r.status == 200 and (await r.json())["completed"] is True
    assert await _contact_status(tenant, "+905324445566") == 404

    fresh = await _new_list(tenant, "yeni liste")
    result = await _import(tenant, ERASED_FILE, fresh)

    assert (result["imported"], result["updated"], result["erased"]) == (0, 1, 1)
    assert result["skipped"] == [{"row": 2, "reason": "erased"}]
    assert await _contact_status(tenant, "+905324445566") == 404
    assert not [(p, text) for text in await _readable(tenant) for p in PERSON if p in text]
    lists = {x["id"]: x["members"] for x in (await (await tenant.call(
        "GET", "/lists")).json())["lists"]}
    assert lists[fresh] == 1
    assert await _gate(tenant, "+905324445566", "informational") == "suppressed"
    # The same once retention has destroyed the erased contact row itself.
    async with tenant.client.app[db_key].begin() as conn:
        await retention.purge(conn, time.time() + 1, retention.RetentionPolicy())
        assert (await conn.execute(sa.select(sa.func.count()).select_from(contacts).where(
            contacts.c.tenant_id == tenant.id, contacts.c.erased_at.is_not(None)))).scalar() == 0
    result = await _import(tenant, ERASED_FILE, fresh)
    assert result["erased"] == 1 and result["imported"] == 0
    assert await _contact_status(tenant, "+905324445566") == 404
    assert not [(p, text) for text in await _readable(tenant) for p in PERSON if p in text]
    # Nor does the consent API bring them back.
    r = await tenant.call("POST", "/consents", json={
        "address": "05324445566", "channel": "sandbox", "status": "granted",
        "source": "HS_WEB", "evidence": "eski form"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "erased"
    assert not [(p, text) for text in await _readable(tenant) for p in PERSON if p in text]
    # Only the person's own new consent starts a new relationship.
    await _next_second()
    assert (await _reply(tenant, "+905324445566", "BAŞLA"))["intent"] == "start"
    assert await _gate(tenant, "+905324445566") == "allowed"
    result = await _import(tenant, ERASED_FILE, fresh)
    assert result["erased"] == 0 and result["skipped"] == []
    assert await _contact_status(tenant, "+905324445566") == 200


async def test_import_evidence_says_what_it_is(tenant):
    await tenant.unlock()
    statement = ("Kampanya ve duyurulardan WhatsApp ile haberdar olmak için ticari elektronik "
                 "ileti almayı kabul ediyorum.")
    result = await _import(tenant, WEEKLY_FILE, consent_text=statement)
    assert result["undated"] == 2
    undated = (await _consents(tenant, STAYS_UNDATED))["history"][0]
    dated = (await _consents(tenant, STAYS_DATED))["history"][0]
    assert undated["evidence"]["date_source"] == "upload"
    assert undated["evidence"]["consent_date"] == ""
    assert undated["evidence"]["uploaded_at"].endswith("+03:00")
    assert dated["evidence"]["date_source"] == "file"
    assert dated["occurred_at"].startswith("2025-01-10T07:00:00")  # 10:00 in Istanbul
    assert dated["evidence"]["consent_text"] == undated["evidence"]["consent_text"] == statement
    r = await tenant.call("POST", "/contacts/import", params={"consent_text": "x" * 2001},
                          data=b"phone\n05321112233\n", headers={"Content-Type": "text/csv"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_field"


async def test_a_file_that_refuses_keeps_its_own_refusal(tenant):
    """In one file, a consent dated after the person's refusal in that file is not applied;
    one dated before it is history."""
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    result = await _import(tenant, (
        "telefon;consent;izin tarihi\n"
        "05440002211;evet;2025-01-01 09:00\n"
        "05440002211;hayır;2025-02-01 09:00\n"
        "05440002211;evet;2025-03-01 09:00\n"))
    assert result["kept_refusal"] == 1
    assert result["skipped"] == [{"row": 4, "reason": "refused_earlier"}]
    got = await _consents(tenant, "+905440002211")
    assert got["state"]["status"] == "revoked"
    assert [h["status"] for h in got["history"]] == ["granted", "revoked"]


async def test_ledger_moves_a_refusal_back_only_for_the_persons_own_act(db):
    from optout import ledger
    from optout.ledger import ConsentEvent
    from store.ids import new_id
    from store.tables import tenants
    tenant_id, index = new_id(), b"\x01" * 16
    async with db.begin() as conn:
        await conn.execute(tenants.insert().values(
            id=tenant_id, name="t", created_at=1.0, public_key=b"p", wrapped_secret=b"w",
            wrapped_lookup_key=b"l"))

    def event(status: str, at: float) -> ConsentEvent:
        return ConsentEvent(index, "MESAJ", status, "HS_WEB", "individual", b"e", at)

    async def state() -> str:
        async with db.connect() as conn:
            found, _ = await ledger.state_and_history(conn, tenant_id, index, "MESAJ")
        return found["status"]
    async with db.begin() as conn:
        await ledger.record(conn, tenant_id, [event("revoked", 100.0)])
        await ledger.record(conn, tenant_id, [event("granted", 200.0)])
    assert await state() == "revoked"
    async with db.begin() as conn:
        await ledger.record(conn, tenant_id, [event("granted", 300.0)], lifts_refusal=True)
    assert await state() == "granted"


@pytest.fixture
async def iys(aiohttp_server):
    from fakes.iys import IysState, create_iys_app
    state = IysState()
    server = await aiohttp_server(create_iys_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
def config(config, iys):
    from conftest import with_providers
    return with_providers(config, iys=iys[1])


async def test_onay_given_in_iys_by_the_person_lifts_the_refusal(tenant, iys):
    from fakes.iys import BRAND_CODE, CITIZEN_SOURCE, GMT3, IYS_CODE, PASSWORD, USERNAME

    from dashboard.keys import iys_sync_key
    state, _ = iys
    await tenant.unlock()
    r = await tenant.call("PATCH", "/settings", json={
        "iys_enabled": True, "iys_code": IYS_CODE, "iys_brand_code": BRAND_CODE,
        "iys_credentials": {"username": USERNAME, "password": PASSWORD}})
    assert r.status == 200, await r.text()
    await _import(tenant, "telefon;consent\n05440003311;evet\n")
    await _reply(tenant, "+905440003311", "RET")
    assert await _gate(tenant, "+905440003311") == "opted_out"
    await _next_second()
    # The person says yes again in İYS itself (web, e-Devlet): it comes with the next pull.
    state._append(BRAND_CODE, {"recipient": "+905440003311", "type": "MESAJ", "status": "ONAY",
                               "recipientType": "BIREYSEL", "source": CITIZEN_SOURCE},
                  datetime.now(UTC).astimezone(GMT3))  # İYS dates are Istanbul time
    await tenant.client.app[iys_sync_key].pull(tenant.id)
    got = await _consents(tenant, "+905440003311")
    assert got["state"]["status"] == "granted" and got["state"]["iys_status"] == "ONAY"
    assert got["history"][-1]["iys_sync_state"] == "not_applicable"  # it came from İYS
    assert await _gate(tenant, "+905440003311") == "allowed"


async def test_import_page_asks_for_the_consent_text_and_shows_what_was_kept(owner, tenant):
    import aiohttp

    async def upload(content: str, consent_text: str = ""):
        data = aiohttp.FormData()
        for name, value in (("csrf", owner.csrf), ("list_id", ""), ("new_list", "hafta"),
                            ("consent_text", consent_text)):
            data.add_field(name, value)
        data.add_field("file", content.encode(), filename="kisiler.csv",
                       content_type="text/csv")
        r = await owner.client.post("/contacts/import", data=data)
        assert r.status == 200, await r.text()
        return await r.text()

    page = await (await owner.get("/contacts")).text()
    assert 'name="consent_text"' in page and "Kişilere gösterilen izin metni" in page
    await tenant.unlock()
    statement = "Kampanyalardan haberdar olmak için ileti almayı kabul ediyorum."
    await upload(WEEKLY_FILE, statement)
    assert (await _consents(tenant, STAYS_DATED))["history"][0]["evidence"][
        "consent_text"] == statement
    await _reply(tenant, REFUSER_DATED, "STOP")
    text = await upload(WEEKLY_FILE)
    assert 'data-testid="kept_refusal">1<' in text and 'data-testid="undated">2<' in text
    assert 'data-testid="erased">0<' in text
    assert "Reddi korunan" in text and "daha önce reddetti" in text
    assert "refused_earlier" not in text  # a reason in words, never its code (issue 16)
    await owner.post("/language", {"language": "en", "back": "/contacts"})
    text = await upload(WEEKLY_FILE)
    assert "Refusal kept" in text and "refused earlier: consent not applied" in text
    assert "Undated consents" in text and "Consent statement people saw" in text


async def test_openapi_documents_the_import_counts_and_reconsent(client):
    doc = await (await client.get("/api/v1/openapi.json")).json()
    imported = doc["paths"]["/api/v1/contacts/import"]["post"]
    schema = imported["responses"]["200"]["content"]["application/json"]["schema"]
    for counter in ("kept_refusal", "undated", "erased"):
        assert schema["properties"][counter]["type"] == "integer"
    assert "refused_earlier" in schema["properties"]["skipped"]["description"]
    assert "erased" in schema["properties"]["skipped"]["description"]
    assert "consent_text" in [p["name"] for p in imported["parameters"]]
    consent = doc["paths"]["/api/v1/consents"]["post"]
    body = consent["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["reconsent"]["type"] == "boolean"
    assert "refused_earlier" in consent["responses"]["409"]["description"]


async def test_a_consent_tap_after_erasure_brings_the_contact_back_only_once_lifted(db):
    """A Telegram consent tap (campaigns.audiences.add_subscriber) is the person's own act: it
    re-creates the erased contact, but never while the erasure still stands."""
    from campaigns.audiences import add_subscriber
    from optout import ledger, refusals, subjects
    from optout.ledger import ConsentEvent
    from store.tables import tenants
    tenant_id, chat = "t-tap", b"\x07" * 16
    async with db.begin() as conn:
        await conn.execute(tenants.insert().values(
            id=tenant_id, name="t", created_at=1.0, public_key=b"p", wrapped_secret=b"w",
            wrapped_lookup_key=b"l"))
        assert await add_subscriber(conn, tenant_id, "bot", chat, b"sealed chat id")
        await subjects.erase(conn, tenant_id, chat)
        assert await add_subscriber(conn, tenant_id, "bot", chat, b"sealed again") is None

    async def contact():
        async with db.connect() as conn:
            return (await conn.execute(sa.select(contacts.c.address_sealed, contacts.c.erased_at)
                                       .where(contacts.c.tenant_id == tenant_id))).one()
    erased = await contact()
    assert bytes(erased.address_sealed) == b"" and erased.erased_at is not None
    async with db.begin() as conn:
        assert await refusals.grant_by_person(conn, tenant_id, ConsentEvent(
            chat, "TELEGRAM", ledger.GRANTED, "telegram:consent", "individual", b"e",
            float(int(time.time()) + 1)), iys_enabled=False)
        assert not await refusals.erased(conn, tenant_id, chat)
        assert await add_subscriber(conn, tenant_id, "bot", chat, b"sealed again")
    found = await contact()
    assert bytes(found.address_sealed) == b"sealed again" and found.erased_at is None
