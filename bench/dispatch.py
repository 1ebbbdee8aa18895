"""Dispatch benchmarks.

`izinli bench dispatch --recipients N`: msgs/s of the real dispatcher on an unthrottled sandbox
line (gate, decrypt, render, throttle, send, record), against a floor measured in the same run —
the same claim query, two field decrypts and a status write per message, in raw aiosqlite +
PyNaCl — plus outbox build time and peak RSS.
`izinli bench throttle`: 20 sandbox lines that enforce 80 msg/s each (429 beyond), driven by
the dispatcher for a while: achieved rate against the allowed one, and the 429 count."""
from __future__ import annotations

import asyncio
import os
import resource
import tempfile
import time
from pathlib import Path

import aiosqlite
import nacl.bindings

import accounts
from bot.sandbox import SandboxChannel
from campaigns import service
from campaigns.audiences import create_list
from campaigns.dispatcher import Dispatcher, DispatchSettings
from campaigns.lines import add_sandbox_line
from campaigns.service import NewCampaign
from crypto.master import MasterKey
from crypto.service import FieldCrypto
from crypto.vault import Keyring
from optout.tenants import TenantDirectory
from optout.watch import RevocationWatch
from store.engine import Database, open_database
from store.ids import new_id
from store.migrate import upgrade
from store.tables import consent_state, contacts, list_members
from store.tenants import SqlDataKeyStore

PASSPHRASE = "bench passphrase 1"
CHUNK = 20_000


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class World:
    """A tenant with an unlocked vault and a dispatcher over one database."""

    async def open(self, url: str) -> World:
        self.db: Database = open_database(url)
        await upgrade(self.db)
        master = MasterKey(os.urandom(32), source="bench")
        self.tenant_id, _ = await accounts.create_tenant(self.db, master, "Bench Mağaza",
                                                         PASSPHRASE, kdf="min")
        self.keyring = Keyring()
        await accounts.unlock(self.db, self.keyring, self.tenant_id, PASSPHRASE, 86400)
        self.fields = FieldCrypto(self.keyring, SqlDataKeyStore(self.db))
        self.directory = TenantDirectory(master)
        self.sandbox = SandboxChannel(self.db, self.fields, self.directory)
        self.dispatcher = Dispatcher(self.db, self.fields, self.directory,
                                     {"sandbox": self.sandbox}, RevocationWatch(),
                                     DispatchSettings())
        async with self.db.connect() as conn:
            self.profile = await self.directory.profile(conn, self.tenant_id)
            self.index_of = await self.directory.indexer(conn, self.tenant_id)
        self.sealer = await self.fields.new_sealer(self.tenant_id, self.profile.public_key)
        return self

    async def audience(self, n: int, offset: int = 0) -> str:
        """n consented contacts in a new list, written directly (setup, not measured)."""
        async with self.db.begin() as conn:
            list_id = (await create_list(conn, self.tenant_id, f"bench-{offset}"))["id"]
        for start in range(offset, offset + n, CHUNK):
            await self._chunk(list_id, range(start, min(offset + n, start + CHUNK)))
        return list_id

    async def _chunk(self, list_id: str, numbers: range) -> None:
        seal, now = self.sealer.seal_field, time.time()
        people, members, states = [], [], []
        for i in numbers:
            phone = f"+90532{i:07d}"
            index, cid = self.index_of(phone), new_id()
            people.append({"id": cid, "tenant_id": self.tenant_id, "address_index": index,
                           "address_sealed": seal(phone.encode()),
                           "name_sealed": seal(f"Müşteri {i}".encode()),
                           "attributes_sealed": None, "created_at": now, "updated_at": now,
                           "erased_at": None})
            members.append({"list_id": list_id, "contact_id": cid})
            states.append({"tenant_id": self.tenant_id, "address_index": index,
                           "consent_type": "MESAJ", "status": "granted",
                           "recipient_type": "individual", "source": "HS_WEB",
                           "occurred_at": now, "event_id": cid})
        async with self.db.begin() as conn:
            await conn.execute(contacts.insert(), people)
            await conn.execute(list_members.insert(), members)
            await conn.execute(consent_state.insert(), states)

    async def line(self, rate: float, simulate: dict | None = None) -> str:
        async with self.db.begin() as conn:
            return (await add_sandbox_line(conn, self.tenant_id, f"bench-{rate}", rate,
                                           simulate)).id

    async def campaign(self, line_id: str, list_id: str) -> tuple[str, float]:
        """A started campaign and how long the start (outbox build) took."""
        spec = NewCampaign("bench", line_id, list_id, "informational", "Merhaba {{name}}")
        async with self.db.begin() as conn:
            cid = await service.create(conn, self.tenant_id, spec, self.sealer)
        started = time.perf_counter()
        async with self.db.begin() as conn:
            await service.transition(conn, self.tenant_id, cid, "start")
        return cid, time.perf_counter() - started


