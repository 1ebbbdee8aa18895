"""`izinli bench dashboard`: the dashboard's pages under many concurrent signed-in sessions.

A real `izinli` app runs in its own process on loopback with a temporary SQLite data directory,
prepared with a tenant (a list of 100,000 contacts by default, campaigns over all of them in
different states, sandbox messages) and N users with one session each. By default each
session behaves like a person: it opens a page, reads for 0-10 s (mean `think`), opens the
next (an aiohttp client, starts staggered). `--think 0` is a closed loop instead: `wrk` (a
Lua script rotating session cookies and pages) sends the next request the instant a page
arrives, which measures throughput more than latency. Prints requests/s and the p50/p90/p99
latency of the whole run (target: p99 <= 100 ms at 100 sessions), plus each page's status
and single-request latency before the run.

`--processes 1,2` (PostgreSQL only: SQLite serves one process) runs the same load against one
process and then against more `izinli serve` processes on the same database, the sessions
split evenly over their ports (each process has its own port; a load balancer in front would
do the same), in one run on a database created for it and dropped after. Sessions live in the
database, so a session works on every process, and the vault's unlock reaches the later
processes through the cluster (dashboard.vault_fanout)."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
from aiohttp import web

import accounts
from accounts import users
from campaigns import audiences, service
from campaigns.service import NewCampaign
from dashboard.keys import (
    db_key,
    directory_key,
    fanout_key,
    fields_key,
    keyring_key,
    master_key,
)
from izinli import config as configuration
from izinli.app import create_app
from store import raw

PAGES = ("/", "/campaigns", "/contacts", "/consents", "/sandbox")
PASSPHRASE = "bench passphrase 1"
COOKIE = "izinli_session"

LUA = """
local tokens = {%(tokens)s}
local paths = {%(paths)s}
local threads = {}
counter = 0
bad = 0

function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  counter = offset
end

