"""`izinli bench iys`: one İYS push draining N pending consent records (default 100,000)
against the fake İYS (tests/fakes/iys.py) served by a separate process on 127.0.0.1 with a
latency per request, a request rate limit (429 + Retry-After beyond it) and asynchronous bulk
processing. Prints records/s, the projected time for 100,000 records, the requests made, and
checks that every record reached the fake exactly once.

Issue 14 asks for 100,000 records uploaded within one hour of an unlock: the push timer runs
every `iys.pull_minutes` (15 by default), so the drain itself must take under 45 minutes."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp

import accounts
from crypto.master import MasterKey
from crypto.service import FieldCrypto
from crypto.vault import Keyring
from optout import ledger
from optout.deadlines import TZ
from optout.iys_push import PushSettings
from optout.iys_sync import IysSync
from optout.ledger import ConsentEvent
from optout.outbound import ADDRESS_FORMAT
from optout.tenants import TenantDirectory, update_settings
from optout.watch import RevocationWatch
from store.engine import Database, open_database
from store.migrate import upgrade
from store.tenants import SqlDataKeyStore

PASSPHRASE = "bench passphrase 1"
_FAKE = Path(__file__).resolve().parents[1] / "tests" / "fakes" / "iys.py"


def _load_fake():
    if not _FAKE.exists():
        raise RuntimeError(f"the fake İYS is not here ({_FAKE}); run from a source checkout")
    spec = importlib.util.spec_from_file_location("izinli_bench_fake_iys", _FAKE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def _serve_fake(port: int, options: dict, ready) -> None:
    """The fake İYS in its own process (its CPU is not the push's), plus a bench-only page
    listing how often each record was offered."""
    from aiohttp import web
    fake = _load_fake()
    state = fake.IysState(**options)

    async def received(_request):
        return web.json_response({"offered": sum(state.received.values()),
                                  "distinct": len(state.received),
                                  "twice": sum(1 for n in state.received.values() if n > 1),
                                  "accepted": len(state.entries),
                                  "status": _statuses(state)})

    async def main():
        app = fake.create_iys_app(state)
        app.router.add_get("/_bench/received", received)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()
    asyncio.run(main())


def _statuses(state) -> dict:
    counts: dict[str, int] = {}
    for request in state.requests:
        kind = ("bulk" if request.path.endswith("/request") else
                "poll" if "/request/" in request.path else
                "token" if request.path.endswith("/token") else "other")
        name = f"{kind} {request.status}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _setup(url: str, iys_url: str) -> tuple[Database, IysSync, str, Keyring, MasterKey]:
    fake = _load_fake()
    db = open_database(url)
    await upgrade(db)
    master = MasterKey(os.urandom(32), source="bench")
    tenant_id, _ = await accounts.create_tenant(db, master, "Bench İYS", PASSPHRASE, kdf="min")
    credentials = {"username": fake.USERNAME, "password": fake.PASSWORD,
                   "iys_code": fake.IYS_CODE, "brand_code": fake.BRAND_CODE}
    async with db.begin() as conn:
        await update_settings(conn, tenant_id, {
            "iys_enabled": True, "iys_code": fake.IYS_CODE, "iys_brand_code": fake.BRAND_CODE,
            "iys_credentials": master.wrap(json.dumps(credentials).encode()),
            "iys_credentials_format": ADDRESS_FORMAT})
    keyring = Keyring()
    fields = FieldCrypto(keyring, SqlDataKeyStore(db))
    sync = IysSync(db, master, TenantDirectory(master, keyring), fields, RevocationWatch(),
                   iys_url=iys_url, push_settings=PushSettings())
    return db, sync, tenant_id, keyring, master


async def _queue(sync: IysSync, tenant_id: str, n: int) -> None:
    """n consent events waiting for İYS (distinct numbers, source HS_WEB, 10 minutes old)."""
    async with sync.db.connect() as conn:
        profile = await sync.directory.profile(conn, tenant_id)
    at = time.time() - 600
    stamp = datetime.fromtimestamp(at, TZ).isoformat()
    for start in range(0, n, 10_000):
        sealer = await sync.fields.new_sealer(tenant_id, profile.public_key)
        events = []
        for i in range(start, min(n, start + 10_000)):
            number = f"+9053{i:08d}"
            evidence = {"statement": "web formu", "address": number, "source": "HS_WEB",
                        "at": stamp}
            events.append(ConsentEvent(
                address_index=sync.directory.index(tenant_id, number), consent_type="MESAJ",
                status="granted", source="HS_WEB", recipient_type="individual",
                occurred_at=at, evidence_sealed=sealer.seal_field(json.dumps(evidence).encode())))
        async with sync.db.begin() as conn:
            await ledger.record(conn, tenant_id, events, iys_enabled=True)


async def bench_iys(records: int, latency: float, rate: int, bulk_delay: float,
                    url: str | None) -> dict:
    port = _free_port()
    options = {"latency": latency, "rate_limit": rate or None, "bulk_delay": bulk_delay,
               "bulk_pending_polls": 0}
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=_serve_fake, args=(port, options, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the fake İYS did not start")
        with tempfile.TemporaryDirectory() as tmp:
            return await _run(records, url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}",
                              f"http://127.0.0.1:{port}", options)
    finally:
        server.terminate()
        server.join(5)


async def _run(records: int, url: str, iys_url: str, options: dict) -> dict:
    db, sync, tenant_id, keyring, _ = await _setup(url, iys_url)
    try:
        # Unlocked first: the blind-index key is the tenant's (issue 17).
        await accounts.unlock(db, keyring, tenant_id, PASSPHRASE, 3600)
        started = time.perf_counter()
        await _queue(sync, tenant_id, records)
        print(f"iys: queued {records:,} consent records in "
              f"{time.perf_counter() - started:.1f} s ({db.dialect})", flush=True)
        started = time.perf_counter()
        counts = await sync.push(tenant_id)
        elapsed = time.perf_counter() - started
    finally:
        await db.close()
    async with aiohttp.ClientSession() as session, \
            session.get(iys_url + "/_bench/received") as resp:
        seen = await resp.json()
    rate = counts.get("sent", 0) / elapsed if elapsed else 0.0
    figures = {"records": records, "seconds": elapsed, "records_per_s": rate,
               "projected_100k_minutes": 100_000 / rate / 60 if rate else None,
               "counts": counts, "fake": seen, "options": options}
    print(f"iys: pushed {counts.get('sent', 0):,} of {records:,} in {elapsed:.1f} s: "
          f"{rate:,.0f} records/s; 100,000 records in {100_000 / rate / 60:.1f} min "
          f"(target: under 45 min after the next push timer); latency "
          f"{options['latency'] * 1000:.0f} ms, rate limit {options['rate_limit']} req/s, "
          f"bulk processing {options['bulk_delay']:.1f} s", flush=True)
    print(f"iys: requests {seen['status']}; records offered {seen['offered']:,}, "
          f"accepted {seen['accepted']:,}, offered twice {seen['twice']}", flush=True)
    return figures
