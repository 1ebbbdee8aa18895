"""Our blobs open with libsodium.js (node), an implementation independent of PyNaCl."""

import base64
import json
import os
import pathlib
import shutil
import subprocess
import unicodedata

import pytest

from crypto.blind import blind_index, new_lookup_key
from crypto.fields import FieldSealer, new_data_key
from crypto.keys import KDF_LEVELS, new_tenant_keys
from crypto.master import MasterKey

HERE = pathlib.Path(__file__).parent
PASSPHRASE = "Şükrü Çağlayan İğdır parolası"
ADDRESSES = ["+905321112233", "-1001234567890", "987654321"]  # E.164, Telegram chat ids
TEXTS = ["Şükrü Çağlayan İğdır", "+905321112233", "", "Mesaj almak istemiyorsanız RET yazın."]


def _node() -> str:
    node = shutil.which("node")
    missing = [] if node else ["node"]
    if not (HERE / "node_modules" / "libsodium-wrappers-sumo").is_dir():
        missing.append("tests/interop/node_modules (run: npm ci --prefix tests/interop)")
    if missing:
        reason = "interop needs " + ", ".join(missing)
        if os.environ.get("IZINLI_REQUIRE_INTEROP") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return node


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _open_with_libsodium_js(node: str, request: dict) -> dict:
    done = subprocess.run(
        [node, str(HERE / request.pop("script", "open.mjs"))],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_libsodium_js_opens_our_fields_blind_index_and_master_blobs():
    node = _node()
    keys = new_tenant_keys(PASSPHRASE, kdf="min")
    data_key = new_data_key(keys.public_key)
    sealer = FieldSealer(data_key.dek_id, data_key.dek)
    lookup_key, master_raw = new_lookup_key(), os.urandom(32)
    request = {
        # Decomposed (NFD) on purpose: both sides must normalise the passphrase to NFC.
        "passphrase": unicodedata.normalize("NFD", PASSPHRASE),
        "wrapped_secret": _b64(keys.wrapped_secret),
        "dek_id": _b64(data_key.dek_id),
        "sealed_dek": _b64(data_key.sealed),
        "field_blobs": [_b64(sealer.seal_field(t.encode())) for t in TEXTS],
        "lookup_key": _b64(lookup_key),
        "addresses": ADDRESSES,
        "master_key": _b64(master_raw),
        "master_blob": _b64(MasterKey(master_raw).wrap(lookup_key)),
    }
    answer = _open_with_libsodium_js(node, request)

    assert answer["texts"] == TEXTS
    assert answer["blind_indexes"] == [_b64(blind_index(lookup_key, a)) for a in ADDRESSES]
    assert answer["master_plaintext"] == _b64(lookup_key)
    assert (answer["kdf"]["opslimit"], answer["kdf"]["memlimit"]) == KDF_LEVELS["min"]


CSV = "telefon;ad;şehir;consent\n0532 111 22 33;Şükrü Çağlayan;İğdır;granted\n"
REPLY = "Kampanya ne zaman? Çok güzel 👍"


async def test_interop_opens_service_written_data(tenant):
    """The running service writes a contact (CSV import), its data keys, a list name, an
    inbound reply (sandbox) and a sealed KVKK export; libsodium.js opens them from the
    database's bytes with only the passphrase and docs/crypto.md (tests/interop/
    open_service.mjs holds no izinli code)."""
    import sqlalchemy as sa
    from conftest import PASSPHRASE as TENANT_PASSPHRASE

    from dashboard.keys import db_key
    from store.tables import contact_lists, contacts, data_keys, inbound_messages, tenants

    node = _node()
    await tenant.unlock()
    r = await tenant.call("POST", "/lists", json={"name": "Kış müşterileri"})
    assert r.status == 201, await r.text()
    list_id = (await r.json())["id"]
    r = await tenant.call("POST", "/contacts/import", data=CSV.encode(),
                          params={"list_id": list_id, "filename": "kış-kampanyası.csv"},
                          headers={"Content-Type": "text/csv"})
    assert r.status == 200 and (await r.json())["imported"] == 1, await r.text()
    line = next(x for x in (await (await tenant.call("GET", "/lines")).json())["lines"]
                if x["channel"] == "sandbox")
    r = await tenant.call("POST", "/sandbox/inbound",
                          json={"line_id": line["id"], "from": "+905321112233", "text": REPLY})
    assert r.status == 200, await r.text()
    r = await tenant.call("GET", "/subjects/export",
                          params={"address": "+905321112233", "sealed": "true"})
    assert r.status == 200, await r.text()
    exported = await r.json()

    async with tenant.client.app[db_key].connect() as conn:
        wrapped = (await conn.execute(sa.select(tenants.c.wrapped_secret).where(
            tenants.c.id == tenant.id))).scalar_one()
        keys = [(bytes(k.id), bytes(k.sealed)) for k in await conn.execute(
            sa.select(data_keys.c.id, data_keys.c.sealed).where(
                data_keys.c.tenant_id == tenant.id))]
        person = (await conn.execute(sa.select(contacts).where(
            contacts.c.tenant_id == tenant.id))).one()
        list_name = (await conn.execute(sa.select(contact_lists.c.name_sealed).where(
            contact_lists.c.id == list_id))).scalar_one()
        reply = (await conn.execute(sa.select(inbound_messages.c.text_sealed).where(
            inbound_messages.c.tenant_id == tenant.id))).scalar_one()
    answer = _open_with_libsodium_js(node, {
        "script": "open_service.mjs",
        "passphrase": unicodedata.normalize("NFD", TENANT_PASSPHRASE),
        "wrapped_secret": _b64(bytes(wrapped)),
        "data_keys": [[_b64(i), _b64(s)] for i, s in keys],
        "fields": {"address": _b64(bytes(person.address_sealed)),
                   "name": _b64(bytes(person.name_sealed)),
                   "attributes": _b64(bytes(person.attributes_sealed)),
                   "list_name": _b64(bytes(list_name)),
                   "reply": _b64(bytes(reply))},
        "sealed_export": exported,
    })

    fields = answer["fields"]
    assert (fields["address"], fields["name"], fields["list_name"], fields["reply"]) == (
        "+905321112233", "Şükrü Çağlayan", "Kış müşterileri", REPLY)
    assert json.loads(fields["attributes"]) == {"sehir": "İğdır"}
    inner = answer["export"]
    assert inner["format"] == "izinli.subject-export.v1"
    assert inner["address"] == "+905321112233"
    held = inner["held"]
    assert held["contact"]["name"] == "Şükrü Çağlayan"
    assert json.loads(held["contact"]["attributes"]) == {"sehir": "İğdır"}
    assert [x["name"] for x in held["contact"]["lists"]] == ["Kış müşterileri"]
    evidence = json.loads(held["consents"][0]["evidence"])
    assert (evidence["address"], evidence["file"]) == ("+905321112233", "kış-kampanyası.csv")
    assert held["replies_received"] == 1
