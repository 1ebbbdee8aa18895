"""Database faults mid-campaign, on a real `izinli serve`: a private PostgreSQL stopped with
`pg_ctl -m immediate`, and a full disk under SQLite. While the database is unusable the API,
webhooks and /healthz answer 503 with Retry-After; once it is back the campaign completes
without a restart, nothing stays `sending`, every message the sandbox delivered is `sent` and
nobody gets a message twice. Deliveries are counted from the sandbox's own table."""
from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from real_server import serve, wait_for

from campaigns import outbox
from dashboard.keys import db_key
from store.faults import DatabaseUnavailableError
from store.tables import outbox as outbox_table

IZINLI = shutil.which("izinli") or str(Path(sys.executable).with_name("izinli"))
PASSPHRASE = "doğru at pil zımba 42"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", body=None, headers=None):
    """(status, headers, parsed JSON body or None) — error statuses included."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, head, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, head, raw = e.code, dict(e.headers), e.read()
    try:
        return status, head, json.loads(raw) if raw else None
    except ValueError:
        return status, head, raw.decode(errors="replace")


class Api:
    def __init__(self, port: int, key: str):
        self.root, self.key = f"http://127.0.0.1:{port}", key

    def raw(self, method: str, path: str, body=None, ctype="application/json"):
        data = None if body is None else (body if isinstance(body, bytes)
                                          else json.dumps(body).encode())
        return _request(self.root + "/api/v1" + path, method, data, {
            "Authorization": f"Bearer {self.key}", "Content-Type": ctype})

    def __call__(self, method: str, path: str, body=None, ctype="application/json"):
        status, _, answer = self.raw(method, path, body, ctype)
        assert status < 300, f"{method} {path}: {status} {answer!r:.300}"
        return answer

    def health(self):
        return _request(self.root + "/healthz")


def _tenant(tmp_path: Path, env: dict) -> str:
    (tmp_path / "pass").write_text(PASSPHRASE)
    out = subprocess.run([IZINLI, "tenant", "create", "Kesinti Testi", "--passphrase-file",
                          str(tmp_path / "pass"), "--data-dir", str(tmp_path / "var")],
                         env=env, capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)["api_key"]


def _campaign(api: Api, n: int, rate: int) -> tuple[str, str, str, list[str]]:
    """(campaign id, line id, list id, phones): a started campaign of n on a sandbox line."""
    api("POST", "/vault/unlock", {"passphrase": PASSPHRASE})
    line = api("POST", "/lines", {"channel": "sandbox", "name": "yavaş",
                                  "rate_per_second": rate})["id"]
    list_id = api("POST", "/lists", {"name": "hepsi"})["id"]
    phones = [f"+9053410{i:05d}" for i in range(n)]
    csv = "phone,consent\n" + "".join(f"{p},evet\n" for p in phones)
    api("POST", f"/contacts/import?list_id={list_id}", csv.encode(), "text/csv")
    cid = api("POST", "/campaigns", {"name": "kesinti", "line_id": line, "list_id": list_id,
                                     "template": "Merhaba"})["id"]
    api("POST", f"/campaigns/{cid}/start")
    return cid, line, list_id, phones


def _assert_unavailable(answer, kind: str | None = None) -> None:
    status, headers, body = answer
    assert status == 503, answer
    assert int(headers.get("Retry-After", "0")) > 0, headers
    if kind is None:
        assert body["error"]["code"] == "database_unavailable", body
    else:
        assert body == {"status": "unavailable", "database": kind}, body


# Straight from the tables (SQL written with ? marks): outbox states of the campaign, and the
# outbox state of every message the sandbox stored as delivered — to recipients who never
# wrote STOP, since the STOP's confirmation is a sandbox delivery too.
_STATES = "SELECT state, count(*) FROM outbox WHERE campaign_id = ? GROUP BY state"
_DELIVERED = ("SELECT o.state, count(*) FROM sandbox_messages s JOIN contacts c "
              "ON c.tenant_id = s.tenant_id AND c.address_index = s.to_index "
              "JOIN outbox o ON o.contact_id = c.id AND o.campaign_id = ? "
              "WHERE s.line_id = ? AND NOT EXISTS (SELECT 1 FROM suppressions p WHERE "
              "p.tenant_id = s.tenant_id AND p.address_index = s.to_index) GROUP BY o.state")


def _campaign_deliveries(api: Api, line: str) -> Counter:
    """Campaign messages per recipient, as the sandbox's phones received them."""
    return Counter(m["to"] for m in api("GET", "/sandbox/messages")["messages"]
                   if m["line_id"] == line and m["text"].startswith("Merhaba"))


