"""A copy of the database or the logs reveals nothing: sealed fields, keys, passphrases and
API keys never appear in plaintext in the SQLite file, its WAL, or any log line."""
from __future__ import annotations

import base64
import logging

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

import accounts
from dashboard.keys import db_key, fields_key, keyring_key, master_key
from izinli import config as configuration
from izinli.app import create_app
from izinli.logs import JsonFormatter

PASSPHRASE = "doğru at pil zımba 42"
PLAINTEXTS = ["+905321112233", "Şükrü Çağlayan", "Kampanya: %20 indirim, İstanbul şubesi"]
# Names a business types (issue 17 item 2): sealed like contact fields.
NAMES = {"list_name": "Kış müşterileri listesi", "campaign_name": "Bahar kampanyası Ağrı",
         "line_name": "Mağaza hattı Çorlu", "api_key_name": "Muhasebe anahtarı Iğdır",
         "import_file_name": "gizli-müşteriler-ocak.csv",
         "list_name_unlocked": "Sadık müşteriler Şişli",
         # A consent source in the business's own words (CSV column, API): only in evidence.
         "csv_consent_source": "Nişantaşı mağaza formu", "api_consent_source": "Bağdat şubesi"}

scratch = sa.Table("scratch_fields", sa.MetaData(),
                   sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("blob", sa.LargeBinary, nullable=False))


def _forms(secret: bytes | str) -> list[bytes]:
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    forms = [raw, raw.hex().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
    if isinstance(secret, str):
        forms += [secret.encode("utf-16-le"), secret.encode("unicode_escape")]
    return [f.rstrip(b"=") for f in forms]


def _hits(haystack: bytes, secrets: dict[str, bytes | str]) -> list[str]:
    return [name for name, s in secrets.items() for f in _forms(s) if f in haystack]


@pytest.fixture
def sqlite_config(tmp_path, monkeypatch):
    monkeypatch.delenv("IZINLI_MASTER_KEY", raising=False)
    return configuration.load(None, env={}, overrides={"data_dir": tmp_path / "var",
                                                       "crypto.kdf": "min"})


async def _full_cycle(app, client) -> dict[str, bytes | str]:
    """Create, unlock, seal (locked and unlocked writers), open; returns every secret used."""
    db, fields = app[db_key], app[fields_key]
    tenant_id, api_key = await accounts.create_tenant(db, app[master_key], "Örnek", PASSPHRASE,
                                                      kdf="min")
    row = await accounts.tenant_row(db, tenant_id)
    locked_writer = await fields.new_sealer(tenant_id, row.public_key)  # an import while locked
    r = await client.post("/api/v1/vault/unlock", json={"passphrase": PASSPHRASE},
                          headers={"Authorization": f"Bearer {api_key}"})
    assert r.status == 204
    unlocked_writer = await fields.new_sealer(tenant_id, row.public_key)
    await _names(client, api_key)
    blobs = [w.seal_field(p.encode()) for w in (locked_writer, unlocked_writer) for p in PLAINTEXTS]
    async with db.begin() as conn:
        await conn.run_sync(lambda sync: scratch.create(sync))
        await conn.execute(scratch.insert(), [{"blob": b} for b in blobs])
    async with db.connect() as conn:
        stored = [bytes(b) for b in (await conn.execute(sa.select(scratch.c.blob))).scalars()]
    opened = await fields.open_fields(tenant_id, stored)
    assert [o.decode() for o in opened] == PLAINTEXTS * 2
    unlocked = app[keyring_key].get(tenant_id)
    secrets = {"passphrase": PASSPHRASE, "api_key": api_key,
               "api_key_secret": api_key.split("_", 2)[2],
               "tenant_secret_key": unlocked.secret_key(),
               "lookup_key": unlocked.lookup_key(row.sealed_lookup_key),  # the tenant's
               "dek_locked_writer": locked_writer._dek, "dek_unlocked": unlocked_writer._dek}
    secrets.update({f"plaintext_{i}": p for i, p in enumerate(PLAINTEXTS)})
    return secrets | NAMES


async def _names(client, api_key: str) -> None:
    """Lists, a line, an API key and a campaign named through the API, and a CSV imported
    under a file name (the import needs the lookup key: unlocked); all must be sealed."""
    auth = {"Authorization": f"Bearer {api_key}"}

    async def call(method: str, path: str, status: int, **kw) -> dict:
        r = await client.request(method, "/api/v1" + path, headers=auth | kw.pop("headers", {}),
                                 **kw)
        assert r.status == status, await r.text()
        return await r.json()

    line = await call("POST", "/lines", 201, json={"channel": "sandbox",
                                                  "name": NAMES["line_name"]})
    listed = await call("POST", "/lists", 201, json={"name": NAMES["list_name"]})
    await call("POST", "/lists", 201, json={"name": NAMES["list_name_unlocked"]})
    await call("POST", "/api-keys", 201, json={"name": NAMES["api_key_name"]})
    await call("POST", "/contacts/import", 200,
               data=f"telefon;consent;kaynak\n05321110000;granted;{NAMES['csv_consent_source']}\n"
               .encode(),
               params={"list_id": listed["id"], "filename": NAMES["import_file_name"]},
               headers={"Content-Type": "text/csv"})
    await call("POST", "/campaigns", 201, json={
        "name": NAMES["campaign_name"], "line_id": line["id"], "list_id": listed["id"],
        "template": "Merhaba {{name}}"})
    await call("POST", "/consents", 201, json={
        "address": "05321110001", "channel": "sandbox", "status": "granted",
        "source": NAMES["api_consent_source"], "evidence": "form"})
    lists = (await call("GET", "/lists", 200))["lists"]
    assert {x["name"] for x in lists} >= {NAMES["list_name"], NAMES["list_name_unlocked"]}


async def test_database_file_and_wal_hold_no_plaintext(sqlite_config):
    app = create_app(sqlite_config)
    async with TestClient(TestServer(app)) as client:
        secrets = await _full_cycle(app, client)
        db_file = sqlite_config.data_dir / "izinli.db"
        files = [db_file, db_file.with_name("izinli.db-wal")]
        raw = b"".join(f.read_bytes() for f in files if f.exists())
        assert files[1].exists() and files[1].stat().st_size > 0, "WAL should hold recent writes"
    raw += db_file.read_bytes()  # after close: checkpointed into the main file
    assert b"scratch_fields" in raw  # the scan really reads the database
    assert _hits(raw, secrets) == []


async def test_logs_of_a_full_cycle_hold_no_secret(sqlite_config, caplog):
    caplog.set_level(logging.DEBUG)
    app = create_app(sqlite_config)
    async with TestClient(TestServer(app)) as client:
        secrets = await _full_cycle(app, client)
        await client.post("/api/v1/vault/unlock", json={"passphrase": "yanlış " + PASSPHRASE},
                          headers={"Authorization": f"Bearer {secrets['api_key']}"})
        await client.post("/api/v1/vault/lock",
                          headers={"Authorization": f"Bearer {secrets['api_key']}"})
    assert caplog.records, "the cycle should have logged something"
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records).encode()
    assert b"vault unlocked" in text
    assert _hits(text, secrets) == []
