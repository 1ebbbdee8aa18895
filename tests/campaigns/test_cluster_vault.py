"""One unlock serves every process (issue 13 item 5), with real `izinli serve` processes on one
PostgreSQL database: the vault is unlocked through ONE process only; the others get the tenant
key sealed to their own ephemeral key (skipped without IZINLI_TEST_DATABASE_URL unless
IZINLI_REQUIRE_POSTGRES=1). And, in one process on both databases, a lock stops the round in
flight. Sends are read from the sandbox's own table, whose `at` is the instant the simulated
provider took each message."""
from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time

import sqlalchemy as sa
from real_server import PASSPHRASE, Api, wait_for

from dashboard.keys import db_key
from store.tables import outbox, sandbox_messages

N = 1500
RATE = 300  # msg/s: each campaign takes about five seconds
TRIES = 5


def _campaign(api: Api, name: str) -> tuple[str, str]:
    """(campaign id, line id): N consented recipients on a sandbox line of its own."""
    line = api("POST", "/lines", {"channel": "sandbox", "name": name,
                                  "rate_per_second": RATE})["id"]
    list_id = api("POST", "/lists", {"name": name})["id"]
    csv = "phone,consent\n" + "".join(f"+9053491{i:05d},evet\n" for i in range(N))
    api("POST", f"/contacts/import?list_id={list_id}", csv.encode(), "text/csv")
    cid = api("POST", "/campaigns", {"name": name, "line_id": line, "list_id": list_id,
                                     "template": "Merhaba"})["id"]
    return cid, line


def _until(check, timeout: float = 5.0) -> float:
    """Seconds until `check()` holds (polled as fast as the API answers)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not within the timeout"
        time.sleep(0.002)
    return time.monotonic() - started


def _unlocked(api: Api) -> bool:
    return api("GET", "/vault")["unlocked"]


def _figures(name: str, seconds: list[float]) -> str:
    return (f"{name}: p50 {statistics.median(seconds) * 1000:.1f} ms, "
            f"max {max(seconds) * 1000:.1f} ms over {len(seconds)}")


def test_unlock_and_lock_reach_every_process(cluster):
    (proc_a, a), (_, b) = cluster.start(2)
    # How fast an unlock through A lets B send, and a lock through B stops A.
    unlocks, locks = [], []
    for _ in range(TRIES):
        a("POST", "/vault/unlock", {"passphrase": PASSPHRASE})
        unlocks.append(_until(lambda: _unlocked(b)))
        b("POST", "/vault/lock")
        locks.append(_until(lambda: not _unlocked(a)))
    print("\n" + _figures("unlock through A -> B unlocked", unlocks))
    print(_figures("lock through B -> A locked", locks))
    assert max(unlocks) < 1.0 and max(locks) < 1.0

    # Unlocked through A only; A dies mid-campaign; B finishes without an unlock of its own.
    a("POST", "/vault/unlock", {"passphrase": PASSPHRASE})
    _until(lambda: _unlocked(b))
    cid, line = _campaign(a, "birinci")
    a("POST", f"/campaigns/{cid}/start")
    wait_for(b, cid, lambda c: c["counts"]["sent"] >= N // 4)
    os.killpg(proc_a.pid, signal.SIGKILL)
    proc_a.wait()
    killed = time.time()
    counts = wait_for(b, cid, lambda c: c["state"] == "completed", timeout=90)["counts"]
    assert counts["pending"] == counts["sending"] == 0, counts
    assert counts["sent"] + counts["unknown"] == N, counts
    after = cluster.query("SELECT count(*) AS n FROM sandbox_messages WHERE line_id = $1 "
                          "AND at > $2", line, killed)[0]["n"]
    assert after > 0, "nothing was sent after the unlocking process died"

    # A newcomer gets the unlock from a process that holds it (A, the unlocker, is gone).
    ((_, c),) = cluster.start(1)
    _until(lambda: _unlocked(c), timeout=5)

    # Two campaigns running; lock through B: nothing starts anywhere more than 1 s later.
    second = [_campaign(c, name) for name in ("ikinci", "üçüncü")]
    for cid, _ in second:
        c("POST", f"/campaigns/{cid}/start")
    for cid, _ in second:
        wait_for(b, cid, lambda x: x["counts"]["sent"] >= 100)
    b("POST", "/vault/lock")
    locked = time.time()
    time.sleep(2.5)
    lines = [line for _, line in second]
    last = cluster.query("SELECT max(at) AS at, count(*) AS n FROM sandbox_messages "
                         "WHERE line_id = ANY($1::text[])", lines)[0]
    print(f"last send started {(last['at'] - locked) * 1000:.0f} ms after the lock response")
    assert last["at"] <= locked + 1.0, last["at"] - locked
    assert last["n"] < 2 * N, "the campaigns finished: the lock came too late to test"
    for cid, _ in second:
        campaign = b("GET", f"/campaigns/{cid}")
        assert campaign["state"] == "waiting_unlock", campaign
        assert campaign["counts"]["pending"] > 0, campaign
    assert not _unlocked(b) and not _unlocked(c)


async def test_no_send_starts_after_a_lock(tenant):
    """A round holds up to half a second of sends; a lock stops what it has not started yet:
    here 64 sends are in flight (800 ms each) and the other 36 of the round wait for a worker."""
    await tenant.unlock()

    async def post(path, body, ctype=None):
        r = await tenant.call("POST", path, **({"data": body, "headers": {
            "Content-Type": ctype}} if ctype else {"json": body}))
        assert r.status in (200, 201), await r.text()
        return await r.json()
    line = (await post("/lines", {"channel": "sandbox", "name": "yavaş", "rate_per_second": 200,
                                  "simulate": {"latency_ms": 800}}))["id"]
    list_id = (await post("/lists", {"name": "l"}))["id"]
    csv = "phone,consent\n" + "".join(f"+9053492{i:05d},evet\n" for i in range(150))
    await post(f"/contacts/import?list_id={list_id}", csv.encode(), "text/csv")
    cid = (await post("/campaigns", {"name": "c", "line_id": line, "list_id": list_id,
                                     "template": "Merhaba"}))["id"]
    await post(f"/campaigns/{cid}/start", {})
    db = tenant.client.app[db_key]
    sending = sa.select(sa.func.count()).where(outbox.c.campaign_id == cid,
                                               outbox.c.state == "sending")
    started = time.monotonic()
    while True:  # the first sends are with the provider
        async with db.connect() as conn:
            if (await conn.execute(sending)).scalar():
                break
        assert time.monotonic() - started < 10, "nothing was sent"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert (await tenant.call("POST", "/vault/lock")).status == 204
    locked = time.time()
    await asyncio.sleep(2.0)
    settled = time.monotonic()
    while True:  # the sends in flight end (800 ms each; longer on a loaded machine)
        async with db.connect() as conn:
            in_flight = (await conn.execute(sending)).scalar()
            times = [r.at for r in await conn.execute(
                sa.select(sandbox_messages.c.at).where(sandbox_messages.c.line_id == line))]
        if not in_flight and times:
            break
        assert time.monotonic() - settled < 20, "the sends in flight never ended"
        await asyncio.sleep(0.1)
    assert times and max(times) <= locked, max(times) - locked
    campaign = await (await tenant.call("GET", f"/campaigns/{cid}")).json()
    assert campaign["state"] == "waiting_unlock", campaign
    assert len(times) < 150