def _check_healed(query, received: Counter, cid: str, line: str, n: int) -> None:
    states = Counter(dict(query(_STATES, (cid,))))
    delivered = Counter(dict(query(_DELIVERED, (cid, line))))
    assert states["sending"] == states["pending"] == 0, states
    assert set(delivered) == {"sent"}, f"delivered but recorded as {delivered}"
    assert set(received.values()) == {1}, "a recipient got the campaign twice"
    assert states["failed"] == 0, states
    # Nobody lost: everyone got it, was skipped (the STOP), or is reported unknown; and
    # `sent` is exactly what the phones received.
    assert states["sent"] + states["skipped"] + states["unknown"] == n, states
    assert len(received) == states["sent"], (len(received), states)


# --- In process: the dispatcher's own bookkeeping meets an outage ----------------------------

async def _api_campaign(t, phones: list[str], rate: int = 200, send_at: float | None = None):
    """(campaign id, line id), started: running now, or scheduled (outbox built, not sent)."""
    r = await t.call("POST", "/lines", json={"channel": "sandbox", "name": f"hat-{len(phones)}",
                                             "rate_per_second": rate})
    line = (await r.json())["id"]
    list_id = (await (await t.call("POST", "/lists", json={"name": "l"})).json())["id"]
    csv = "phone,consent\n" + "".join(f"{p},evet\n" for p in phones)
    r = await t.call("POST", f"/contacts/import?list_id={list_id}", data=csv.encode(),
                     headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    r = await t.call("POST", "/campaigns", json={
        "name": "c", "line_id": line, "list_id": list_id, "template": "Merhaba",
        **({"send_at": send_at} if send_at else {})})
    cid = (await r.json())["id"]
    assert (await t.call("POST", f"/campaigns/{cid}/start")).status == 200
    return cid, line


async def _completed(tenant, cid: str, timeout: float = 20) -> dict:
    """The campaign once it has completed (through the API)."""
    deadline = time.monotonic() + timeout
    while (c := await (await tenant.call("GET", f"/campaigns/{cid}")).json())["state"] \
            != "completed":
        assert time.monotonic() < deadline, c
        await asyncio.sleep(0.05)
    return c


async def _states(db, ids: list[int]) -> list[str]:
    async with db.connect() as conn:
        found = dict(list(await conn.execute(sa.select(outbox_table.c.id, outbox_table.c.state)
                                             .where(outbox_table.c.id.in_(ids)))))
    return [found[i] for i in ids]


@pytest.mark.parametrize("failing", ["claim", "claimed"])
async def test_round_outcomes_wait_for_the_database(tenant, monkeypatch, failing):
    """A round's results are kept through an outage and written once the database is back
    (delivered messages end `sent`); a claim that failed sends nothing and its rows, found by
    the claim's token, go back to pending; the line task carries on by itself. `claimed`: on
    SQLite the claim's rows are read after its write commits (outbox.mark_claimed): a read
    that fails leaves them `sending` unread, and they go back to pending the same way."""
    await tenant.unlock()
    db = tenant.client.app[db_key]
    if failing == "claimed" and db.dialect != "sqlite":
        pytest.skip("PostgreSQL claims and reads the rows in one statement")
    # The claim's write is outbox.claim on PostgreSQL, outbox.mark_claimed on SQLite.
    steps = {"claim": "claim" if db.dialect == "postgresql" else "mark_claimed",
             "claimed": "claimed", "record": "record"}
    failures = {failing: 1, "record": 3}
    unmarked: list[int] = []

    def flaky(name: str):
        real = getattr(outbox, steps[name])

        async def call(conn, *args):
            if failures[name] and args[0]:
                failures[name] -= 1
                raise DatabaseUnavailableError("unreachable")
            return await real(conn, *args)
        return call
    real_unclaim = outbox.unclaim

    async def unclaim(conn, campaign_ids, token):
        unmarked.append(token)
        return await real_unclaim(conn, campaign_ids, token)
    monkeypatch.setattr(outbox, steps[failing], flaky(failing))
    monkeypatch.setattr(outbox, "record", flaky("record"))
    monkeypatch.setattr(outbox, "unclaim", unclaim)
    phones = [f"+9053430{i:05d}" for i in range(20)]
    cid, _ = await _api_campaign(tenant, phones)
    c = await _completed(tenant, cid)
    assert failures == {failing: 0, "record": 0}
    assert len(unmarked) == 1  # the failed claim's rows (by its token), back to pending
    assert c["counts"]["sent"] == 20 and c["counts"]["unknown"] == 0, c
    messages = (await (await tenant.call("GET", "/sandbox/messages")).json())["messages"]
    assert sorted(m["to"] for m in messages) == phones  # each once: nothing sent twice


async def test_a_claim_whose_rows_cannot_be_read_gives_them_back(tenant, monkeypatch):
    """SQLite reads a claim's rows after its write commits: a read that breaks for any reason
    (here a bug, not an outage) leaves them `sending` with nobody holding them; they go back
    to pending by the claim's token and are sent once — never `unknown` (nothing was sent)."""
    await tenant.unlock()
    db = tenant.client.app[db_key]
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL claims and reads the rows in one statement")
    real, broken = outbox.claimed, []

    async def claimed(conn, *args):
        if not broken:
            broken.append(1)
            raise RuntimeError("a bug in the read")
        return await real(conn, *args)
    monkeypatch.setattr(outbox, "claimed", claimed)
    phones = [f"+9053460{i:05d}" for i in range(12)]
    cid, _ = await _api_campaign(tenant, phones)
    c = await _completed(tenant, cid)
    assert broken
    assert c["counts"]["sent"] == 12 and c["counts"]["unknown"] == 0, c
    messages = (await (await tenant.call("GET", "/sandbox/messages")).json())["messages"]
    assert sorted(m["to"] for m in messages) == phones


async def test_line_reconcile_turns_only_its_unheld_sending_rows_unknown(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    db = tenant.client.app[db_key]
    later = time.time() + 3600  # scheduled: the outbox is built, nothing is sent
    ca, line_a = await _api_campaign(tenant, [f"+9053440{i:05d}" for i in range(3)],
                                     send_at=later)
    cb, _ = await _api_campaign(tenant, [f"+9053450{i:05d}" for i in range(2)], send_at=later)
    async with db.connect() as conn:
        ids = {c: [r[0] for r in await conn.execute(sa.select(outbox_table.c.id).where(
            outbox_table.c.campaign_id == c).order_by(outbox_table.c.id))] for c in (ca, cb)}
    a, b = ids[ca], ids[cb]
    async with db.begin() as conn:
        await conn.execute(outbox_table.update().where(outbox_table.c.id.in_(a + b)).values(
            state="sending", claim_token=7))
    async with db.begin() as conn:
        assert await outbox.recover_in_flight(conn, line_a, {a[0]}) == 2
    assert await _states(db, a + b) == ["sending", "unknown", "unknown", "sending", "sending"]
    async with db.begin() as conn:
        assert await outbox.unclaim(conn, [ca, cb], 7) == 3
    assert await _states(db, a + b) == ["pending", "unknown", "unknown", "pending", "pending"]


# --- PostgreSQL: a private cluster, stopped hard mid-campaign ---------------------------------

class PrivateCluster:
    """A throw-away PostgreSQL cluster owned by the `postgres` OS user, on its own port and
    socket directory: stopping it never touches the shared server on 5432."""

    def __init__(self, bindir: Path, home: Path, port: int):
        self.bindir, self.home, self.port = bindir, home, port
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, timeout=60)

    def initdb(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.home / "data"), "-A", "trust",
                  "-U", "postgres", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        # fsync off: a hard stop kills processes, not the machine, so nothing is lost.
        options = (f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.home / "data"), "-l",
                  str(self.home / "log"), "-w", "-t", "30", "-o", options, "start")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.home / "data"), "-m",
                  "immediate", "-w", "stop")

    def query(self, sql: str, params: tuple) -> list[tuple]:
        import asyncpg

        async def fetch():
            conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
            try:
                counter = iter(range(1, 100))
                return [tuple(r) for r in await conn.fetch(
                    re.sub(r"\?", lambda _: f"${next(counter)}", sql), *params)]
            finally:
                await conn.close()
        return asyncio.run(fetch())


