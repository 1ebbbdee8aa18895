"""`izinli bench cluster --processes 1,2,3`: real `izinli serve` processes on one PostgreSQL
database (issue 13). For each process count, on a database created for that run and dropped
after (everything listens on 127.0.0.1):

- msgs/s: messages over unthrottled sandbox lines (one campaign each, started through the
  processes in turn), from the first send to the last (the sandbox's own send times);
- STOP: while the campaigns run, a person whose message is claimed (`sending`) or next in
  line is sent STOP (on another sandbox line, so the confirmation is not mistaken for the
  campaign's message) through a process OTHER than the line's holder (the same one with one
  process). A STOP is measured when nothing had been sent to the person before its answer;
  its lateness is how long after the answer the person's message still started (0 when none
  did). Issue 13's target: none later than 100 ms;
- takeover: kill -9 of the process holding a paced line mid-campaign, to the moment the
  lease's fencing token changes (another process took the line); then no duplicate and
  sent + unknown = recipients are checked;
- database transactions per message during the run (pg_stat_database, background included)
  and, with --round-trips, round trips per message through a counting proxy
  (bench.pgcount), with what an idle cluster of that size costs per second."""
from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from sqlalchemy.engine import make_url

import accounts
from bench.cluster_fleet import BenchError, Fleet, Server, connect, holder_pid, server_version
from bench.cluster_report import Stop, cpu_seconds, machine_busy, pid_cpu, report, stop_figures
from bench.pgcount import RoundTripCounter
from crypto.master import MasterKey
from crypto.vault import Keyring
from optout.tenants import TenantDirectory
from store.engine import open_database

__all__ = ["BenchError", "bench_cluster"]
PASSPHRASE = "küme ölçümü parolası 1"
# A backend publishes its counters to pg_stat_database within 10 s of going idle.
FLUSH_SECONDS = 11
IDLE_SECONDS = 10
TAKEOVER_RATE, TAKEOVER_RECIPIENTS = 300, 3000
ACTIVE = ("running", "waiting_unlock")


