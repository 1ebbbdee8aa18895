"""store.bus: a notice published in a transaction reaches every process's handlers when the
transaction commits (PostgreSQL: LISTEN/NOTIFY, here two engines stand for two processes),
never when it rolls back; a lost listening connection comes back and runs the catch-up."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from izinli.app import open_store
from store.bus import Bus


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_notice_reaches_every_process_at_commit(config, db):
    other = await open_store(config)  # a second engine: a second process's view
    a, b = Bus(db), Bus(other)
    heard: dict[str, list[str]] = {"a": [], "b": []}
    a.subscribe("revoked", heard["a"].append)
    b.subscribe("revoked", heard["b"].append)
    await a.start()
    await b.start()
    try:
        with pytest.raises(RuntimeError):
            async with db.begin() as conn:
                await a.publish(conn, "revoked", "rolled back")
                raise RuntimeError("abort")
        async with db.begin() as conn:
            await a.publish(conn, "revoked", "t1:ab")
        await a.announce("revoked", "t2:cd")
        if db.dialect == "postgresql":
            await _until(lambda: len(heard["a"]) == 2 and len(heard["b"]) == 2)
            assert heard["b"] == ["t1:ab", "t2:cd"]  # the rolled-back one never arrives
            assert heard["a"] == ["t1:ab", "t2:cd"]  # the publisher hears itself too
        else:  # one process: its own handlers, at once (before the commit, by design)
            assert heard["a"] == ["rolled back", "t1:ab", "t2:cd"]
            assert heard["b"] == []
    finally:
        await a.stop()
        await b.stop()
        await other.close()


async def test_the_listener_comes_back_and_catches_up(config, db):
    if db.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    bus = Bus(db, health_seconds=0.5)
    caught_up = asyncio.Event()
    bus.on_reconnect(caught_up.set)
    heard: list[str] = []
    bus.subscribe("t", heard.append)
    await bus.start()
    try:
        assert bus.listening.is_set()
        async with db.begin() as conn:  # the database ends the listening connection
            await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                "query LIKE 'LISTEN%' AND datname = current_database()"))
        await asyncio.wait_for(caught_up.wait(), 10)
        await _until(bus.listening.is_set)
        await bus.announce("t", "after")
        await _until(lambda: heard == ["after"])
    finally:
        await bus.stop()


async def test_bodys_are_bounded(db):
    bus = Bus(db)
    async with db.begin() as conn:
        with pytest.raises(ValueError):
            await bus.publish(conn, "t", "x" * 8000)