@pytest.fixture
def private_pg():
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bindirs or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("a private PostgreSQL cluster needs root, runuser and the server binaries")
    home = Path(tempfile.mkdtemp(prefix="izinli-pg-"))
    shutil.chown(home, "postgres")
    cluster = PrivateCluster(Path(bindirs[-1]), home, _port())
    try:
        cluster.initdb()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_database_outage_heals_without_restart(tmp_path, private_pg):
    n, rate, outage = 600, 60, 4.0
    env = {**os.environ, "IZINLI_KDF": "min", "IZINLI_DATABASE_URL": private_pg.url}
    env.pop("IZINLI_MASTER_KEY", None)
    key = _tenant(tmp_path, env)
    port = _port()
    with serve(tmp_path, port, env):
        api = Api(port, key)
        cid, line, _, _ = _campaign(api, n, rate)
        wait_for(api, cid, lambda c: c["counts"]["sent"] >= n // 5, timeout=20)
        # Counts move when a round's results commit: half a round later the next round is
        # sending, so the stop cuts through deliveries and their bookkeeping.
        time.sleep(0.25)
        private_pg.stop()
        stopped = time.monotonic()
        _assert_unavailable(api.health(), "unreachable")
        _assert_unavailable(api.raw("POST", "/lists", {"name": "kesintide"}))
        _assert_unavailable(api.raw("GET", f"/campaigns/{cid}"))
        time.sleep(max(0.0, outage - (time.monotonic() - stopped)))
        private_pg.start()
        # No restart of izinli: the same process heals and finishes the campaign.
        c = wait_for(api, cid, lambda c: c["state"] == "completed", timeout=30)
        assert api.health()[0] == 200
        received = _campaign_deliveries(api, line)
    assert c["counts"]["sending"] == c["counts"]["pending"] == 0, c
    _check_healed(private_pg.query, received, cid, line, n)


# --- SQLite: the data directory on a small tmpfs, filled mid-campaign -------------------------

@pytest.fixture
def small_disk(tmp_path):
    data = tmp_path / "var"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()[:200]}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True)


