"""Sealed key fan-out (dashboard.vault_fanout, dashboard.cluster_registry) between two or
three "processes" in one test: each its own engine, bus, keyring and ephemeral key pair on one
database. On PostgreSQL the notices travel through LISTEN/NOTIFY; on SQLite (where production
shares nothing: one process) sharing is switched on by hand and the beats are driven by the
test, so every statement runs on both databases."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

import accounts
from crypto.keys import unwrap_secret
from crypto.master import MasterKey
from crypto.vault import Keyring
from dashboard import cluster_registry, vault_fanout
from dashboard.vault_fanout import VaultFanout
from izinli.runtime import open_store
from store import raw
from store.bus import Bus

PASSPHRASE = "doğru at pil zımba 42"


class Proc:
    def __init__(self, db, bus, keyring, fanout):
        self.db, self.bus, self.keyring, self.fanout = db, bus, keyring, fanout

    def unlocked(self, tenant_id: str) -> bool:
        return self.keyring.is_unlocked(tenant_id)

    def remaining(self, tenant_id: str) -> float:
        return self.keyring.expires_at(tenant_id) - time.monotonic()


@pytest.fixture
def fast(monkeypatch):
    """Beats every 0.1 s; a process silent for 0.6 s is dead."""
    monkeypatch.setattr(cluster_registry, "BEAT_SECONDS", 0.1)
    monkeypatch.setattr(cluster_registry, "LIFE_SECONDS", 0.6)


@pytest.fixture
async def world(config):
    master = MasterKey(os.urandom(32))
    procs: list[Proc] = []

    async def start() -> Proc:
        db = await open_store(config)
        bus = Bus(db)
        await bus.start()
        keyring = Keyring()
        fanout = VaultFanout(db, bus, keyring, master, shared=True)
        await fanout.start()
        procs.append(Proc(db, bus, keyring, fanout))
        return procs[-1]

    first = await start()
    tenant_id, _ = await accounts.create_tenant(first.db, master, "Örnek", PASSPHRASE,
                                                kdf="min")
    row = await accounts.tenant_row(first.db, tenant_id)
    world = type("World", (), {})()
    world.start, world.procs, world.master, world.tenant = start, procs, master, tenant_id
    world.secret = unwrap_secret(row.wrapped_secret, PASSPHRASE)
    world.first = first
    yield world
    for p in procs:
        await kill(p, clean=True)


async def kill(p: Proc, clean: bool = False) -> None:
    """Ends a process: cleanly (leaves the cluster) or as kill -9 would (rows stay behind)."""
    if p.db.engine is None:
        return
    if clean:
        await p.fanout.stop()
    elif p.fanout._task is not None:
        p.fanout._task.cancel()
    await p.bus.stop()
    await p.db.close()
    p.db.engine = None


async def eventually(check, procs, timeout: float = 3.0) -> float:
    """Seconds until `check()` holds. On SQLite nobody hears notices: the test beats."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not within the timeout"
        if procs[0].db.dialect == "sqlite":
            for p in procs:
                if p.db.engine is not None:
                    await p.fanout.tick()
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def rows(p: Proc, sql: str, params: tuple = ()) -> list:
    async with p.db.connect() as conn:
        return await raw.fetch(conn, sql, params)


async def test_unlock_through_one_process_reaches_the_other_and_lock_ends_it(world):
    a = world.first
    b = await world.start()
    t = world.tenant
    await a.fanout.unlock(t, world.secret, 60)
    assert a.unlocked(t)
    assert await eventually(lambda: b.unlocked(t), [a, b]) < 1.0
    assert 55 < b.remaining(t) <= 60  # the same end as the unlock, not a fresh term
    shares = await rows(a, "SELECT process_id, sealed FROM vault_shares WHERE tenant_id = ?",
                        (t,))
    assert {p for p, _ in shares} == {a.fanout.process_id, b.fanout.process_id}
    assert all(world.secret not in bytes(sealed) for _, sealed in shares)

    await b.fanout.lock(t)
    assert not b.unlocked(t)
    assert await eventually(lambda: not a.unlocked(t), [a, b]) < 1.0
    assert await rows(a, "SELECT 1 FROM vault_shares") == []


async def test_a_newcomer_gets_its_share_and_outlives_the_unlocker(world, fast):
    a, t = world.first, world.tenant
    await a.fanout.unlock(t, world.secret, 60)
    c = await world.start()  # started after the unlock: a holder seals one to it
    await eventually(lambda: c.unlocked(t), [a, c])
    await kill(a)  # as kill -9: its rows stay until they expire
    alive = [c]

    async def purged() -> bool:
        holders = await rows(c, "SELECT process_id FROM vault_shares WHERE tenant_id = ?", (t,))
        return [p for p, in holders] == [c.fanout.process_id]
    started = time.monotonic()
    while not await purged():
        assert time.monotonic() - started < 5, "the dead process's share was not removed"
        await eventually(lambda: True, alive)
        await asyncio.sleep(0.05)
    assert c.unlocked(t)
    assert [p for p, in await rows(c, "SELECT id FROM cluster_processes")] == [
        c.fanout.process_id]