@dataclass
class Run:
    """One process count: its database, processes, tenant and what was measured."""
    n: int
    base_url: str
    tmp: Path
    counter: RoundTripCounter | None = None
    name: str = field(default_factory=lambda: f"izinli_bench_{secrets.token_hex(5)}")
    master_hex: str = field(default_factory=lambda: secrets.token_hex(32))
    servers: list[Server] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    own_queries: int = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.admin = await connect(self.base_url)
        await self.admin.execute(f'CREATE DATABASE "{self.name}"')
        url = make_url(self.base_url).set(database=self.name)
        self.url = url.render_as_string(hide_password=False)
        served = url
        if self.counter is not None:
            served = url.set(host="127.0.0.1", port=await self.counter.start())
        self.fleet = Fleet(self.tmp, served.render_as_string(hide_password=False),
                           self.master_hex)
        (self.tmp / "pass").write_text(PASSPHRASE, encoding="utf-8")
        tenant = json.loads(await self.fleet.cli("tenant", "create", "Küme Ölçümü",
                                                 "--passphrase-file", str(self.tmp / "pass")))
        self.tenant_id, self.key = tenant["tenant_id"], tenant["api_key"]
        self.conn, self._turn = await connect(self.url), asyncio.Lock()
        self.servers = await self.fleet.start(self.n, http)
        for server in self.servers:  # through each: works with and without key fan-out
            await self.api(server, "POST", "/vault/unlock", {"passphrase": PASSPHRASE})

    async def close(self) -> None:
        if getattr(self, "fleet", None) is not None:
            await self.fleet.stop()
        if getattr(self, "conn", None) is not None:
            await self.conn.close()
        if self.counter is not None:
            await self.counter.close()
        if getattr(self, "admin", None) is not None:
            await self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            await self.admin.close()

    # --- access ----------------------------------------------------------------------------

    async def api(self, server: Server, method: str, path: str, body=None,
                  ctype: str = "application/json"):
        data = body if isinstance(body, bytes) else (
            None if body is None else json.dumps(body).encode())
        async with self.http.request(
                method, f"http://127.0.0.1:{server.port}/api/v1{path}", data=data,
                headers={"Authorization": f"Bearer {self.key}", "Content-Type": ctype}) as r:
            raw = await r.read()
            if r.status >= 400:
                raise BenchError(f"{method} {path}: HTTP {r.status} {raw[:200]!r}")
        return json.loads(raw) if raw else None

    async def q(self, sql: str, *args) -> list:
        """A query of the bench's own on the run's database (counted, then subtracted)."""
        self.own_queries += 1
        async with self._turn:  # the prober and the progress poll share one connection
            return await self.conn.fetch(sql, *args)

    async def xacts(self) -> int:
        return await self.admin.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            self.name)

    def round_trips(self) -> int:
        return self.counter.round_trips if self.counter is not None else 0

    # --- setup -----------------------------------------------------------------------------

    async def setup(self, recipients: int, lines: int) -> None:
        per_line = recipients // lines
        self.campaigns: dict[str, str] = {}  # campaign → line
        for i in range(lines):
            line = await self._line(f"bench-{i}", 1_000_000)
            cid = await self._campaign(line, range(i * per_line, (i + 1) * per_line))
            self.campaigns[cid] = line
        self.stop_line = await self._line("stops", 1_000_000)
        self.takeover_line = await self._line("takeover", TAKEOVER_RATE)
        self.takeover = await self._campaign(
            self.takeover_line, range(recipients, recipients + TAKEOVER_RECIPIENTS))
        db = open_database(self.url)
        try:
            # The blind-index key is the tenant's (issue 17): unlocked here too, for the map.
            keyring = Keyring()
            await accounts.unlock(db, keyring, self.tenant_id, PASSPHRASE, 600)
            directory = TenantDirectory(MasterKey(bytes.fromhex(self.master_hex)), keyring)
            async with db.connect() as conn:
                index_of = await directory.indexer(conn, self.tenant_id)
        finally:
            await db.close()
        self.phone_of = {index_of(_phone(k)): _phone(k) for k in range(lines * per_line)}

    async def _line(self, name: str, rate: float) -> str:
        return (await self.api(self.servers[0], "POST", "/lines", {
            "channel": "sandbox", "name": name, "rate_per_second": rate}))["id"]

    async def _campaign(self, line: str, people: range) -> str:
        a = self.servers[0]
        list_id = (await self.api(a, "POST", "/lists", {"name": f"l{people.start}"}))["id"]
        csv = "phone,consent\n" + "".join(f"{_phone(k)},evet\n" for k in people)
        await self.api(a, "POST", f"/contacts/import?list_id={list_id}", csv.encode(),
                       "text/csv")
        return (await self.api(a, "POST", "/campaigns", {
            "name": f"c{people.start}", "line_id": line, "list_id": list_id,
            "template": "Merhaba, kampanyamız başladı."}))["id"]

    # --- phases ----------------------------------------------------------------------------

    async def idle(self) -> None:
        """Background cost of an idle cluster of this size, after the setup's counters have
        been published."""
        await asyncio.sleep(FLUSH_SECONDS)
        x0, r0, t0 = await self.xacts(), self.round_trips(), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        x1, r1, t1 = await self.xacts(), self.round_trips(), time.monotonic()
        self.figures["idle_xacts_s"] = (x1 - x0) / (t1 - t0)
        self.figures["idle_rt_s"] = (r1 - r0) / (t1 - t0)
        self._mark = (x1, r1, t1)

    async def send(self, stops: int) -> None:
        x1, r1, _ = self._mark
        own0, cpu0 = self.own_queries, await self._cpu()
        cids = list(self.campaigns)
        started = time.time()
        await asyncio.gather(*(self.api(self.servers[i % self.n], "POST",
                                        f"/campaigns/{cid}/start") for i, cid in
                               enumerate(cids)))
        done = asyncio.Event()
        self.stops: list[Stop] = []
        prober = asyncio.create_task(self._probe_stops(stops, done))
        try:
            self.figures["lines_per_process"] = await self._wait_sent(cids)
        finally:
            done.set()
            await prober
        finished, rt_done = time.monotonic(), self.round_trips()
        cpu1 = await self._cpu()
        own = self.own_queries - own0
        await asyncio.sleep(FLUSH_SECONDS)
        x2, t2 = await self.xacts(), time.monotonic()
        window_xacts = (x2 - x1) - self.figures["idle_xacts_s"] * (t2 - finished) - own
        await self._send_figures(cids, started, window_xacts, rt_done - r1, cpu0, cpu1)

    async def _send_figures(self, cids, started, window_xacts, window_rt, cpu0, cpu1) -> None:
        lines = list(self.campaigns.values())
        (count, first, last), = [tuple(r) for r in await self.q(
            "SELECT count(*), min(at), max(at) FROM sandbox_messages WHERE line_id = ANY($1)",
            lines)]
        dupes = (await self.q(
            "SELECT count(*) FROM (SELECT 1 FROM sandbox_messages WHERE line_id = ANY($1) "
            "GROUP BY line_id, to_index HAVING count(*) > 1) d", lines))[0][0]
        states = dict(await self.q("SELECT state, count(*) FROM outbox WHERE campaign_id = "
                                   "ANY($1) GROUP BY state", cids))
        f = self.figures
        f.update(messages=count, msgs_s=count / max(last - first, 1e-9),
                 start_to_last_s=last - started, duplicates=dupes, states=states,
                 xacts_msg=window_xacts / count,
                 rt_msg=window_rt / count if self.counter else None,
                 cpu=cpu_seconds(cpu0, cpu1))
        f.update(stop_figures(self.stops, await self._received_by(lines)))
        f["leases_lost"], f["marked_unknown"] = self._lease_events()

    def _lease_events(self) -> tuple[int, int]:
        """From the processes' logs: leases a process found taken over while it held them,
        and the messages a taker marked `unknown` (left in flight by the previous holder)."""
        lost = unknown = 0
        for line in self.fleet.logged():
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") == "line lease lost":
                lost += 1
            elif event.get("event", "").endswith("left in flight marked unknown"):
                unknown += int(event.get("count", 0))
        return lost, unknown

    async def _wait_sent(self, cids: list[str], timeout: float = 900) -> list[int]:
        """Waits until the campaigns are no longer running; answers how many of their lines
        each process held (the sample with the most lines held)."""
        lines = list({self.campaigns.get(c, self.takeover_line) for c in cids})
        deadline, spread = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            states = [r[0] for r in await self.q(
                "SELECT state FROM campaigns WHERE id = ANY($1) AND state = ANY($2)", cids,
                list(ACTIVE))]
            busy = len(states)
            if "waiting_unlock" in states:
                await self._unlock_again()
            held = await self.q("SELECT holder, count(*) FROM line_leases WHERE line_id = "
                                "ANY($1) AND holder <> '' GROUP BY holder", lines)
            if sum(c for _, c in held) > sum(spread.values()):
                spread = {h: c for h, c in held}
            if busy == 0:
                return sorted(spread.values(), reverse=True)
            await asyncio.sleep(0.25)
        raise BenchError(f"campaigns not finished within {timeout:.0f} s")

    async def _unlock_again(self) -> None:
        """A process lost its unlock (it was unlocked through each process at the start):
        counted and reported, and unlocked again so the run can finish."""
        if time.monotonic() - self.figures.get("_unlocked_again", 0.0) < 3:
            return  # the last one takes effect at the next dispatcher tick
        self.figures["_unlocked_again"] = time.monotonic()
        self.figures["unlocks_lost"] = self.figures.get("unlocks_lost", 0) + 1
        for server in self.servers:
            if server.alive:
                await self.api(server, "POST", "/vault/unlock", {"passphrase": PASSPHRASE})

    async def _probe_stops(self, wanted: int, done: asyncio.Event) -> None:
        """STOPs for people whose message is claimed or next in line on a running campaign."""
        line_of, pid_of = self.campaigns, {s.proc.pid: s for s in self.servers}
        posted: list[asyncio.Task] = []  # not waited for one by one: answers can be slow
        stopped: set[bytes] = set()
        while not done.is_set() and len(posted) < wanted:
            running = [r[0] for r in await self.q(
                "SELECT id FROM campaigns WHERE id = ANY($1) AND state = 'running'",
                list(line_of))]
            rows = running and await self.q(
                "SELECT c.address_index FROM outbox o JOIN contacts c ON c.id = o.contact_id "
                "WHERE o.campaign_id = $1 AND o.state IN ('sending', 'pending') "
                "ORDER BY o.id LIMIT 100", cid := random.choice(running))
            fresh = [bytes(r[0]) for r in rows or () if bytes(r[0]) not in stopped]
            if fresh:
                stopped.add(index := random.choice(fresh))
                posted.append(asyncio.create_task(self._stop(line_of[cid], index, pid_of)))
            await asyncio.sleep(0.1 + random.random() * 0.1)
        await asyncio.gather(*posted)

    async def _stop(self, line: str, index: bytes, pid_of: dict[int, Server]) -> None:
        rows = await self.q("SELECT holder FROM line_leases WHERE line_id = $1", line)
        holder = holder_pid(rows[0][0]) if rows else None
        others = [s for pid, s in pid_of.items() if pid != holder] or list(pid_of.values())
        via = random.choice(others)
        asked = time.time()
        await self.api(via, "POST", "/sandbox/inbound", {
            "line_id": self.stop_line, "from": self.phone_of[index], "text": "DUR"})
        answered = time.time()
        self.stops.append(Stop(line, index, asked, answered,
                               cross=holder is not None and via.proc.pid != holder))

    async def _received_by(self, lines: list[str]) -> dict[tuple[str, bytes], list[float]]:
        indexes = list({s.index for s in self.stops})
        got: dict[tuple[str, bytes], list[float]] = {}
        for line, index, at in await self.q(
                "SELECT line_id, to_index, at FROM sandbox_messages WHERE line_id = ANY($1) "
                "AND to_index = ANY($2)", lines, indexes):
            got.setdefault((line, bytes(index)), []).append(at)
        return got

    async def kill_holder(self) -> None:
        """kill -9 of the process holding a paced line mid-campaign."""
        line, cid = self.takeover_line, self.takeover
        await self.api(self.servers[0], "POST", f"/campaigns/{cid}/start")
        deadline = time.monotonic() + 60
        while (await self.q("SELECT count(*) FROM sandbox_messages WHERE line_id = $1",
                            line))[0][0] < TAKEOVER_RATE:
            if time.monotonic() > deadline:
                raise BenchError("the takeover campaign did not start sending")
            await asyncio.sleep(0.05)
        (holder, token), = [tuple(r) for r in await self.q(
            "SELECT holder, token FROM line_leases WHERE line_id = $1", line)]
        victim = next(s for s in self.servers if s.proc.pid == holder_pid(holder))
        self.fleet.kill(victim)
        killed = time.monotonic()
        while True:
            rows = await self.q("SELECT token FROM line_leases WHERE line_id = $1", line)
            if rows[0][0] > token:
                break
            if time.monotonic() - killed > 60:
                raise BenchError("no takeover within 60 s")
            await asyncio.sleep(0.01)
        self.figures["takeover_s"] = time.monotonic() - killed
        victim.proc.wait()
        await self._wait_sent([cid], timeout=120)
        states = dict(await self.q("SELECT state, count(*) FROM outbox WHERE campaign_id = $1 "
                                   "GROUP BY state", cid))
        dupes = (await self.q("SELECT count(*) FROM (SELECT 1 FROM sandbox_messages WHERE "
                              "line_id = $1 GROUP BY to_index HAVING count(*) > 1) d",
                              line))[0][0]
        self.figures["takeover"] = {"states": states, "duplicates": dupes}

    async def _cpu(self) -> dict:
        pg = [r[0] for r in await self.admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.name)]
        return {"at": time.monotonic(), "busy": machine_busy(),
                "izinli": sum(pid_cpu(s.proc.pid) for s in self.servers),
                "postgres": {pid: pid_cpu(pid) for pid in pg}}


