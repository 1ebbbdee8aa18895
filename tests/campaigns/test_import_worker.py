"""A CSV import prepared in a worker process (campaigns.forked; every file here, with
campaigns.import_worker_min_kb = 0) lands exactly as one prepared in the server process:
the same answer, the same sealed contacts and consents, refusals kept; file errors are the
same 400s; the worker is gone when the import ends."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ApiTenant
from real_server import Api, free_port, serve

import accounts
from campaigns.audiences import BATCH, ContactImporter, ImportSource
from dashboard.keys import db_key, directory_key, fields_key, master_key
from store.tables import consent_events, consent_state, contacts

IZINLI = shutil.which("izinli") or str(Path(sys.executable).with_name("izinli"))
# Rows over two batches, so the worker streams more than one; invalid rows and a person twice.
ROWS = BATCH + 40


def _file() -> bytes:
    lines = ["Telefon;Ad Soyad;Şehir;consent;consent_date"]
    for i in range(ROWS):
        consent = ("evet", "hayır", "", "belki")[i % 4]
        date = "2026-01-0" + str(1 + i % 9) if i % 3 == 0 else ""
        phone = "abc" if i % 997 == 5 else f"0532 {i // 10000:03d} {i % 10000:04d}"
        lines.append(f"{phone};Şükrü Çağlayan {i};İzmir;{consent};{date}")
    lines.append("0532 000 0001;İkinci Kez;Muğla;evet;")  # the second row of one person
    return ("\n".join(lines) + "\n").encode("cp1254")


@pytest.fixture
def config(config):
    return dataclasses.replace(config, campaigns=dataclasses.replace(
        config.campaigns, import_worker_min_kb=0))


async def _import(t: ApiTenant, body: bytes) -> tuple[int, dict]:
    r = await t.call("POST", "/contacts/import", data=io.BytesIO(body),
                     headers={"Content-Type": "text/csv"})
    return r.status, await r.json()


async def _landed(app, tenant_id: str) -> dict:
    """Each contact's opened phone, name and attributes, and each consent's state, by phone."""
    async with app[db_key].connect() as conn:
        rows = (await conn.execute(sa.select(
            contacts.c.address_index, contacts.c.address_sealed, contacts.c.name_sealed,
            contacts.c.attributes_sealed).where(contacts.c.tenant_id == tenant_id))).all()
        states = dict((await conn.execute(sa.select(
            consent_state.c.address_index, consent_state.c.status).where(
            consent_state.c.tenant_id == tenant_id))).all())
        events = (await conn.execute(sa.select(sa.func.count()).where(
            consent_events.c.tenant_id == tenant_id))).scalar_one()
    landed = {}
    for index, *sealed in rows:
        phone, name, attributes = (v.decode() for v in await app[fields_key].open_fields(
            tenant_id, [bytes(b) for b in sealed]))
        landed[phone] = (name, json.loads(attributes), states.get(index))
    return {"contacts": landed, "events": events}


async def test_a_worker_import_lands_as_an_import_in_the_server_process(client, tenant):
    app = client.app
    await tenant.unlock()
    inline_id, _ = await accounts.create_tenant(app[db_key], app[master_key], "Aynı Dosya",
                                                "another passphrase 9", kdf="min")
    await accounts.unlock(app[db_key], app[fields_key].keyring, inline_id,
                          "another passphrase 9", 3600)
    body = _file()

    status, forked = await _import(tenant, body)
    assert status == 200, forked
    inline = ContactImporter(app[db_key], app[fields_key], app[directory_key],
                             fork_above_bytes=None)
    result = (await inline.run(inline_id, None, io.BytesIO(body),
                               ImportSource("upload.csv", "test"))).as_json()

    assert forked == result
    assert forked["imported"] == ROWS - forked["invalid_total"]
    assert forked["updated"] == 1 and forked["encoding"] == "cp1254"
    assert {i["reason"] for i in forked["invalid"]} == {"invalid_phone", "invalid_consent"}
    assert await _landed(app, tenant.id) == await _landed(app, inline_id)


async def test_a_worker_reimport_keeps_a_refusal(client, tenant):
    await tenant.unlock()
    body = _file()
    assert (await _import(tenant, body))[0] == 200
    r = await tenant.call("POST", "/consents", json={
        "address": "+905320000001", "channel": "sandbox", "status": "revoked",
        "source": "HS_WEB", "evidence": "aradı, istemiyor"})
    assert r.status in (200, 201), await r.text()

    status, again = await _import(tenant, body)

    assert status == 200, again
    assert again["imported"] == 0 and again["kept_refusal"] >= 1
    assert {"row": ROWS + 2, "reason": "refused_earlier"} in again["skipped"]
    r = await tenant.call("GET", "/gate", params={"address": "+905320000001",
                                                  "channel": "sandbox"})
    assert (await r.json())["reason"] == "opted_out"


async def test_file_errors_from_the_worker_are_the_same_400s(tenant):
    await tenant.unlock()
    status, res = await _import(tenant, "ad,şehir\nElif,İzmir\n".encode())
    assert status == 400 and res["error"]["code"] == "no_phone_column"
    assert "phone" in res["error"]["message"]
    too_long = b"telefon;ad\n05321112233;Elif\n05321112234;" + b"x" * (1 << 20 + 1) + b"\n"
    status, res = await _import(tenant, too_long)
    assert status == 400 and res["error"]["code"] == "csv_format"
    assert res["error"]["message"] == "line 3: line is longer than 1 MiB"
    r = await tenant.call("GET", "/gate", params={"address": "+905321112233",
                                                  "channel": "sandbox"})
    assert (await r.json())["reason"] == "no_consent"


async def test_no_worker_is_left_behind(tenant):
    await tenant.unlock()
    before = _children()
    assert (await _import(tenant, _file()))[0] == 200
    assert (await _import(tenant, b"ad\nElif\n"))[0] == 400
    assert _children() == before


def _children(parent: int | None = None) -> set[int]:
    """The child processes of `parent` (default: this process), zombies included: an
    unreaped worker shows here."""
    parent = os.getpid() if parent is None else parent
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill9_of_the_server_mid_import_takes_the_worker_with_it(tmp_path):
    """The server is killed (SIGKILL, the server alone, as the OOM killer would) while a
    worker prepares a large import: the worker ends at once (its pipe has no reader; that it
    keeps none of the server's descriptors is test_forked's), and the import runs again on a
    restarted server."""
    (tmp_path / "izinli.toml").write_text("[campaigns]\nimport_worker_min_kb = 0\n")
    args = ("--config", str(tmp_path / "izinli.toml"))
    env = {**os.environ, "IZINLI_KDF": "min"}
    env.pop("IZINLI_MASTER_KEY", None)
    env.pop("IZINLI_DATABASE_URL", None)
    (tmp_path / "pass").write_text("doğru at pil zımba 42")
    out = subprocess.run([IZINLI, "tenant", "create", "Çökme Testi", "--passphrase-file",
                          str(tmp_path / "pass"), "--data-dir", str(tmp_path / "var")],
                         env=env, capture_output=True, text=True, check=True)
    key = json.loads(out.stdout)["api_key"]
    rows = 150_000
    body = ("telefon;ad;consent\n" + "".join(
        f"0532{i:07d};Müşteri {i};evet\n" for i in range(rows))).encode()
    port = free_port()
    with serve(tmp_path, port, env, args) as proc:
        api = Api(port, key)
        api("POST", "/vault/unlock", {"passphrase": "doğru at pil zımba 42"})
        posting = threading.Thread(target=_post_quietly, args=(api, body), daemon=True)
        posting.start()
        deadline = time.monotonic() + 30
        while not (workers := _children(proc.pid)):
            assert time.monotonic() < deadline, "no worker process appeared"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers):
            assert time.monotonic() < deadline, "the worker outlived the server"
            time.sleep(0.05)
        posting.join(30)

    port = free_port()
    with serve(tmp_path, port, env, args):
        api = Api(port, key)
        api("POST", "/vault/unlock", {"passphrase": "doğru at pil zımba 42"})
        again = api("POST", "/contacts/import", body, "text/csv")
    assert again["imported"] + again["updated"] == rows and again["invalid_total"] == 0


def _post_quietly(api, body: bytes) -> None:
    with contextlib.suppress(AssertionError, OSError):
        api("POST", "/contacts/import", body, "text/csv")


async def test_imports_at_once_share_the_workers(client):
    """Three tenants import at once through an importer allowed one worker: one worker
    process at a time, and every import lands whole."""
    app = client.app
    importer = ContactImporter(app[db_key], app[fields_key], app[directory_key],
                               fork_above_bytes=0, max_workers=1)
    tenants = []
    for i in range(3):
        tenant_id, _ = await accounts.create_tenant(app[db_key], app[master_key], f"Dükkan {i}",
                                                    "another passphrase 9", kdf="min")
        await accounts.unlock(app[db_key], app[fields_key].keyring, tenant_id,
                              "another passphrase 9", 3600)
        tenants.append(tenant_id)
    body = _file()
    most = 0

    async def watch():
        nonlocal most
        while True:
            most = max(most, len(_children()))
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(importer.run(t, None, io.BytesIO(body),
                                                  ImportSource("upload.csv", "test"))
                                     for t in tenants))
    watcher.cancel()
    assert most == 1
    assert {r.imported for r in results} == {ROWS - results[0].invalid_total}


async def test_no_process_to_spare_the_import_runs_in_the_server(tenant, monkeypatch, caplog):
    """fork(2) refused (EAGAIN: the process limit): the import is prepared in the server
    process instead and lands whole; a warning says so."""
    await tenant.unlock()

    def refuse():
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refuse)
    status, res = await _import(tenant, _file())
    assert status == 200, res
    assert res["imported"] == ROWS - res["invalid_total"]
    assert "import worker unavailable" in caplog.text
