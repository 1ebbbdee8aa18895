"""optout.revocations: a revocation committed through one process reaches every process's
watch when it commits (PostgreSQL triggers from migration 0022, LISTEN/NOTIFY; here two
engines stand for two processes), nothing else does, and what a lost listening connection
missed is read back from the tables."""
from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa

from izinli.app import open_store
from optout import ledger, suppression
from optout.ledger import ConsentEvent
from optout.revocations import Notice, RevocationNotices, parse
from optout.watch import KEEP_SECONDS, RevocationWatch
from store.bus import Bus
from store.tables import suppressions, tenants

STOPPED, REVOKED, GRANTED, ROLLED_BACK, OTHER_SCOPE = (bytes([c]) * 16 for c in b"srgbo")


async def _tenant(db) -> str:
    async with db.begin() as conn:
        await conn.execute(tenants.insert().values(
            id="t1", name="x", created_at=1.0, public_key=b"p", wrapped_secret=b"w",
            wrapped_lookup_key=b"l"))
    return "t1"


def _event(index: bytes, status: str, at: float | None = None) -> ConsentEvent:
    return ConsentEvent(address_index=index, consent_type="MESAJ", status=status,
                        source="HS_WEB", recipient_type="individual", evidence_sealed=b"e",
                        occurred_at=time.time() if at is None else at)


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _revoke_some(db, tenant: str) -> None:
    """A STOP's suppression, a consent revoked (dated a year back, recorded now), a consent
    granted, a suppression of another channel, and a suppression rolled back."""
    async with db.begin() as conn:
        await suppression.suppress(conn, tenant, STOPPED, "MESAJ", "opted_out", "inbound", b"s")
        await ledger.record(conn, tenant, [_event(REVOKED, "granted", time.time() - 9e7),
                                           _event(GRANTED, "granted")])
        await suppression.suppress(conn, tenant, OTHER_SCOPE, "TELEGRAM", "blocked", "x", b"s")
    async with db.begin() as conn:
        await ledger.record(conn, tenant, [_event(REVOKED, "revoked", time.time() - 3e7)])
    with pytest.raises(RuntimeError):
        async with db.begin() as conn:
            await suppression.suppress(conn, tenant, ROLLED_BACK, "*", "manual", "x", b"s")
            raise RuntimeError("abort")


def _assert_noted(watch: RevocationWatch, tenant: str) -> None:
    """Each revocation refuses what the claim and the gate refuse, with the gate's reason."""
    assert watch.revoked(tenant, STOPPED, "MESAJ", commercial=False) == "opted_out"
    assert watch.revoked(tenant, REVOKED, "MESAJ", commercial=True) == "opted_out"
    assert watch.revoked(tenant, REVOKED, "MESAJ", commercial=False) is None  # consent only
    assert watch.revoked(tenant, OTHER_SCOPE, "MESAJ", commercial=True) is None  # Telegram's
    assert watch.revoked(tenant, OTHER_SCOPE, "TELEGRAM", commercial=False) == "blocked"
    for index in (GRANTED, ROLLED_BACK):
        assert watch.revoked(tenant, index, "MESAJ", commercial=True) is None


async def test_a_revocation_committed_elsewhere_reaches_this_watch(config, db):
    if db.dialect != "postgresql":
        pytest.skip("SQLite serves one process (a second one is refused): nobody to tell")
    tenant = await _tenant(db)
    other = await open_store(config)  # process B: its own engine, bus and watch
    bus, watch = Bus(other), RevocationWatch()
    RevocationNotices(bus, other, watch)
    heard: list[str] = []
    bus.subscribe("revoked", heard.append)
    await bus.start()
    try:
        await _revoke_some(db, tenant)  # committed through process A's engine
        await _until(lambda: len(heard) >= 3)
        _assert_noted(watch, tenant)
        # Nothing new is announced when nothing new is revoked: a re-dated suppression, a
        # revoked consent revoked again, a grant.
        async with db.begin() as conn:
            await suppression.suppress(conn, tenant, STOPPED, "MESAJ", "manual", "x", b"s")
            await ledger.record(conn, tenant, [_event(REVOKED, "revoked"),
                                               _event(GRANTED, "granted")])
        marker = asyncio.Event()  # notices arrive in commit order: this one comes last
        bus.subscribe("marker", lambda _p: marker.set())
        await bus.announce("marker")
        await asyncio.wait_for(marker.wait(), 5)
        assert sorted((n.tenant_id, n.scope, n.kind) for n in map(parse, heard)) == [
            (tenant, "MESAJ", "consent"), (tenant, "MESAJ", "opted_out"),
            (tenant, "TELEGRAM", "blocked")]
    finally:
        await bus.stop()
        await other.close()


async def test_catch_up_reads_back_the_revocations_of_the_window(db):
    tenant = await _tenant(db)
    await _revoke_some(db, tenant)
    async with db.begin() as conn:  # an opt-out older than the window is the claim's business
        await suppression.suppress(conn, tenant, b"z" * 16, "*", "opted_out", "x", b"s")
        await conn.execute(sa.update(suppressions).where(
            suppressions.c.address_index == b"z" * 16).values(
            created_at=time.time() - KEEP_SECONDS - 60))
    watch = RevocationWatch()
    assert await RevocationNotices(Bus(db), db, watch).catch_up() == 3
    _assert_noted(watch, tenant)
    assert watch.revoked(tenant, b"z" * 16, "MESAJ", commercial=True) is None


async def test_what_a_lost_connection_missed_is_caught_up(config, db):
    if db.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    tenant = await _tenant(db)
    bus, watch = Bus(db, health_seconds=0.5), RevocationWatch()
    RevocationNotices(bus, db, watch)
    await _revoke_some(db, tenant)  # before this process listens: its notices are lost to it
    await bus.start()
    try:
        assert watch.revoked(tenant, STOPPED, "MESAJ", commercial=True) is None
        async with db.begin() as conn:  # the database ends the listening connection
            await conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                "query LIKE 'LISTEN%' AND datname = current_database()"))
        await _until(lambda: watch.revoked(tenant, STOPPED, "MESAJ", commercial=True), 10)
        _assert_noted(watch, tenant)
    finally:
        await bus.stop()


def test_notices_parse_and_refuse_garbage():
    assert parse("t1 * erasure\nabcd 0102") == Notice("t1", "*", "erasure",
                                                      [b"\xab\xcd", b"\x01\x02"])
    watch = RevocationWatch()
    parse("t1 * erasure\nabcd").note_in(watch)
    assert watch.revoked("t1", b"\xab\xcd", "MESAJ", commercial=False) == "suppressed"
    for bad in ("t1:ab", "t1 *\nab", "t1 * consent\nzz", ""):
        with pytest.raises(ValueError):
            parse(bad)
