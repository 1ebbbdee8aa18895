"""`izinli bench webhooks`: signed WhatsApp status webhooks against a real `izinli` app on
loopback (signature check, parse, outbox status update per request): requests/s and latency
percentiles at a given concurrency."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.whatsapp import WhatsAppCredentials
from campaigns import service
from campaigns.lines import add_provider_line
from campaigns.service import NewCampaign
from dashboard.keys import (
    credentials_key,
    db_key,
    directory_key,
    fields_key,
    keyring_key,
    master_key,
)
from izinli import config as configuration
from izinli.app import create_app
from store import raw

SECRET = "bench-app-secret"
PHONE_NUMBER_ID = "106540352242922"


def _status_body(row_id: int, phone: str) -> bytes:
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "905320000000",
                         "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [{"id": f"wamid.bench{row_id}", "status": "delivered",
                          "timestamp": str(int(time.time())), "recipient_id": phone,
                          "biz_opaque_callback_data": str(row_id)}]}}]}]}
    return json.dumps(payload).encode()


async def _prepare(app: web.Application, n: int) -> tuple[str, list[int]]:
    """A tenant, a WhatsApp line and a campaign whose n outbox rows are `sent`."""
    from bench.dispatch import World
    db = app[db_key]
    world = World()
    world.db, world.keyring, world.fields = db, app[keyring_key], app[fields_key]
    world.directory = app[directory_key]
    import accounts
    world.tenant_id, _ = await accounts.create_tenant(db, app[master_key], "Bench",
                                                      "bench passphrase 1", kdf="min")
    await accounts.unlock(db, world.keyring, world.tenant_id, "bench passphrase 1", 3600)
    async with db.connect() as conn:
        world.profile = await world.directory.profile(conn, world.tenant_id)
        world.index_of = await world.directory.indexer(conn, world.tenant_id)
    world.sealer = await world.fields.new_sealer(world.tenant_id, world.profile.public_key)
    list_id = await world.audience(n)
    creds = WhatsAppCredentials(PHONE_NUMBER_ID, "token", SECRET, "verify")
    async with db.begin() as conn:
        line = await add_provider_line(conn, world.tenant_id, "whatsapp", "bench", 80.0,
                                       app[credentials_key].wrap(creds.to_json()))
        cid = await service.create(conn, world.tenant_id, NewCampaign(
            "bench", line.id, list_id, "informational", "x"), world.sealer)
        await service.transition(conn, world.tenant_id, cid, "start")
        await service.set_state(conn, [cid], "paused", "bench", only_from=("running",))
        await raw.execute(conn, "UPDATE outbox SET state = 'sent', sent_at = ? "
                                "WHERE campaign_id = ?", (time.time(), cid))
        ids = [r[0] for r in await raw.fetch(conn, "SELECT id FROM outbox WHERE campaign_id = ?",
                                             (cid,))]
    return line.id, ids


def _serve(data_dir: str, requests: int, ready, url: str | None = None) -> None:
    """The server process: the app on a free loopback port, prepared with `requests` rows,
    on the database `url` (default: SQLite in `data_dir`)."""
    async def main() -> None:
        cfg = configuration.load(None, env={}, overrides={"data_dir": Path(data_dir),
                                                          "crypto.kdf": "min",
                                                          "store.url": url})
        app = create_app(cfg)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        line_id, ids = await _prepare(app, requests)
        ready.put((port, line_id, ids))
        await asyncio.Event().wait()
    asyncio.run(main())


async def bench_webhooks(requests: int, concurrency: int, server_url: str | None = None) -> dict:
    """The server runs in its own process, as in production; this process only sends. On
    PostgreSQL (IZINLI_DATABASE_URL) in a database created for the run and dropped after."""
    from bench.dispatch import kind_of, scratch_database
    kind = kind_of(server_url) if server_url else "sqlite"
    async with scratch_database(kind, server_url) as url:
        return await _bench_webhooks(requests, concurrency, url if server_url else None, kind)


async def _bench_webhooks(requests: int, concurrency: int, url: str | None, kind: str) -> dict:
    import multiprocessing
    # A throwaway key: a bench never leaves a key file in the user's config dir.
    os.environ["IZINLI_MASTER_KEY"] = secrets.token_hex(32)
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        ready = context.Queue()
        server = context.Process(target=_serve, args=(str(Path(tmp) / "var"), requests, ready,
                                                      url), daemon=True)
        server.start()
        try:
            port, line_id, ids = await asyncio.to_thread(ready.get, True, 120)
            figures = await _fire(f"http://127.0.0.1:{port}/webhooks/whatsapp/{line_id}", ids,
                                  concurrency)
        finally:
            server.terminate()
            server.join(10)
    print(f"webhooks ({kind}): {requests:,} signed status webhooks, concurrency {concurrency}: "
          f"{figures['per_s']:,.0f} requests/s; latency p50 {figures['p50_ms']:.1f} ms, "
          f"p99 {figures['p99_ms']:.1f} ms; non-200 answers: {figures['errors']}; "
          f"outbox rows updated: {figures['handled']:,}")
    return figures


async def _fire(url: str, ids: list[int], concurrency: int) -> dict:
    bodies = [_status_body(i, "905320000001") for i in ids]
    latencies: list[float] = []
    errors = handled = 0
    queue = iter(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, handled
        for body in queue:
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            started = time.perf_counter()
            async with session.post(url, data=body, headers={
                    "X-Hub-Signature-256": signature,
                    "Content-Type": "application/json"}) as response:
                answer = await response.json()
                errors += response.status != 200
                handled += answer.get("handled", 0) if response.status == 200 else 0
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"per_s": len(bodies) / elapsed, "errors": errors, "handled": handled,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}