async def _dispatch(world: World, line_id: str) -> None:
    while await world.dispatcher.pump(line_id):
        pass


async def _floor(world: World, db_path: Path, campaign_id: str, dek: bytes) -> float:
    """Claim + two decrypts + status write per message, raw aiosqlite + PyNaCl."""
    sent, started = 0, time.perf_counter()
    async with aiosqlite.connect(db_path) as raw:
        while True:
            cursor = await raw.execute(
                "SELECT o.id, c.address_sealed, c.name_sealed FROM outbox o JOIN contacts c "
                "ON c.id = o.contact_id WHERE o.campaign_id = ? AND o.state = 'pending' "
                "ORDER BY o.id LIMIT 1000", (campaign_id,))
            rows = await cursor.fetchall()
            if not rows:
                break
            updates = []
            for row_id, address, name in rows:
                for blob in (address, name):
                    nacl.bindings.crypto_secretbox_open(blob[41:], blob[17:41], dek)
                updates.append(("sent", time.time(), row_id))
            await raw.executemany("UPDATE outbox SET state = ?, sent_at = ? WHERE id = ?",
                                  updates)
            await raw.commit()
            sent += len(rows)
    return sent / (time.perf_counter() - started)


async def bench_dispatch(sizes: list[int]) -> dict:
    figures = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            db_path = Path(tmp) / "bench.db"
            world = await World().open(f"sqlite+aiosqlite:///{db_path}")
            list_id = await world.audience(n)
            line_id = await world.line(1_000_000)
            _cid, build = await world.campaign(line_id, list_id)
            started = time.perf_counter()
            await _dispatch(world, line_id)
            ours = n / (time.perf_counter() - started)
            floor_cid, _ = await world.campaign(await world.line(1_000_000), list_id)
            floor = await _floor(world, db_path, floor_cid, world.sealer._dek)
            figures[n] = {"msgs_per_s": ours, "floor_per_s": floor, "ratio": ours / floor,
                          "outbox_build_s": build, "peak_rss_mb": rss_mb()}
            print(f"dispatch {n:,} recipients: {ours:,.0f} msgs/s; floor {floor:,.0f} msgs/s; "
                  f"ratio {ours / floor:.2f}; outbox built in {build:.2f} s; "
                  f"peak RSS so far {rss_mb():.0f} MB", flush=True)
            await world.db.close()
    if len(sizes) > 1:
        growth = figures[sizes[-1]]["peak_rss_mb"] - figures[sizes[0]]["peak_rss_mb"]
        print(f"dispatch peak RSS growth {sizes[0]:,} → {sizes[-1]:,}: {growth:.0f} MB")
    return figures


async def bench_throttle(lines: int, rate: float, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        world = await World().open(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        per_line = int(rate * seconds)
        jobs = []
        for i in range(lines):
            list_id = await world.audience(per_line, offset=i * per_line)
            line_id = await world.line(rate, {"enforced_rate_per_second": rate})
            cid, _ = await world.campaign(line_id, list_id)
            jobs.append((line_id, cid))
        started = time.perf_counter()
        await asyncio.gather(*(_dispatch(world, line_id) for line_id, _ in jobs))
        elapsed = time.perf_counter() - started
        async with world.db.connect() as conn:
            sent = []
            for _, cid in jobs:
                row = await service.get(conn, world.tenant_id, cid)
                sent.append((await service.status(conn, row))["counts"]["sent"])
        await world.db.close()
    # What a provider enforcing `rate` with a half-second burst admits in `elapsed` seconds.
    allowed = rate * elapsed + max(1.0, rate * 0.5)
    achieved = [s / allowed for s in sent]
    print(f"throttle: {lines} lines × {rate:g} msg/s for {elapsed:.1f} s: achieved "
          f"{min(achieved):.1%} (worst line) / {sum(achieved) / lines:.1%} (mean) of the "
          f"allowed rate; {world.sandbox.rate_limited} answers were 429; "
          f"{sum(sent):,} messages sent")
    return {"min": min(achieved), "mean": sum(achieved) / lines,
            "rate_limited": world.sandbox.rate_limited}