async def test_a_late_lock_notice_does_not_undo_a_newer_unlock(world):
    a = world.first
    b = await world.start()
    t = world.tenant
    await a.fanout.unlock(t, world.secret, 60)
    await eventually(lambda: b.unlocked(t), [a, b])
    await b.fanout.lock(t)
    await eventually(lambda: not a.unlocked(t), [a, b])
    (stale,) = await rows(a, "SELECT epoch FROM vault_epochs WHERE tenant_id = ?", (t,))
    await a.fanout.unlock(t, world.secret, 60)
    await eventually(lambda: b.unlocked(t), [a, b])

    await b.bus.announce(vault_fanout.TOPIC, f"lock {t} {stale[0]}")  # arrives late
    await asyncio.sleep(0.3)
    await eventually(lambda: True, [a, b])
    assert a.unlocked(t) and b.unlocked(t)


async def test_shares_put_back_or_moved_to_another_tenant_do_not_open(world):
    a = world.first
    b = await world.start()
    t = world.tenant
    other, _ = await accounts.create_tenant(a.db, world.master, "Başka", PASSPHRASE, kdf="min")
    await a.fanout.unlock(t, world.secret, 60)
    await eventually(lambda: b.unlocked(t), [a, b])
    (kept,) = await rows(b, "SELECT tenant_id, process_id, epoch, sealed, expires_at "
                            "FROM vault_shares WHERE process_id = ?", (b.fanout.process_id,))
    await a.fanout.lock(t)
    await eventually(lambda: not b.unlocked(t), [a, b])

    # Someone with write access restores B's old share, and copies it under another tenant.
    async with b.db.begin() as conn:
        for tenant_id in (t, other):
            await raw.execute(conn, "INSERT INTO vault_shares (tenant_id, process_id, epoch, "
                                    "sealed, expires_at) VALUES (?, ?, ?, ?, ?)",
                              (tenant_id, *kept[1:]))
    await b.fanout.tick()
    assert not b.unlocked(t) and not b.unlocked(other)


async def test_auto_lock_at_the_ttl_everywhere_and_the_shares_go(world, fast):
    a = world.first
    b = await world.start()
    t = world.tenant
    await a.fanout.unlock(t, world.secret, 1.5)
    await eventually(lambda: b.unlocked(t), [a, b])
    assert b.remaining(t) <= 1.5
    await asyncio.sleep(1.5)
    assert not a.unlocked(t) and not b.unlocked(t)  # each keyring checks on every access
    started = time.monotonic()
    while await rows(a, "SELECT 1 FROM vault_shares"):
        assert time.monotonic() - started < 3, "expired shares were not deleted"
        await eventually(lambda: True, [a, b])
        await asyncio.sleep(0.05)


async def test_custody_changes_reach_every_process(world):
    a = world.first
    b = await world.start()
    t = world.tenant
    await a.fanout.unlock(t, world.secret, 60)
    await eventually(lambda: b.unlocked(t), [a, b])

    await accounts.change_custody(a.fanout, t, "service", 60)
    await eventually(lambda: b.remaining(t) > 300 * 86400, [a, b])
    assert a.remaining(t) > 300 * 86400
    assert await rows(a, "SELECT 1 FROM vault_shares") == []  # the master key serves now

    await accounts.change_custody(a.fanout, t, "passphrase", 30)
    await eventually(lambda: b.remaining(t) <= 30, [a, b])
    assert b.unlocked(t) and a.remaining(t) <= 30
    assert len(await rows(a, "SELECT 1 FROM vault_shares")) == 2
    await b.fanout.lock(t)
    await eventually(lambda: not a.unlocked(t), [a, b])


async def test_a_clean_stop_removes_the_process_and_its_shares(world):
    a = world.first
    b = await world.start()
    await a.fanout.unlock(world.tenant, world.secret, 60)
    await eventually(lambda: b.unlocked(world.tenant), [a, b])
    await kill(b, clean=True)
    assert [p for p, in await rows(a, "SELECT process_id FROM vault_shares")] == [
        a.fanout.process_id]
    assert [p for p, in await rows(a, "SELECT id FROM cluster_processes")] == [
        a.fanout.process_id]


