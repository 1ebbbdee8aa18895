"""Benchmarks for the consent issue: CSV import throughput and batched gate decisions.

`izinli bench import` generates Turkish-looking CSV files and imports them through the real
importer (parse, normalise, blind index, seal, batched upserts, consent events), then imports
the same file again after 1 % of its consenting people stopped (the weekly re-upload: every row
an update, the refusals kept);
`izinli bench gate` fills consent_state with N entries and measures gather + decide in batches."""
from __future__ import annotations

import os
import random
import resource
import tempfile
import time
import uuid
from pathlib import Path

import accounts
from campaigns.audiences import ContactImporter, ImportSource
from crypto.master import MasterKey
from crypto.service import FieldCrypto
from crypto.vault import Keyring
from optout import facts, suppression
from optout.gate import Purpose, decide
from optout.tenants import TenantDirectory
from store import raw
from store.engine import Database, open_database
from store.migrate import upgrade
from store.tables import consent_state
from store.tenants import SqlDataKeyStore

NAMES = ["Şükrü Çağlayan", "Işıl Ünlü", "İsmail Göğüş", "Ayşe Yılmaz", "Mehmet Öztürk",
         "Zeynep Kılıç", "Gökhan Çelik", "Elif Şahin"]
CITIES = ["İstanbul", "İzmir", "Muğla", "Eskişehir", "Çanakkale", "Diyarbakır"]
FORMS = ["0{}", "+90 {}", "90{}", "{}"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    """The largest peak RSS of any reaped child process (an import's worker)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds() -> float:
    """CPU time of this process, all threads (aiosqlite's included): steadier than wall time
    on a machine others share."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with open(path, "w", encoding="cp1254", newline="") as fh:
        fh.write("telefon;ad soyad;şehir;consent\n")
        for i in range(rows):
            national = f"5{rnd.choice('0345')}{rnd.randrange(10)}{i:07d}"
            phone = rnd.choice(FORMS).format(national)
            consent = "evet" if i % 3 else ""
            fh.write(f"{phone};{rnd.choice(NAMES)};{rnd.choice(CITIES)};{consent}\n")


async def _setup(url: str, cache_mb: tuple[int, int] = (2, 8)
                 ) -> tuple[Database, str, TenantDirectory, FieldCrypto]:
    db = open_database(url, sqlite_cache_mb=cache_mb[0], sqlite_bulk_cache_mb=cache_mb[1])
    await upgrade(db)
    return (db, *await _tenant(db))


async def _tenant(db: Database) -> tuple[str, TenantDirectory, FieldCrypto]:
    """A new tenant, unlocked: (its id, the directory and field crypto that serve it)."""
    master = MasterKey(os.urandom(32), source="bench")
    tenant_id, _ = await accounts.create_tenant(db, master, "Bench Mağaza", "bench passphrase 1",
                                                kdf="min")
    # The blind-index key is the tenant's (issue 17): importing needs the vault unlocked.
    keyring = Keyring()
    await accounts.unlock(db, keyring, tenant_id, "bench passphrase 1", 3600)
    directory = TenantDirectory(master, keyring)
    return tenant_id, directory, FieldCrypto(keyring, SqlDataKeyStore(db))


async def bench_import(sizes: list[int], url: str | None,
                       cache_mb: tuple[int, int] = (2, 8),
                       workers: list[bool] | None = None) -> dict:
    """Imports files of each size, then re-imports them; with each of `workers` (True: rows
    prepared in a worker process, as the server does for a large file; False: in this
    process), each on a fresh database. With a PostgreSQL URL the bench runs on a database of
    its own, created on that server and dropped after (bench.dispatch)."""
    from bench.dispatch import kind_of, scratch_database
    figures = {}
    for worker in workers or [True]:
        # Each mode on a database of its own: the second would otherwise write into tables
        # the first one filled.
        async with scratch_database(kind_of(url) if url else "sqlite", url) as db_url:
            with tempfile.TemporaryDirectory() as tmp:
                db = open_database(db_url, sqlite_cache_mb=cache_mb[0],
                                   sqlite_bulk_cache_mb=cache_mb[1])
                try:
                    await upgrade(db)
                    for n in sizes:
                        tenant_id, directory, fields = await _tenant(db)
                        importer = ContactImporter(db, fields, directory,
                                                   fork_above_bytes=0 if worker else None)
                        figures[n, worker] = await _import_twice(
                            db, importer, tenant_id, Path(tmp), n,
                            "worker" if worker else "in-process")
                finally:
                    await db.close()
    return figures


async def _import_twice(db: Database, importer: ContactImporter, tenant_id: str, tmp: Path,
                        n: int, mode: str) -> dict:
    csv_path = tmp / f"contacts-{n}.csv"
    write_csv(csv_path, n, seed=n)
    result, elapsed, cpu, child_cpu = await _timed_import(importer, tenant_id, csv_path)
    figures = {"rows_per_s": n / elapsed, "seconds": elapsed, "cpu_seconds": cpu,
               "worker_cpu_seconds": child_cpu,
               "imported": result.imported, "updated": result.updated,
               "invalid": result.invalid_total, "peak_rss_mb": peak_rss_mb(),
               "worker_peak_rss_mb": children_peak_rss_mb(),
               "file_mb": csv_path.stat().st_size / 2**20}
    print(f"import {n} rows, {mode}: {n / elapsed:,.0f} rows/s ({elapsed:.1f} s, CPU "
          f"{cpu:.1f} s here + {child_cpu:.1f} s in the worker, file "
          f"{figures['file_mb']:.1f} MB, imported {result.imported}, updated "
          f"{result.updated}, invalid {result.invalid_total}); peak RSS so far "
          f"{figures['peak_rss_mb']:.0f} MB, worker {figures['worker_peak_rss_mb']:.0f} MB",
          flush=True)
    stopped = await _stop_some(db, tenant_id)
    again, elapsed, cpu, child_cpu = await _timed_import(importer, tenant_id, csv_path)
    figures |= {"reimport_rows_per_s": n / elapsed, "reimport_cpu_seconds": cpu,
                "reimport_worker_cpu_seconds": child_cpu, "kept_refusal": again.kept_refusal}
    print(f"re-import {n} rows, {mode}, after {stopped} people stopped: {n / elapsed:,.0f} "
          f"rows/s ({elapsed:.1f} s, CPU {cpu:.1f} s here + {child_cpu:.1f} s in the worker, "
          f"updated {again.updated}, kept_refusal {again.kept_refusal}, undated "
          f"{again.undated}); peak RSS so far {peak_rss_mb():.0f} MB", flush=True)
    csv_path.unlink()
    return figures


async def _timed_import(importer: ContactImporter, tenant_id: str, csv_path: Path):
    started, cpu, child = time.perf_counter(), cpu_seconds(), children_cpu_seconds()
    with open(csv_path, "rb") as fh:
        result = await importer.run(tenant_id, None, fh, ImportSource(csv_path.name, "bench"))
    return (result, time.perf_counter() - started, cpu_seconds() - cpu,
            children_cpu_seconds() - child)


async def _stop_some(db: Database, tenant_id: str, every: int = 100) -> int:
    """Every `every`-th consenting person replies STOP (revoked and suppressed, as
    optout.inbound leaves them); how many."""
    async with db.begin() as conn:
        # Picked by the database: reading every consenting person here made this step, not
        # the import, the bench's peak RSS (+100 MB at 1,000,000 rows).
        rows = await raw.fetch(conn, "SELECT address_index FROM (SELECT address_index, "
                                     "row_number() OVER (ORDER BY event_id) AS n FROM "
                                     "consent_state WHERE tenant_id = ? AND status = 'granted') "
                                     "AS granted WHERE (n - 1) % ? = 0", (tenant_id, every))
        stopped = [bytes(r[0]) for r in rows]
        for index in stopped:
            await suppression.suppress(conn, tenant_id, index, "MESAJ", "opted_out", "bench",
                                       None)
        await raw.execute_many(conn, "UPDATE consent_state SET status = 'revoked', "
                                     "occurred_at = ? WHERE tenant_id = ? AND address_index = ? "
                                     "AND consent_type = 'MESAJ'",
                               [(time.time(), tenant_id, index) for index in stopped])
    return len(stopped)


async def _fill_consents(db: Database, tenant_id: str, n: int) -> list[bytes]:
    indexes = [os.urandom(16) for _ in range(n)]
    statuses = ("granted", "granted", "revoked")
    for start in range(0, n, 20_000):
        rows = [{"tenant_id": tenant_id, "address_index": ix, "consent_type": "MESAJ",
                 "status": statuses[i % 3], "recipient_type": "individual", "source": "HS_WEB",
                 "occurred_at": 1.0, "event_id": str(uuid.uuid4())}
                for i, ix in enumerate(indexes[start:start + 20_000], start)]
        async with db.begin() as conn:
            await conn.execute(consent_state.insert(), rows)
    # Planner statistics, as autovacuum (PostgreSQL) or a periodic ANALYZE would have them.
    async with db.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    return indexes


async def bench_gate(entries: int, decisions: int, batch: int, url: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db, tenant_id, _, _ = await _setup(
            url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        started = time.perf_counter()
        indexes = await _fill_consents(db, tenant_id, entries)
        print(f"gate: filled {entries:,} consent entries in {time.perf_counter() - started:.1f} s",
              flush=True)
        rnd = random.Random(3)
        # Half known addresses, half unknown ones (no consent recorded).
        probe = [rnd.choice(indexes) if i % 2 else os.urandom(16) for i in range(decisions)]
        allowed = 0
        started = time.perf_counter()
        async with db.connect() as conn:
            for start in range(0, decisions, batch):
                chunk = probe[start:start + batch]
                found = await facts.gather(conn, tenant_id, chunk, "MESAJ", merchants=False)
                allowed += sum(decide(found[i], Purpose.COMMERCIAL).allowed for i in chunk)
        elapsed = time.perf_counter() - started
        await db.close()
    rate = decisions / elapsed
    print(f"gate: {decisions:,} decisions in batches of {batch} over {entries:,} entries: "
          f"{rate:,.0f} decisions/s ({allowed:,} allowed); peak RSS {peak_rss_mb():.0f} MB")
    return {"decisions_per_s": rate, "allowed": allowed}