async def bench_cluster(base_url: str, counts: list[int], recipients: int, lines: int,
                        stops: int, round_trips: bool) -> list[dict]:
    if not base_url.startswith("postgresql"):
        raise ValueError("bench cluster needs PostgreSQL: give --database-url or set "
                         "IZINLI_DATABASE_URL (postgresql+asyncpg://…)")
    if not counts or min(counts) < 1 or lines < 1 or recipients < lines:
        raise ValueError("need at least one process, one line and a recipient per line")
    version = await server_version(base_url)
    results, keep = [], False
    tmp = Path(tempfile.mkdtemp(prefix="izinli-bench-cluster-"))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            for n in counts:
                results.append(await _one(n, base_url, tmp / f"p{n}", http, recipients, lines,
                                          stops, round_trips))
    except BaseException:
        keep = True
        print(f"cluster bench: process logs kept in {tmp}", file=sys.stderr)
        raise
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results, recipients, lines, version, os.cpu_count() or 1, round_trips)
    return results


async def _one(n, base_url, tmp, http, recipients, lines, stops, round_trips) -> dict:
    tmp.mkdir(parents=True)
    counter = None
    if round_trips:
        url = make_url(base_url)
        counter = RoundTripCounter(url.host or "127.0.0.1", url.port or 5432)
    run = Run(n, base_url, tmp, counter)
    try:
        await run.open(http)
        await run.setup(recipients, lines)
        await run.idle()
        await run.send(stops)
        if n > 1:
            await run.kill_holder()
    finally:
        await run.close()
    run.figures["processes"] = n
    print(f"cluster bench: {n} process(es) done: {run.figures['msgs_s']:,.0f} msgs/s",
          flush=True)
    return run.figures


def _phone(k: int) -> str:
    return f"+90532{k:07d}"
