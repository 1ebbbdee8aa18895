"""After an import and a STOP, the SQLite file and its WAL hold no phone number, name,
attribute or message text in plaintext."""
import base64
from pathlib import Path

from sqlalchemy.engine import make_url

from dashboard.keys import db_key

CSV = ("telefon;ad soyad;şehir;not\n"
       "0532 765 43 21;Zeynep Yıldırımoğlu;Eskişehir;VIP müşteri kartı 4471\n"
       "0533 765 43 22;Gökhan Çelikkaya;Kırıkkale;\n")
SECRETS = ["+905327654321", "5327654321", "905327654321", "Zeynep Yıldırımoğlu",
           "Gökhan Çelikkaya", "Eskişehir", "Kırıkkale", "VIP müşteri kartı 4471", "İPTAL lütfen"]


async def test_nothing_personal_in_plaintext_after_import(tenant, config):
    if tenant.client.app[db_key].dialect != "sqlite":
        import pytest
        pytest.skip("scans the SQLite file")
    await tenant.unlock()
    r = await tenant.call("POST", "/contacts/import", data=CSV.encode("cp1254"),
                          headers={"Content-Type": "text/csv"})
    assert (await r.json())["imported"] == 2
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    await tenant.call("POST", "/sandbox/inbound", json={"line_id": line, "from": "05327654321",
                                                        "text": "İPTAL lütfen"})
    db_file = Path(make_url(config.database_url).database)
    raw = b"".join(p.read_bytes() for p in (db_file, db_file.with_name("izinli.db-wal"))
                   if p.exists())
    assert b"consent_events" in raw
    for secret in SECRETS:
        for enc in ("utf-8", "cp1254", "utf-16-le"):
            needle = secret.encode(enc, errors="ignore")
            assert needle not in raw, (secret, enc)
            assert base64.b64encode(needle) not in raw