function request()
  counter = counter + 1
  local token = tokens[(counter %% #tokens) + 1]
  local path = paths[(math.floor(counter / #tokens) %% #paths) + 1]
  return wrk.format("GET", path, {["Cookie"] = "%(cookie)s=" .. token})
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("izinli-non-200 %%d\\n", total))
end
"""


async def _prepare(app: web.Application, sessions: int, contacts: int, campaigns: int
                   ) -> list[str]:
    """A tenant with a list, campaigns and sandbox messages; `sessions` users signed in."""
    from bench.dispatch import World
    db = app[db_key]
    world = World()
    world.db, world.keyring, world.fields = db, app[keyring_key], app[fields_key]
    world.directory = app[directory_key]
    world.tenant_id, _ = await accounts.create_tenant(db, app[master_key], "Bench Mağaza",
                                                      PASSPHRASE, kdf="min")
    # Through the cluster's fan-out, so processes started later receive the unlock too.
    await accounts.unlock(db, world.keyring, world.tenant_id, PASSPHRASE, 3600,
                          fanout=app[fanout_key])
    async with db.connect() as conn:
        world.profile = await world.directory.profile(conn, world.tenant_id)
        world.index_of = await world.directory.indexer(conn, world.tenant_id)
        line_id = (await raw.fetch(conn, "SELECT id FROM lines WHERE tenant_id = ?",
                                   (world.tenant_id,)))[0][0]
    world.sealer = await world.fields.new_sealer(world.tenant_id, world.profile.public_key)
    list_id = await world.audience(contacts)
    # One small campaign really runs through the dispatcher (the sandbox inbox fills up).
    small = await world.audience(20, offset=contacts)
    async with db.begin() as conn:
        run_id = await service.create(conn, world.tenant_id, NewCampaign(
            "Hoş geldiniz", line_id, small, "informational", "Merhaba {{name}}"), world.sealer)
        await service.transition(conn, world.tenant_id, run_id, "start")
    # The others are big and parked in different states (no sending during the run).
    states = ("paused", "completed", "draft", "paused", "cancelled")
    for i in range(campaigns):
        async with db.begin() as conn:
            cid = await service.create(conn, world.tenant_id, NewCampaign(
                f"Kampanya {i + 1}", line_id, list_id, "commercial",
                "Merhaba {{name}}, indirim başladı!"), world.sealer)
            state = states[i % len(states)]
            if state == "draft":
                continue
            await service.transition(conn, world.tenant_id, cid, "start")
            await service.set_state(conn, [cid], "paused", "bench", only_from=("running",))
            done = contacts * (i + 1) // (campaigns + 1) if state == "paused" else contacts
            await raw.execute(conn, "UPDATE outbox SET state = 'sent', sent_at = ? WHERE id IN "
                                    "(SELECT id FROM outbox WHERE campaign_id = ? LIMIT ?)",
                              (time.time(), cid, done))
            if state != "paused":
                await raw.execute(conn, "UPDATE campaigns SET state = ? WHERE id = ?",
                                  (state, cid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with db.connect() as conn:
            row = await service.get(conn, world.tenant_id, run_id)
            if (await service.status(conn, row))["state"] in ("completed", "failed"):
                break
        await asyncio.sleep(0.2)
    # The steady state: the server folds campaign counters every few seconds anyway.
    await audiences.fold_counters(db)
    master = app[master_key]
    tokens = []
    for i in range(sessions):
        user_id = await users.create_user(db, master, world.tenant_id,
                                          f"kullanici{i}@bench.example.com", "bench password 1",
                                          "operator", "bench", kdf="min")
        token, _ = await users.start_session(
            db, SimpleNamespace(id=user_id, tenant_id=world.tenant_id), f"device-{i}")
        tokens.append(token)
    return tokens


def _serve(data_dir: str, sessions: int, contacts: int, campaigns: int, ready,
           database_url: str | None = None, master_hex: str | None = None) -> None:
    """The server process: the app on a free loopback port, prepared as above."""
    if master_hex:  # the other processes of a --processes run hold the same master key
        os.environ["IZINLI_MASTER_KEY"] = master_hex

    async def main() -> None:
        overrides = {"data_dir": Path(data_dir), "crypto.kdf": "min"}
        if database_url:
            overrides["store.url"] = database_url
        cfg = configuration.load(None, env={}, overrides=overrides)
        app = create_app(cfg)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        tokens = await _prepare(app, sessions, contacts, campaigns)
        ready.put((port, tokens))
        await asyncio.Event().wait()
    if os.environ.get("IZINLI_BENCH_PROFILE"):  # py-spy / pyinstrument can attach to this pid
        print(f"bench dashboard: server pid {os.getpid()}", flush=True)
    asyncio.run(main())


async def bench_dashboard(sessions: int = 100, seconds: float = 60, threads: int = 2,
                          contacts: int = 100_000, campaigns: int = 5, per_page: float = 0,
                          use_wrk: bool = True, think: float = 5,
                          database_url: str | None = None,
                          processes: tuple[int, ...] = (1,)) -> dict:
    # A throwaway key: a bench never leaves a key file in the user's config dir.
    os.environ["IZINLI_MASTER_KEY"] = secrets.token_hex(32)
    postgres = (database_url or "").startswith("postgres")
    if max(processes) > 1 and not postgres:
        raise RuntimeError("more than one process needs PostgreSQL: set IZINLI_DATABASE_URL "
                           "(SQLite serves a single process)")
    with tempfile.TemporaryDirectory() as tmp:
        if not postgres:
            return await _run(Path(tmp), sessions, seconds, threads, contacts, campaigns,
                              per_page, use_wrk, think, database_url, processes)
        async with _scratch_database(database_url) as url:
            return await _run(Path(tmp), sessions, seconds, threads, contacts, campaigns,
                              per_page, use_wrk, think, url, processes)


async def _run(tmp: Path, sessions: int, seconds: float, threads: int, contacts: int,
               campaigns: int, per_page: float, use_wrk: bool, think: float,
               database_url: str | None, processes: tuple[int, ...]) -> dict:
    import multiprocessing

    from bench.cluster_fleet import Fleet
    from crypto.master import generate_master_key_text
    context = multiprocessing.get_context("spawn")
    master = generate_master_key_text() if max(processes) > 1 else None
    ready = context.Queue()
    server = context.Process(target=_serve, args=(
        str(tmp / "var"), sessions, contacts, campaigns, ready, database_url, master),
        daemon=True)
    server.start()
    fleet = None
    try:
        port, tokens = await asyncio.to_thread(ready.get, True, 900)
        bases = [f"http://127.0.0.1:{port}"]
        store = "PostgreSQL" if database_url else "SQLite"
        print(f"dashboard ({store}): {sessions} signed-in sessions, {contacts:,} contacts, "
              f"{campaigns + 1} campaigns; {len(PAGES)} pages: {', '.join(PAGES)}")
        for path, (status, ms) in (await _probe(bases[0], tokens[0])).items():
            print(f"  {path:<11} status {status}, {ms:6.1f} ms alone")
        # wrk is a closed loop (no pause between a session's requests); a think time
        # (each session pauses 0..2*think s between pages, like a person) needs aiohttp.
        wrk = shutil.which("wrk") if use_wrk and not think else None
        run = _wrk if wrk else functools.partial(_aiohttp_load, think=think)
        tool = "wrk" if wrk else f"aiohttp, think {think:g} s" if think else "aiohttp"
        figures: dict = {}
        for n in sorted(set(processes)):
            if n > len(bases):
                if fleet is None:
                    fleet = Fleet(tmp, database_url, master)
                async with aiohttp.ClientSession() as http:
                    started = await fleet.start(n - len(bases), http)
                bases += [f"http://127.0.0.1:{s.port}" for s in started]
                for base in bases[1:]:
                    await _wait_unlocked(base, tokens[0])
            use = bases[:n]
            label = "all pages" if len(processes) == 1 else f"all pages, {n} process(es)"
            figures[n] = await run(use, tokens, PAGES, sessions, seconds, threads, str(tmp))
            _report(label, figures[n], sessions, seconds, tool)
            if per_page:
                for path in PAGES:
                    one = await run(use, tokens, (path,), sessions, per_page, threads, str(tmp))
                    _report(f"{path}, {n} process(es)", one, sessions, per_page, tool)
        if len(figures) > 1:
            low, high = min(figures), max(figures)
            print(f"dashboard: {high} processes / {low}: "
                  f"{figures[high]['per_s'] / figures[low]['per_s']:.2f}x requests/s, p99 "
                  f"{figures[low]['p99_ms']:.0f} -> {figures[high]['p99_ms']:.0f} ms "
                  f"(machine: {os.cpu_count()} cores, load generator and database included)")
    finally:
        if fleet is not None:
            await fleet.stop()
        server.terminate()
        server.join(10)
    return figures[min(figures)] if len(figures) == 1 else figures


@contextlib.asynccontextmanager
async def _scratch_database(base_url: str):
    """A database of its own on the configured server, dropped after the run."""
    from sqlalchemy.engine import make_url

    from bench.cluster_fleet import connect
    name = f"izinli_bench_dashboard_{os.getpid()}"
    admin = await connect(base_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _wait_unlocked(base: str, token: str, timeout: float = 60) -> None:
    """Until a later process holds the tenant's unlock (its share comes through the cluster):
    the contacts page then shows the list instead of asking to unlock."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(cookies={COOKIE: token}) as session:
        while time.monotonic() < deadline:
            async with session.get(base + "/vault", allow_redirects=False) as response:
                body = await response.text()
            if response.status == 200 and 'action="/vault/lock"' in body:
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the process at {base} did not receive the unlock in {timeout:g} s")


def _report(label: str, f: dict, sessions: int, seconds: float, tool: str) -> None:
    verdict = "meets" if f["p99_ms"] <= 100 and not f["errors"] else "MISSES"
    print(f"dashboard [{label}] ({tool}, {sessions} connections, {seconds:g} s): "
          f"{f['per_s']:,.0f} requests/s ({f['requests']:,} requests); latency p50 "
          f"{f['p50_ms']:.1f} ms, p90 {f['p90_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms; "
          f"non-200 answers: {f['errors']:,}; {verdict} p99 <= 100 ms")


async def _probe(base: str, token: str) -> dict[str, tuple[int, float]]:
    found = {}
    async with aiohttp.ClientSession(cookies={COOKIE: token}) as session:
        for path in PAGES:
            for _ in range(2):  # the second is the warm one
                started = time.perf_counter()
                async with session.get(base + path, allow_redirects=False) as response:
                    await response.read()
                found[path] = (response.status, (time.perf_counter() - started) * 1000)
    return found


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict:
    """requests/s, p50/p90/p99 (ms), request count and non-200 answers from `wrk --latency`."""
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output,
                                                 re.MULTILINE)}
    per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    bad = re.search(r"izinli-non-200 (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    return {"per_s": per_s, "requests": requests, "p50_ms": pct[50], "p90_ms": pct[90],
            "p99_ms": pct[99], "errors": (int(bad.group(1)) if bad else 0)
            + (sum(int(g) for g in errors.groups()) if errors else 0)}


async def _wrk(bases: list[str], tokens: list[str], paths, connections: int, seconds: float,
               threads: int, tmp: str) -> dict:
    """One wrk per process, the connections split evenly; requests/s summed, latency
    percentiles those of the slower process (wrk reports no raw samples to merge)."""
    shares = [connections // len(bases) + (i < connections % len(bases))
              for i in range(len(bases))]
    runs = await asyncio.gather(*(
        _wrk_one(base, tokens[i::len(bases)] or tokens, paths, share, seconds, threads, tmp, i)
        for i, (base, share) in enumerate(zip(bases, shares, strict=True))))
    merged = {key: sum(r[key] for r in runs) for key in ("per_s", "requests", "errors")}
    return merged | {key: max(r[key] for r in runs) for key in ("p50_ms", "p90_ms", "p99_ms")}


async def _wrk_one(base: str, tokens: list[str], paths, connections: int, seconds: float,
                   threads: int, tmp: str, n: int) -> dict:
    script = Path(tmp) / f"dashboard-{n}.lua"
    script.write_text(LUA % {"tokens": ", ".join(f'"{t}"' for t in tokens),
                             "paths": ", ".join(f'"{p}"' for p in paths), "cookie": COOKIE})
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-c", str(connections), "-t", str(threads), "-d", f"{seconds:g}s", "--latency",
        "--timeout", "10s", "-s", str(script), base, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0 or "Requests/sec" not in text:
        raise RuntimeError(f"wrk failed: {text[-2000:]}")
    return parse_wrk(text)


async def _aiohttp_load(bases: list[str], tokens: list[str], paths, connections: int,
                        seconds: float, threads: int, tmp: str, think: float = 0) -> dict:
    """The fallback load generator: one client per session for `seconds`, each pausing
    0..2*`think` s between its requests (0: a closed loop, like wrk); session n talks to
    process n mod len(bases)."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        base = bases[n % len(bases)]
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector,
                                         cookies={COOKIE: tokens[n % len(tokens)]}) as session:
            i = n
            if think:  # staggered starts: people do not all click at the same instant
                await asyncio.sleep(random.uniform(0, 2 * think))
            while time.perf_counter() < stop:
                path = paths[i % len(paths)]
                i += 1
                started = time.perf_counter()
                async with session.get(base + path, allow_redirects=False) as response:
                    await response.read()
                    errors += response.status != 200
                latencies.append(time.perf_counter() - started)
                if think:
                    await asyncio.sleep(random.uniform(0, 2 * think))

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    return {"per_s": len(latencies) / elapsed, "requests": len(latencies), "p50_ms": pct(0.5),
            "p90_ms": pct(0.9), "p99_ms": pct(0.99), "errors": errors}
