"""Backup and restore (issue 17 item 5): `izinli backup` copies a running service's SQLite
database consistently (never the master key), `izinli restore` fills an empty data dir only,
and the restored data opens with the passphrase."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from conftest import NOWHERE, PASSPHRASE, ApiTenant

import accounts
from dashboard.keys import db_key, master_key
from izinli import config as configuration
from izinli.app import create_app

IZINLI = shutil.which("izinli") or str(Path(sys.executable).with_name("izinli"))
CSV = "telefon;ad;izin\n" + "".join(f"0532 444 56 {i:02d};Kişi {i};evet\n" for i in range(50))


def _config(data_dir: Path) -> configuration.Config:
    return configuration.load(None, env={}, overrides={
        "data_dir": data_dir, "crypto.kdf": "min", "server.telegram_poll_seconds": 1,
        **{f"providers.{name}_url": NOWHERE for name in ("whatsapp", "telegram", "iys")}})


async def _izinli(tmp_path: Path, *args: str, env: dict | None = None):
    full = {k: v for k, v in os.environ.items()
            if k not in ("IZINLI_MASTER_KEY", "IZINLI_DATABASE_URL")}
    full.update({"IZINLI_KDF": "min", **(env or {})})
    proc = await asyncio.create_subprocess_exec(
        IZINLI, *args, cwd=tmp_path, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_backup_restore_roundtrip(tmp_path, aiohttp_client):
    running = await aiohttp_client(create_app(_config(tmp_path / "var")))
    tenant_id, api_key = await accounts.create_tenant(
        running.app[db_key], running.app[master_key], "Örnek Mağaza", PASSPHRASE, kdf="min")
    tenant = ApiTenant(running, tenant_id, api_key)
    await tenant.unlock()
    r = await tenant.call("POST", "/contacts/import", data=CSV.encode(),
                          headers={"Content-Type": "text/csv"})
    assert r.status == 200 and (await r.json())["imported"] == 50, await r.text()

    async def keep_writing():  # the service goes on while the copy is made
        while True:
            await tenant.call("POST", "/vault/unlock", json={"passphrase": PASSPHRASE})
    writer = asyncio.create_task(keep_writing())
    try:
        code, out, err = await _izinli(tmp_path, "backup", "copy.tgz", "--data-dir", "var")
    finally:
        writer.cancel()
    assert code == 0, err
    assert json.loads(out)["master_key_included"] is False and "NOT in the backup" in err
    with tarfile.open(tmp_path / "copy.tgz") as tar:
        names = set(tar.getnames())
    assert "izinli.db" in names and not any("master" in n for n in names)
    assert oct((tmp_path / "copy.tgz").stat().st_mode & 0o777) == oct(0o600)

    code, out, err = await _izinli(tmp_path, "restore", "copy.tgz", "--data-dir", "fresh")
    assert code == 0, err
    assert json.loads(out)["files"][0] == "izinli.db"
    restored = await aiohttp_client(create_app(_config(tmp_path / "fresh")))
    back = ApiTenant(restored, tenant_id, api_key)
    r = await back.call("GET", "/contacts", params={"address": "+905324445607"})
    assert r.status == 423  # a restore opens nothing by itself
    await back.unlock()  # the passphrase (and the same master key, kept apart) open it
    r = await back.call("GET", "/contacts", params={"address": "+905324445607"})
    assert r.status == 200 and (await r.json())["name"] == "Kişi 7"


async def test_restore_only_into_an_empty_data_dir_and_no_backup_on_postgresql(tmp_path):
    taken = tmp_path / "var"
    taken.mkdir()
    (taken / "izinli.db").write_bytes(b"mine")
    (tmp_path / "copy.tgz").write_bytes(b"whatever")
    code, _, err = await _izinli(tmp_path, "restore", "copy.tgz", "--data-dir", "var")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "empty data dir" in err
    assert (taken / "izinli.db").read_bytes() == b"mine"
    code, _, err = await _izinli(tmp_path, "restore", "copy.tgz", "--data-dir", "other")
    assert code == 2 and "not an izinli backup" in err
    assert not any((tmp_path / "other").glob("*"))  # nothing half-restored
    code, _, err = await _izinli(tmp_path, "backup", "pg.tgz", env={
        "IZINLI_DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:9/none"})
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pg_dump" in err
    assert not (tmp_path / "pg.tgz").exists()
