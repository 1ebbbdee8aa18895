"""STOP reaches every process at once (issue 13, item 4): two real `izinli serve` processes
on one PostgreSQL database; A holds the line and sends a campaign, recipients reply STOP
through B. A STOP commits on B, the database announces it (LISTEN/NOTIFY) and A's dispatcher,
which reads its watch right before each provider call, starts nothing to that person later.

"Send started" is the sandbox's own `at`: taken by the sandbox channel at the first line of
its send, before any await, which the dispatcher reaches with no await after its watch check;
both processes share this machine's clock. The STOP's response time is taken by the test
when the HTTP answer is in, so the 100 ms are counted from a moment after the commit.

The vault is unlocked through EACH process (sealed key fan-out is built separately).
Skipped without IZINLI_TEST_DATABASE_URL unless IZINLI_REQUIRE_POSTGRES=1."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime

import asyncpg
from real_server import PASSPHRASE, Api, Cluster, wait_for
from sqlalchemy.engine import make_url

from crypto.blind import blind_index, open_lookup_key
from crypto.keys import unwrap_secret

N = 900
RATE = 100  # msg/s: nine seconds of sending, rounds of about half a second (50 rows)
STOPS = 12  # one per round, on the round's last row
TEMPLATE = "Kampanya duyurusu"
LATE = 0.1  # the target: nothing starts more than 100 ms after the STOP's answer


def _phones() -> list[str]:
    return [f"+9053491{i:05d}" for i in range(N)]


def _indexes(cluster: Cluster, phones: list[str]) -> dict[bytes, str]:
    """Blind index → phone, computed as the service does (the tenant's lookup key, opened with
    its secret key: the passphrase), to name the recipients of rows seen in the outbox."""
    (tenant,) = cluster.query("SELECT public_key, wrapped_secret, sealed_lookup_key "
                              "FROM tenants")
    secret = unwrap_secret(bytes(tenant["wrapped_secret"]), PASSPHRASE)
    key = open_lookup_key(bytes(tenant["sealed_lookup_key"]), bytes(tenant["public_key"]),
                          secret)
    return {blind_index(key, p): p for p in phones}


def _holder_first(cluster: Cluster, procs, line: str) -> list[Api]:
    """[the line's lease holder, the other process]."""
    deadline = time.monotonic() + 10
    while not (rows := cluster.query("SELECT holder FROM line_leases WHERE line_id = $1",
                                     line)):
        assert time.monotonic() < deadline, "nobody took the line"
        time.sleep(0.02)
    pid = int(rows[0]["holder"].split(":")[1])
    return [api for proc, api in sorted(procs, key=lambda p: p[0].pid != pid)]


class _Outbox:
    """One connection kept open to watch A's claims closely (a connection per query would
    cost tens of milliseconds of the half second a round lasts)."""

    def __init__(self, cluster: Cluster, cid: str):
        url = make_url(cluster.db_url)
        self.cid, self.loop, self.seen = cid, asyncio.new_event_loop(), set()
        self.conn = self.loop.run_until_complete(asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password,
            database=url.database))

    def new_round(self) -> bytes | None:
        """When A has just claimed a round: the recipient of its last row, which A sends
        about half a second later (only the watch can stop that one now: it is claimed)."""
        row = self.loop.run_until_complete(self.conn.fetchrow(
            "SELECT o.id, c.address_index FROM outbox o JOIN contacts c ON c.id = o.contact_id "
            "WHERE o.campaign_id = $1 AND o.state = 'sending' ORDER BY o.id DESC LIMIT 1",
            self.cid))
        if row is None or row["id"] in self.seen:
            return None
        self.seen.add(row["id"])
        return bytes(row["address_index"])

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def _started(api: Api, phone: str) -> list[float]:
    """When each campaign message to `phone` started (the STOP's confirmation excluded)."""
    got = api("GET", f"/sandbox/messages?to={phone.replace('+', '%2B')}")["messages"]
    return [datetime.fromisoformat(m["at"]).timestamp() for m in got
            if m["text"].startswith(TEMPLATE)]


def test_stop_through_one_process_stops_all(cluster):
    procs = cluster.start(2)
    for _, api in procs:  # through each: an unlock does not reach the other process yet
        api("POST", "/vault/unlock", {"passphrase": PASSPHRASE})
    first = procs[0][1]
    line = first("POST", "/lines", {"channel": "sandbox", "name": "dur",
                                    "rate_per_second": RATE})["id"]
    list_id = first("POST", "/lists", {"name": "hepsi"})["id"]
    phones = _phones()
    first("POST", f"/contacts/import?list_id={list_id}",
          ("phone,consent\n" + "".join(f"{p},evet\n" for p in phones)).encode(), "text/csv")
    cid = first("POST", "/campaigns", {"name": "c", "line_id": line, "list_id": list_id,
                                       "template": TEMPLATE})["id"]
    first("POST", f"/campaigns/{cid}/start")
    sender, other = _holder_first(cluster, procs, line)  # A sends; STOPs go to B
    phone_of = _indexes(cluster, phones)

    answered: dict[str, float] = {}  # phone → when its STOP's answer was in
    watching = _Outbox(cluster, cid)
    deadline = time.monotonic() + 30
    try:
        while len(answered) < STOPS and time.monotonic() < deadline:
            index = watching.new_round()
            if index is None:
                time.sleep(0.002)
                continue
            phone = phone_of[index]
            other("POST", "/sandbox/inbound", {"line_id": line, "from": phone, "text": "DUR"})
            answered[phone] = time.time()
    finally:
        watching.close()
    assert len(answered) == STOPS, "the campaign ended before every STOP was sent"
    campaign = wait_for(sender, cid, lambda c: c["state"] == "completed")

    late = [(phone, round(start - at, 3)) for phone, at in answered.items()
            for start in _started(other, phone) if start > at + LATE]
    assert late == [], f"sends started after a STOP answered (seconds after): {late}"
    # Each STOP named a row A had already claimed, so its claim could not refuse it: the ones
    # that came before their send were skipped by A's watch, with the STOP's reason. (Without
    # the notices none is; how many make it depends on this machine's load.)
    stopped = sum(not _started(other, phone) for phone in answered)
    assert stopped >= 1, "no STOP came before its send: nothing shows A's watch at work"
    assert campaign["skipped_by_reason"] == {"opted_out": stopped}, campaign
    assert campaign["counts"]["sent"] == N - stopped, campaign