async def test_one_sqlite_process_shares_nothing(db):
    master = MasterKey(os.urandom(32))
    tenant_id, _ = await accounts.create_tenant(db, master, "Tek", PASSPHRASE, kdf="min")
    keyring = Keyring()
    fanout = VaultFanout(db, Bus(db), keyring, master)
    assert fanout.shared is (db.dialect == "postgresql")
    if fanout.shared:
        pytest.skip("PostgreSQL shares: the tests above")
    await fanout.start()
    await accounts.unlock(db, keyring, tenant_id, PASSPHRASE, 60, fanout=fanout)
    assert keyring.is_unlocked(tenant_id)
    async with db.connect() as conn:
        for table in ("cluster_processes", "vault_shares", "vault_epochs"):
            assert await raw.fetch(conn, f"SELECT 1 FROM {table}") == []
    await accounts.lock(keyring, tenant_id, fanout)
    assert not keyring.is_unlocked(tenant_id)
    await fanout.stop()


async def test_two_app_instances_on_postgresql_share_unlock_and_lock(config, aiohttp_client,
                                                                     database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("one process on SQLite")
    from conftest import ApiTenant

    from dashboard.keys import db_key, keyring_key, master_key
    from izinli.app import create_app
    one = await aiohttp_client(create_app(config))
    two = await aiohttp_client(create_app(config))  # same database and master key file
    tenant_id, key = await accounts.create_tenant(one.app[db_key], one.app[master_key],
                                                  "İki Süreç", PASSPHRASE, kdf="min")
    first, second = ApiTenant(one, tenant_id, key), ApiTenant(two, tenant_id, key)
    await first.unlock()
    started = time.monotonic()
    while not two.app[keyring_key].is_unlocked(tenant_id):
        assert time.monotonic() - started < 1, "the unlock did not reach the other process"
        await asyncio.sleep(0.01)
    status = await (await second.call("GET", "/vault")).json()
    assert status["unlocked"] is True and 3500 < status["expires_in_seconds"] <= 3600
    assert (await second.call("POST", "/vault/lock")).status == 204
    started = time.monotonic()
    while one.app[keyring_key].is_unlocked(tenant_id):
        assert time.monotonic() - started < 1, "the lock did not reach the other process"
        await asyncio.sleep(0.01)


async def test_a_custody_change_from_the_command_line_reaches_the_servers(world, config):
    a, t = world.first, world.tenant
    if a.db.dialect == "sqlite":
        pytest.skip("a second process on SQLite is refused; PostgreSQL carries the notice")
    db = await open_store(config)  # `izinli tenant custody`: unlocked there, not a member
    keyring = Keyring()
    command = VaultFanout(db, Bus(db), keyring, world.master)
    try:
        keyring.unlock(t, world.secret, 60)
        await accounts.change_custody(command, t, "service", 60)
        await eventually(lambda: a.unlocked(t) and a.remaining(t) > 300 * 86400, [a])
        await accounts.change_custody(command, t, "passphrase", 30)
        await eventually(lambda: a.remaining(t) <= 30, [a])
        assert a.unlocked(t)
        assert [p for p, in await rows(a, "SELECT process_id FROM vault_shares")] == [
            a.fanout.process_id]
    finally:
        await db.close()


async def test_a_process_row_written_without_the_master_key_gets_no_share(world):
    a, t = world.first, world.tenant
    async with a.db.begin() as conn:  # someone who can write to the database, not a server
        await raw.execute(conn, "INSERT INTO cluster_processes (id, public_key, proof, "
                                "started_at, expires_at) VALUES (?, ?, ?, 0, 1e12)",
                          ("intruder:1:00", os.urandom(32), os.urandom(32)))
    await a.fanout.unlock(t, world.secret, 60)
    await a.fanout.share_with_missing()
    assert [p for p, in await rows(a, "SELECT process_id FROM vault_shares")] == [
        a.fanout.process_id]


async def test_a_process_taken_for_dead_gets_the_unlock_again_when_back(world):
    a = world.first
    b = await world.start()
    t = world.tenant
    await a.fanout.unlock(t, world.secret, 60)
    await eventually(lambda: b.unlocked(t), [a, b])
    # B was cut off for longer than a process may be silent: the others purged it.
    async with a.db.begin() as conn:
        await raw.execute(conn, "DELETE FROM cluster_processes WHERE id = ?",
                          (b.fanout.process_id,))
        await raw.execute(conn, "DELETE FROM vault_shares WHERE process_id = ?",
                          (b.fanout.process_id,))
    await b.fanout.tick()  # back: its share is gone, so it locks, and says it is back
    await eventually(lambda: b.unlocked(t), [a, b])  # a holder sealed the same unlock again
    assert 50 < b.remaining(t) <= 60
