"""An import's batch lands the same on both databases (PostgreSQL writes it as one statement
over arrays per table, SQLite row by row): contacts, their sealed values, list membership and
the ledger; a re-upload updates, keeps what empty cells do not say, and adds nothing twice."""
from __future__ import annotations

import json

import sqlalchemy as sa
from conftest import ApiTenant

from dashboard.keys import db_key, fields_key
from store.tables import consent_events, consent_state, contacts, list_members

FIRST = ("telefon;ad soyad;şehir;consent;tip\n"
         "0532 000 00 01;Ayşe Yılmaz;İzmir;evet;\n"
         "0532 000 00 02;Mehmet Öztürk;Muğla;hayır;tacir\n"
         "0532 000 00 03;;;;\n"
         "0532 000 00 01;Ayşe Y.;İzmir;evet;\n")
SECOND = ("telefon;ad soyad;şehir;consent;tip\n"
          "0532 000 00 01;;Rize;evet;\n"
          "0532 000 00 02;Mehmet Öztürk;Muğla;evet;tacir\n"
          "0532 000 00 04;Can Kaya;Bursa;evet;\n")


async def _import(t: ApiTenant, text: str, list_id: str) -> dict:
    r = await t.call("POST", "/contacts/import", params={"list_id": list_id},
                     data=text.encode("utf-8"), headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    return await r.json()


async def _stored(t: ApiTenant) -> dict:
    """Each contact as (name, attributes, recipient type), by phone; the row counts."""
    app = t.client.app
    async with app[db_key].connect() as conn:
        rows = (await conn.execute(sa.select(
            contacts.c.address_sealed, contacts.c.name_sealed, contacts.c.attributes_sealed,
            contacts.c.recipient_type).where(contacts.c.tenant_id == t.id))).all()
        members = (await conn.execute(sa.select(sa.func.count()).select_from(list_members)))
        events = (await conn.execute(sa.select(consent_events.c.status).where(
            consent_events.c.tenant_id == t.id).order_by(consent_events.c.status))).scalars()
        states = (await conn.execute(sa.select(consent_state.c.status).where(
            consent_state.c.tenant_id == t.id).order_by(consent_state.c.status))).scalars()
        counts = {"members": members.scalar_one(), "events": list(events),
                  "states": list(states)}
    people = {}
    for address, name, attributes, kind in rows:
        opened = await app[fields_key].open_fields(
            t.id, [bytes(b) for b in (address, name, attributes) if b is not None])
        phone = opened.pop(0).decode()
        people[phone] = (opened.pop(0).decode() if name is not None else None,
                         json.loads(opened.pop(0)) if attributes is not None else None, kind)
    return {"people": people, **counts}


async def test_import_and_reimport_land_alike_on_both_databases(tenant):
    await tenant.unlock()
    r = await tenant.call("POST", "/lists", json={"name": "Müşteriler"})
    list_id = (await r.json())["id"]
    first = await _import(tenant, FIRST, list_id)
    assert (first["imported"], first["updated"], first["invalid"]) == (3, 1, [])
    second = await _import(tenant, SECOND, list_id)
    assert (second["imported"], second["updated"], second["kept_refusal"]) == (1, 2, 1)
    assert second["skipped"] == [{"row": 3, "reason": "refused_earlier"}]
    stored = await _stored(tenant)
    assert stored["people"] == {
        # An empty name cell keeps the name; the attributes are the new row's.
        "+905320000001": ("Ayşe Y.", {"sehir": "Rize"}, "individual"),
        "+905320000002": ("Mehmet Öztürk", {"sehir": "Muğla"}, "merchant"),
        "+905320000003": (None, {"sehir": ""}, "individual"),
        "+905320000004": ("Can Kaya", {"sehir": "Bursa"}, "individual"),
    }
    assert stored["members"] == 4
    # Three consents from the first file, two from the second (the refusal kept out).
    assert stored["events"] == ["granted"] * 4 + ["revoked"]
    assert stored["states"] == ["granted", "granted", "revoked"]
    again = await _import(tenant, SECOND, list_id)
    assert (again["imported"], again["updated"]) == (0, 3)
    assert (await _stored(tenant))["members"] == 4
