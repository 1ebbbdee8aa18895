"""Dispatch benchmarks.

`izinli bench dispatch --recipients N [--databases sqlite,postgresql] [--repeat R]`: msgs/s of
the real dispatcher on an unthrottled sandbox line (claim, gate, decrypt, render, throttle,
send, record) against a floor measured in the same run, interleaved (pipeline, floor, then
floor, pipeline, …), over the same recipients. The floor is the database work the at-most-once
pipeline must do, with the bare driver (sqlite3 through aiosqlite; asyncpg) and rounds of the
pipeline's size: a claim that marks the rows `sending`, committed, and returns them with their
sealed fields; the gate read (consent and suppressions of the batch); two SecretBox opens per
row; one batched result write, committed. So the ratio is the framework's own overhead.
Medians of R runs, the load average, outbox build time and RSS are printed. PostgreSQL runs use
a database created on the server IZINLI_DATABASE_URL names and dropped after.
`izinli bench throttle`: 20 sandbox lines that enforce 80 msg/s each (429 beyond), driven by
the dispatcher for a while: achieved rate against the allowed one, and the 429 count."""
from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import resource
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import nacl.bindings
from sqlalchemy.engine import make_url

import accounts
from bot import registry
from bot.registry import BuildContext
from campaigns import service
from campaigns.audiences import create_list
from campaigns.dispatcher import Dispatcher, DispatchSettings
from campaigns.lines import add_sandbox_line
from campaigns.service import NewCampaign
from crypto.master import MasterKey
from crypto.service import FieldCrypto
from crypto.vault import Keyring
from optout.suppression import EVERYTHING
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
    """Peak RSS of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def kind_of(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


@asynccontextmanager
async def scratch_database(kind: str, server_url: str | None) -> AsyncIterator[str]:
    """A database URL for one bench run. SQLite: the database IZINLI_DATABASE_URL names when it
    is a SQLite one, else a temporary file. PostgreSQL: a database created for the run on the
    server `server_url` names (through its `postgres` database) and dropped after, so the
    bench never touches a database anything else uses."""
    if kind == "sqlite":
        if server_url and kind_of(server_url) == "sqlite":
            yield server_url
            return
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        return
    if not server_url or kind_of(server_url) != "postgresql":
        raise ValueError("PostgreSQL runs need IZINLI_DATABASE_URL=postgresql+asyncpg://…")
    from bench.cluster_fleet import connect
    name = f"izinli_bench_{secrets.token_hex(4)}"
    base = make_url(server_url).set(database="postgres")
    admin = await connect(base.render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class World:
    """A tenant with an unlocked vault and a dispatcher over one database."""

    async def open(self, url: str, cache_mb: int = 2) -> World:
        self.db: Database = open_database(url, sqlite_cache_mb=cache_mb)
        await upgrade(self.db)
        master = MasterKey(os.urandom(32), source="bench")
        self.tenant_id, _ = await accounts.create_tenant(self.db, master, "Bench Mağaza",
                                                         PASSPHRASE, kdf="min")
        self.keyring = Keyring()
        await accounts.unlock(self.db, self.keyring, self.tenant_id, PASSPHRASE, 86400)
        self.fields = FieldCrypto(self.keyring, SqlDataKeyStore(self.db))
        self.directory = TenantDirectory(master, self.keyring)  # the tenant's number key
        # Built as the app builds it (bot.channels: the sandbox's spec, its in-flight figure).
        self.sandbox = registry.get("sandbox").build(BuildContext(
            credentials_for=None, providers=None, db=self.db, fields=self.fields,
            directory=self.directory))
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
        if self.db.dialect == "postgresql":
            # Planner statistics, as autovacuum keeps them on a live server: without them the
            # gate's `address_index = ANY(…)` probe scans the tenant's whole consent state.
            async with self.db.begin() as conn:
                await conn.exec_driver_sql("ANALYZE")
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


# --- the floor: the same database work with the bare driver -------------------------------

_open = nacl.bindings.crypto_secretbox_open


def _open_two(address: bytes, name: bytes, dek: bytes) -> None:
    """Two field opens (crypto.fields: version + key id, 24-byte nonce, SecretBox)."""
    _open(address[41:], address[17:41], dek)
    _open(name[41:], name[17:41], dek)


_SQLITE_GATE = ("SELECT address_index, status FROM consent_state WHERE tenant_id = ? "
                "AND consent_type = ? AND address_index IN ({marks}) UNION ALL "
                "SELECT address_index, kind FROM suppressions WHERE tenant_id = ? "
                f"AND scope IN (?, '{EVERYTHING}') AND address_index IN ({{marks}})")


async def _floor_sqlite(path: str, campaign_id: str, tenant_id: str, dek: bytes,
                        batch: int) -> float:
    sent = 0
    async with aiosqlite.connect(path, isolation_level=None) as db:
        for pragma in ("foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
            await db.execute(f"PRAGMA {pragma}")
        started = time.perf_counter()
        while True:
            await db.execute("BEGIN IMMEDIATE")  # the claim: marked `sending`, committed
            moved = await db.execute_fetchall(
                "UPDATE outbox SET state = 'sending', claim_token = ?, updated_at = ? "
                "WHERE id IN (SELECT id FROM outbox WHERE campaign_id = ? AND state = 'pending' "
                "ORDER BY id LIMIT ?) RETURNING id, contact_id",
                (1, time.time(), campaign_id, batch))
            people = {} if not moved else {r[0]: r[1:] for r in await db.execute_fetchall(
                "SELECT id, address_index, address_sealed, name_sealed FROM contacts "
                f"WHERE id IN ({','.join('?' * len(moved))})", [c for _, c in moved])}
            await db.execute("COMMIT")
            if not moved:
                break
            indexes = [people[c][0] for _, c in moved]
            marks = ",".join("?" * len(indexes))
            await db.execute_fetchall(_SQLITE_GATE.format(marks=marks),
                                      (tenant_id, "MESAJ", *indexes, tenant_id, "MESAJ",
                                       *indexes))
            values = []
            for row_id, contact_id in moved:
                _, address, name = people[contact_id]
                _open_two(address, name, dek)
                values += (row_id, "sent", f"p-{row_id}", time.time())
            await db.execute("BEGIN IMMEDIATE")  # the results: one statement
            await db.execute(
                "UPDATE outbox SET state = v.column2, provider_id = v.column3, "
                "sent_at = v.column4, updated_at = ? FROM (VALUES "
                + ",".join(["(?, ?, ?, ?)"] * len(moved)) + ") AS v WHERE outbox.id = v.column1",
                (time.time(), *values))
            await db.execute("COMMIT")
            sent += len(moved)
    return sent / (time.perf_counter() - started)


_PG_CLAIM = (
    "WITH picked AS MATERIALIZED (SELECT id FROM outbox WHERE campaign_id = $1 "
    "AND state = 'pending' ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) "
    "UPDATE outbox SET state = 'sending', claim_token = $3, updated_at = $4 FROM picked, "
    "contacts c WHERE outbox.id = picked.id AND c.id = outbox.contact_id "
    "RETURNING outbox.id, c.address_index, c.address_sealed, c.name_sealed")
_PG_GATE = ("SELECT address_index, status FROM consent_state WHERE tenant_id = $1 "
            "AND consent_type = $2 AND address_index = ANY($3::bytea[]) UNION ALL "
            "SELECT address_index, kind FROM suppressions WHERE tenant_id = $1 "
            f"AND scope IN ($2, '{EVERYTHING}') AND address_index = ANY($3::bytea[])")
_PG_RESULTS = (
    "UPDATE outbox SET state = v.state, provider_id = v.provider_id, sent_at = v.sent_at, "
    "updated_at = $5 FROM unnest($1::bigint[], $2::varchar[], $3::varchar[], $4::float8[]) "
    "AS v(id, state, provider_id, sent_at) WHERE outbox.id = v.id")


async def _floor_pg(url: str, campaign_id: str, tenant_id: str, dek: bytes,
                    batch: int) -> float:
    from bench.cluster_fleet import connect
    conn, sent = await connect(url), 0
    try:
        started = time.perf_counter()
        while True:
            rows = await conn.fetch(_PG_CLAIM, campaign_id, batch, 1, time.time())
            if not rows:
                break
            await conn.fetch(_PG_GATE, tenant_id, "MESAJ", [r[1] for r in rows])
            ids, states, providers, at = [], [], [], []
            for row_id, _, address, name in rows:
                _open_two(address, name, dek)
                ids.append(row_id)
                states.append("sent")
                providers.append(f"p-{row_id}")
                at.append(time.time())
            await conn.execute(_PG_RESULTS, ids, states, providers, at, time.time())
            sent += len(rows)
        return sent / (time.perf_counter() - started)
    finally:
        await conn.close()


async def _floor(world: World, url: str, list_id: str) -> float:
    campaign_id, _ = await world.campaign(await world.line(1_000_000), list_id)
    # A bare driver's commits checkpoint the WAL themselves: ours (store.engine) would do it
    # for the floor's connection too, off its path, and flatter the floor.
    await world.db.stop_checkpoints()
    batch = world.dispatcher.settings.max_batch  # an unthrottled line's round
    dek = world.sealer._dek
    if kind_of(url) == "postgresql":
        return await _floor_pg(url, campaign_id, world.tenant_id, dek, batch)
    return await _floor_sqlite(make_url(url).database, campaign_id, world.tenant_id, dek,
                               batch)


async def _pipeline(world: World, list_id: str, n: int,
                    profile: cProfile.Profile | None) -> tuple[float, float]:
    """(msgs/s, outbox build seconds) of the dispatcher sending one campaign to the list."""
    line_id = await world.line(1_000_000)
    campaign_id, build = await world.campaign(line_id, list_id)
    if profile is not None:
        profile.enable()
    started = time.perf_counter()
    await _dispatch(world, line_id)
    elapsed = time.perf_counter() - started
    if profile is not None:
        profile.disable()
    async with world.db.connect() as conn:
        counts = (await service.status(conn, await service.get(conn, world.tenant_id,
                                                                campaign_id)))["counts"]
    if counts["sent"] != n:
        raise RuntimeError(f"the pipeline sent {counts['sent']} of {n}: {counts}")
    return n / elapsed, build


def _runs(figures: list[float]) -> str:
    return "/".join(f"{f:,.0f}" for f in figures)


async def bench_dispatch(sizes: list[int], databases: list[str] | None = None,
                         server_url: str | None = None, repeat: int = 3,
                         profile: bool = False, cache_mb: int = 2) -> dict:
    """Pipeline against floor for each database and size, `repeat` interleaved runs each."""
    databases = databases or (["sqlite", "postgresql"]
                              if server_url and kind_of(server_url) == "postgresql"
                              else ["sqlite"])
    figures: dict = {}
    start_rss = None
    for kind in databases:
        for n in sizes:
            profiler = cProfile.Profile() if profile else None
            async with scratch_database(kind, server_url) as url:
                world = await World().open(url, cache_mb)
                try:
                    list_id = await world.audience(n)
                    ours, floors, builds, loads = [], [], [], []
                    for run in range(repeat):
                        # ABBA: the pipeline first, then the floor first, …: a machine that
                        # slows down or speeds up during the run weighs on both alike.
                        order = ("pipeline", "floor") if run % 2 == 0 else ("floor", "pipeline")
                        for what in order:
                            if what == "pipeline":
                                rate, build = await _pipeline(world, list_id, n, profiler)
                                ours.append(rate)
                                builds.append(build)
                            else:
                                floors.append(await _floor(world, url, list_id))
                        loads.append(os.getloadavg()[0])
                finally:
                    await world.dispatcher.stop()
                    await world.db.close()
            ratios = [a / b for a, b in zip(ours, floors, strict=True)]
            row = figures.setdefault(kind, {})[n] = {
                "msgs_per_s": statistics.median(ours), "floor_per_s": statistics.median(floors),
                "ratio": statistics.median(ratios), "runs": ours, "floor_runs": floors,
                "outbox_build_s": statistics.median(builds), "peak_rss_mb": rss_mb(),
                "rss_mb": rss_now_mb(), "load": loads}
            start_rss = start_rss if start_rss is not None else row
            print(f"dispatch {kind} {n:,} recipients, {repeat} interleaved runs: pipeline "
                  f"{row['msgs_per_s']:,.0f} msgs/s ({_runs(ours)}); floor "
                  f"{row['floor_per_s']:,.0f} msgs/s ({_runs(floors)}); ratio "
                  f"{row['ratio']:.2f} (median of {', '.join(f'{r:.2f}' for r in ratios)}); "
                  f"outbox built in {row['outbox_build_s']:.2f} s; RSS {row['rss_mb']:.0f} MB "
                  + (f"(SQLite page cache {cache_mb} MiB a connection) " if kind == "sqlite"
                     else "") +
                  f"(peak {row['peak_rss_mb']:.0f} MB); {load_average()}", flush=True)
            if profiler is not None:
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
                print(out.getvalue(), flush=True)
    for kind, rows in figures.items():
        if len(rows) > 1:
            first, last = rows[sizes[0]], rows[sizes[-1]]
            print(f"dispatch {kind} RSS growth {sizes[0]:,} → {sizes[-1]:,} recipients: "
                  f"{last['rss_mb'] - first['rss_mb']:+.0f} MB now, "
                  f"{last['peak_rss_mb'] - first['peak_rss_mb']:+.0f} MB peak")
    return figures


async def bench_throttle(lines: int, rate: float, seconds: float,
                         server_url: str | None = None) -> dict:
    kind = kind_of(server_url) if server_url else "sqlite"
    async with scratch_database(kind, server_url) as url:
        world = await World().open(url)
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
        await world.dispatcher.stop()
        await world.db.close()
    # What a provider enforcing `rate` with a half-second burst admits in `elapsed` seconds.
    allowed = rate * elapsed + max(1.0, rate * 0.5)
    achieved = [s / allowed for s in sent]
    print(f"throttle ({kind}): {lines} lines × {rate:g} msg/s for {elapsed:.1f} s: achieved "
          f"{min(achieved):.1%} (worst line) / {sum(achieved) / lines:.1%} (mean) of the "
          f"allowed rate; {world.sandbox.rate_limited} answers were 429; "
          f"{sum(sent):,} messages sent")
    return {"min": min(achieved), "mean": sum(achieved) / lines,
            "rate_limited": world.sandbox.rate_limited}
