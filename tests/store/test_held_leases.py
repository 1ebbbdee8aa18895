"""A lease held for the length of a task (store.leases.held), on SQLite and PostgreSQL: one
holder at a time, given back at the end, and lost when another holder takes it over."""
from __future__ import annotations

import asyncio

from store import raw
from store.leases import held

KEY = "iys:tenant-under-lease"


async def test_one_holder_at_a_time_and_released_at_the_end(db):
    async with held(db, KEY, "a", 30) as first:
        assert first is not None and first.valid()
        async with held(db, KEY, "b", 30) as second:
            assert second is None  # a's lease is live
        async with held(db, KEY, "a", 30) as again:
            assert again is None  # not even a second task of the same holder
    async with held(db, KEY, "b", 30) as second:  # given back: no wait for the expiry
        assert second is not None and second.token == first.token + 1


async def test_a_lease_taken_over_is_seen_lost_at_the_next_renewal(db):
    async with held(db, KEY, "a", 0.6) as lease:
        assert lease is not None
        await asyncio.sleep(0.3)  # renewed meanwhile (every third of its life)
        assert lease.valid()
        async with db.begin() as conn:  # expired and taken, as after a long stall of "a"
            await raw.execute(conn, "UPDATE line_leases SET holder = 'b', token = token + 1 "
                                    "WHERE line_id = ?", (KEY,))
        await asyncio.sleep(0.5)
        assert lease.lost and not lease.valid()
    async with db.connect() as conn:  # a's release at the end changed nothing of b's
        rows = await raw.fetch(conn, "SELECT holder FROM line_leases WHERE line_id = ?", (KEY,))
    assert rows == [("b",)]
