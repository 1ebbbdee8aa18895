"""Event order: the pure rule, and the per-person clock on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import itertools
import time

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from optout import order, retention
from optout.order import BLOCK, CONSENT, Applied, event_second, supersedes
from optout.retention import RetentionPolicy
from store.tables import lines, preference_clock, tenants, webhook_deliveries

# --- the rule (pure) ----------------------------------------------------------------------------


def test_a_newer_event_supersedes_and_an_older_one_does_not():
    last = Applied(at=200, stopped=True)
    assert supersedes(last, 300, stops=False)
    assert not supersedes(last, 100, stops=False)
    assert not supersedes(last, 199, stops=True)


def test_in_the_same_second_a_stop_wins_and_a_repeat_changes_nothing():
    assert not supersedes(Applied(200, stopped=True), 200, stops=False)  # resume never undoes
    assert supersedes(Applied(200, stopped=False), 200, stops=True)  # a stop always wins
    assert not supersedes(Applied(200, stopped=True), 200, stops=True)  # redelivered stop
    assert not supersedes(Applied(200, stopped=False), 200, stops=False)  # redelivered resume


def test_the_first_event_for_a_person_always_applies():
    assert supersedes(None, 0, stops=False) and supersedes(None, 10, stops=True)


events = st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=6)


@given(events, st.randoms(use_true_random=False))
def test_the_outcome_does_not_depend_on_the_order_of_arrival(history, random):
    """Whatever order the provider delivers them in (duplicates included), the person ends
    in the state of their latest event, a stop winning its second."""
    def fold(arrivals):
        last = None
        for at, stops in arrivals:
            if supersedes(last, at, stops):
                last = Applied(at, stops)
        return last

    shuffled = list(history)
    random.shuffle(shuffled)
    latest = max(history)  # (second, stop) ordered: a stop is later than a resume of its second
    assert fold(history) == fold(shuffled) == Applied(*latest)


def test_event_second_is_the_providers_time_never_later_than_arrival():
    assert event_second(1_700_000_000, 1_800_000_000.7) == 1_700_000_000
    assert event_second(None, 1_800_000_000.7) == 1_800_000_000
    # A clock ahead of ours cannot date a resume beyond a STOP that is still to come.
    assert event_second(9_999_999_999, 1_800_000_000.7) == 1_800_000_000
    assert event_second(float("nan"), 1_800_000_000.7) == 1_800_000_000
    assert event_second(float("inf"), 1_800_000_000.7) == 1_800_000_000
    assert event_second(float("-inf"), 1_800_000_000.7) == 0
    assert event_second(-10**400, 1_800_000_000.7) == 0
    assert event_second(10**400, 1_800_000_000.7) == 1_800_000_000


# --- the clock (SQLite and PostgreSQL) ----------------------------------------------------------

INDEX = b"p" * 16


async def _tenant(db) -> str:
    async with db.begin() as conn:
        await conn.execute(tenants.insert().values(
            id="t1", name="x", created_at=1.0, public_key=b"p", wrapped_secret=b"w",
            wrapped_lookup_key=b"l"))
    return "t1"


async def _claim(db, tenant: str, at: int, stops: bool, family: str = CONSENT) -> bool:
    async with db.begin() as conn:
        return await order.claim(conn, tenant, INDEX, "MESAJ", family, at, stops)


async def _clock(db) -> dict:
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(preference_clock))
        return {r.family: (r.event_at, bool(r.stopped)) for r in rows}


async def test_the_clock_applies_only_events_newer_than_the_last_applied(db):
    tenant = await _tenant(db)
    assert await _claim(db, tenant, 200, stops=True)
    assert not await _claim(db, tenant, 100, stops=False)  # late resume
    assert not await _claim(db, tenant, 200, stops=False)  # same second: the stop stays
    assert not await _claim(db, tenant, 200, stops=True)  # redelivered stop
    assert await _clock(db) == {CONSENT: (200, True)}
    assert await _claim(db, tenant, 300, stops=False)
    assert await _clock(db) == {CONSENT: (300, False)}
    assert await _claim(db, tenant, 300, stops=True)  # a stop in the resume's second wins


async def test_block_and_consent_clocks_are_separate(db):
    tenant = await _tenant(db)
    assert await _claim(db, tenant, 200, stops=True, family=CONSENT)  # STOP at 200
    assert await _claim(db, tenant, 300, stops=False, family=BLOCK)  # unblock at 300
    assert await _clock(db) == {CONSENT: (200, True), BLOCK: (300, False)}
    # The unblock is not a consent: a resume older than the STOP is still stale.
    assert not await _claim(db, tenant, 150, stops=False, family=CONSENT)


async def test_concurrent_deliveries_for_one_person_are_decided_one_after_the_other(db):
    """The stop at 200 and the late resume at 100 race in two transactions (two processes on
    PostgreSQL): whoever goes first, the stop is what holds."""
    tenant = await _tenant(db)
    for first, second in itertools.permutations([(200, True), (100, False)]):
        async with db.begin() as conn:
            await conn.execute(preference_clock.delete())
        results = dict(zip([first, second], await asyncio.gather(
            _claim(db, tenant, *first), _claim(db, tenant, *second)), strict=True))
        assert await _clock(db) == {CONSENT: (200, True)}
        assert results[(200, True)] is True


async def test_retention_keeps_stops_and_drops_old_deliveries(db):
    tenant = await _tenant(db)
    now = time.time()
    old = int(now - 4 * retention.YEAR)
    async with db.begin() as conn:
        await conn.execute(preference_clock.insert(), [
            {"tenant_id": tenant, "address_index": b"s" * 16, "scope": "MESAJ",
             "family": CONSENT, "event_at": old, "stopped": True},
            {"tenant_id": tenant, "address_index": b"r" * 16, "scope": "MESAJ",
             "family": CONSENT, "event_at": old, "stopped": False},
            {"tenant_id": tenant, "address_index": b"n" * 16, "scope": "MESAJ",
             "family": CONSENT, "event_at": int(now), "stopped": False}])
        await conn.execute(lines.insert().values(
            id="l1", tenant_id=tenant, channel="whatsapp", rate_per_second=1.0,
            created_at=now))
        await conn.execute(webhook_deliveries.insert(), [
            {"line_id": "l1", "delivery_key": "update:1", "received_at": now - 8 * 86400},
            {"line_id": "l1", "delivery_key": "update:2", "received_at": now - 2 * 86400}])
    async with db.begin() as conn:
        counts = await retention.purge(conn, now, RetentionPolicy())
    assert (counts["preference_clock"], counts["webhook_deliveries"]) == (1, 1)
    async with db.connect() as conn:
        kept = {bytes(r.address_index) for r in await conn.execute(sa.select(preference_clock))}
        keys = {r.delivery_key for r in await conn.execute(sa.select(webhook_deliveries))}
    assert kept == {b"s" * 16, b"n" * 16}  # a stop's clock stays, like its suppression
    assert keys == {"update:2"}  # inside the providers' 36 h retry window, and then some
