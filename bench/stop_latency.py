"""STOP-to-effect latency across processes (issue 13, item 4), on PostgreSQL.

This process commits what a STOP commits (a revoked consent and a suppression, one
transaction each) at a steady pace; `listeners` other OS processes each run the real bus and
optout.revocations feeding a watch, and write down when each revocation was noted. The figure
is noted − committed (the commit's return in the writer, i.e. the moment a STOP is
acknowledged), over the same machine clock. `busy_ms` keeps each listener's event loop busy
half the time in slices of that length, as a loaded dispatcher's would be.

    python -m bench.stop_latency postgresql+asyncpg://… [--stops 300] [--listeners 2]
                                 [--busy-ms 0]

`bench_stop_latency(url, …)` returns the figures, for `izinli bench cluster` to reuse."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time

import accounts
from crypto.master import MasterKey
from optout import ledger, suppression
from optout.ledger import ConsentEvent
from optout.revocations import RevocationNotices
from optout.watch import RevocationWatch
from store.bus import Bus
from store.engine import open_database
from store.migrate import upgrade
from store.tables import tenants


async def bench_stop_latency(url: str, stops: int = 300, listeners: int = 2,
                             busy_ms: float = 0.0, interval: float = 0.01) -> dict:
    db = open_database(url)
    if db.dialect != "postgresql":
        await db.close()
        raise SystemExit("stop latency needs PostgreSQL: several processes share it")
    await upgrade(db)
    tenant_id, _ = await accounts.create_tenant(db, MasterKey(os.urandom(32), source="bench"),
                                                "Bench STOP", "bench passphrase 1", kdf="min")
    procs = [await _spawn(url, busy_ms) for _ in range(listeners)]
    committed: dict[str, float] = {}
    try:
        for _ in range(stops):
            index = os.urandom(16)
            async with db.begin() as conn:
                await ledger.record(conn, tenant_id, [ConsentEvent(
                    address_index=index, consent_type="MESAJ", status=ledger.REVOKED,
                    source="inbound:sandbox", recipient_type=ledger.INDIVIDUAL,
                    evidence_sealed=b"bench", occurred_at=float(int(time.time())))])
                await suppression.suppress(conn, tenant_id, index, "MESAJ", "opted_out",
                                           "inbound:sandbox", b"bench")
            committed[index.hex()] = time.time()
            await asyncio.sleep(interval)
        await asyncio.sleep(1.0)
        noted = [await _collect(p) for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
        async with db.begin() as conn:
            await conn.execute(tenants.delete().where(tenants.c.id == tenant_id))
        await db.close()
    lags = sorted(1000 * (seen[h] - at) for seen in noted for h, at in committed.items()
                  if h in seen)
    missing = stops * listeners - len(lags)
    figures = {"stops": stops, "listeners": listeners, "busy_ms": busy_ms, "missing": missing,
               "p50_ms": _pct(lags, 50), "p99_ms": _pct(lags, 99),
               "max_ms": lags[-1] if lags else None}
    print(f"STOP to effect across processes ({stops} STOPs x {listeners} listening processes, "
          f"listener loop busy {busy_ms:g} ms slices): p50 {figures['p50_ms']:.2f} ms, "
          f"p99 {figures['p99_ms']:.2f} ms, max {figures['max_ms']:.2f} ms, "
          f"missing {missing}", flush=True)
    return figures


def _pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def _spawn(url: str, busy_ms: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.stop_latency", url, "--listen", "--busy-ms", str(busy_ms),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if line.strip() != b"ready":
        raise RuntimeError("a listener did not start")
    return proc


async def _collect(proc: asyncio.subprocess.Process) -> dict[str, float]:
    """First time each blind index was noted by that listener (a STOP brings two notices)."""
    proc.stdin.close()
    seen: dict[str, float] = {}
    async for raw in proc.stdout:
        index, _, at = raw.decode().partition(" ")
        seen.setdefault(index, float(at))
    await proc.wait()
    return seen


class _TimedWatch(RevocationWatch):
    def __init__(self):
        super().__init__()
        self.noted: list[tuple[bytes, float]] = []

    def note(self, tenant_id: str, address_index: bytes, *args, **kwargs) -> None:
        self.noted.append((address_index, time.time()))
        super().note(tenant_id, address_index, *args, **kwargs)


async def _listen(url: str, busy_ms: float) -> None:
    db = open_database(url)
    bus, watch = Bus(db), _TimedWatch()
    RevocationNotices(bus, db, watch)
    await bus.start()
    print("ready", flush=True)
    load = asyncio.create_task(_keep_busy(busy_ms / 1000)) if busy_ms > 0 else None
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    if load:
        load.cancel()
    await bus.stop()
    await db.close()
    sys.stdout.write("".join(f"{i.hex()} {at:.6f}\n" for i, at in watch.noted))
    sys.stdout.flush()


async def _keep_busy(slice_seconds: float) -> None:
    while True:
        end = time.perf_counter() + slice_seconds
        while time.perf_counter() < end:
            pass
        await asyncio.sleep(slice_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--stops", type=int, default=300)
    parser.add_argument("--listeners", type=int, default=2)
    parser.add_argument("--busy-ms", type=float, default=0.0)
    parser.add_argument("--listen", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listen:
        asyncio.run(_listen(args.url, args.busy_ms))
    else:
        asyncio.run(bench_stop_latency(args.url, args.stops, args.listeners, args.busy_ms))


if __name__ == "__main__":
    main()