def _fill(directory: Path) -> Path:
    """A file that takes every free byte of the filesystem."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk[:size])
    finally:
        os.close(fd)
    return filler


def _truncate_wal(db: Path) -> None:
    """Checkpoints the WAL into the database and empties it, so the next write needs new disk
    space: otherwise writes that fit in the WAL's old length succeed for a while on a full
    disk, and the moment they start failing is chance (a reader must then keep the WAL from
    being reused once checkpointed: see the test)."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        for _ in range(50):
            if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                return
            time.sleep(0.02)
        raise AssertionError("could not checkpoint the WAL")
    finally:
        conn.close()


def test_disk_full_answers_503_and_heals(tmp_path, small_disk):
    n, rate = 800, 100
    env = {**os.environ, "IZINLI_KDF": "min"}
    env.pop("IZINLI_MASTER_KEY", None)
    env.pop("IZINLI_DATABASE_URL", None)
    key = _tenant(tmp_path, env)
    port = _port()
    with serve(tmp_path, port, env):
        api = Api(port, key)
        cid, line, list_id, phones = _campaign(api, n, rate)
        wait_for(api, cid, lambda c: c["counts"]["sent"] >= n // 4, timeout=20)
        stop = {"line_id": line, "from": phones[-1], "text": "DUR"}
        more = "phone,consent\n" + "".join(f"+9053420{i:05d},evet\n" for i in range(300))
        _truncate_wal(small_disk / "izinli.db")
        # A reader from here on keeps the WAL from starting over at its beginning once the
        # server's checkpoints have copied it back: every write from now on needs new space.
        reader = sqlite3.connect(small_disk / "izinli.db", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM alembic_version").fetchall()
        filler = _fill(small_disk)
        try:
            answers = [api.raw("POST", "/sandbox/inbound", stop),
                       api.raw("POST", f"/contacts/import?list_id={list_id}", more.encode(),
                               "text/csv"),
                       api.raw("POST", "/lists", {"name": "dolu"})]
            health = api.health()
            time.sleep(2.0)  # the line's rounds run into the full disk meanwhile
        finally:
            filler.unlink()
            reader.close()
        for answer in answers:
            _assert_unavailable(answer)
        _assert_unavailable(health, "disk_full")
        # The provider redelivers the STOP after the 503; now it lands.
        assert api("POST", "/sandbox/inbound", stop)["intent"] == "stop"
        c = wait_for(api, cid, lambda c: c["state"] == "completed", timeout=30)
        assert api.health()[0] == 200
        received = _campaign_deliveries(api, line)
    assert c["counts"]["sending"] == c["counts"]["pending"] == 0, c

    def query(sql: str, params: tuple) -> list[tuple]:
        conn = sqlite3.connect(small_disk / "izinli.db")
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    _check_healed(query, received, cid, line, n)
