"""Line leases and the atomic claim, on SQLite and PostgreSQL: one holder per line, tokens that
only grow, expiry by the database's clock, and writes under a lost lease that change nothing;
a claim never hands out a person suppressed or revoked before it."""
from __future__ import annotations

import asyncio
import contextvars
import time

import sqlalchemy as sa

from campaigns import leases, outbox
from campaigns.dispatcher import Dispatcher
from campaigns.lines import active_lines
from campaigns.outbox import Fence, Result
from campaigns.ports import Line
from dashboard.keys import db_key, directory_key
from optout import suppression
from store.tables import consent_state, sandbox_messages
from store.tables import outbox as outbox_table

LINE = "line-under-lease"


async def test_lease_acquire_renew_expire_and_takeover_increments_the_token(db):
    async with db.begin() as conn:
        assert await leases.acquire(conn, LINE, "a", 0.3) == 1
        assert await leases.acquire(conn, LINE, "b", 5) is None  # a's lease is live
        assert await leases.renew(conn, "a", 0.3) == {LINE: 1}
        assert await leases.renew(conn, "b", 5) == {}
    await asyncio.sleep(0.5)  # a stops renewing: its lease expires by the database's clock
    async with db.begin() as conn:
        assert await leases.acquire(conn, LINE, "b", 5) == 2
        assert await leases.renew(conn, "a", 5) == {}  # a learns it lost the line
        assert await leases.renew(conn, "b", 5) == {LINE: 2}
        assert not await leases.release(conn, LINE, 1)  # a stale token releases nothing
        assert await leases.acquire(conn, LINE, "a", 5) is None
        assert await leases.release(conn, LINE, 2)  # clean shutdown: no wait for the expiry
        assert await leases.acquire(conn, LINE, "a", 5) == 3
        assert await leases.renew(conn, "b", 5) == {}


def test_a_lease_is_valid_only_before_its_local_deadline_and_while_not_lost():
    lease = leases.Lease(LINE, 1, valid_until=100.0)
    assert lease.valid(99.0) and not lease.valid(100.0)
    lease.lost = True
    assert not lease.valid(0.0)


async def _scheduled(t, phones: list[str], purpose: str = "commercial") -> tuple[str, str]:
    """(campaign id, line id): outbox built for `phones`, nothing sent (send_at is later)."""
    r = await t.call("POST", "/lines", json={"channel": "sandbox", "name": "hat",
                                             "rate_per_second": 100})
    line = (await r.json())["id"]
    list_id = (await (await t.call("POST", "/lists", json={"name": "l"})).json())["id"]
    csv = "phone,consent\n" + "".join(f"{p},evet\n" for p in phones)
    r = await t.call("POST", f"/contacts/import?list_id={list_id}", data=csv.encode(),
                     headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    r = await t.call("POST", "/campaigns", json={
        "name": "c", "line_id": line, "list_id": list_id, "template": "Merhaba",
        "purpose": purpose, "send_at": time.time() + 3600})
    cid = (await r.json())["id"]
    assert (await t.call("POST", f"/campaigns/{cid}/start")).status == 200
    return cid, line


async def _states(db, cid: str) -> list[str]:
    async with db.connect() as conn:
        return [r[0] for r in await conn.execute(sa.select(outbox_table.c.state).where(
            outbox_table.c.campaign_id == cid).order_by(outbox_table.c.id))]


async def _claim(db, fence: Fence, cid: str, commercial=True, token: int = 11):
    async with db.begin() as conn:
        return await outbox.claim(conn, fence, [cid], {cid} if commercial else set(), "MESAJ",
                                  100, token)


async def test_a_stale_tokens_claim_and_record_change_nothing(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    db = tenant.client.app[db_key]
    cid, line = await _scheduled(tenant, [f"+9053460{i:05d}" for i in range(4)])
    async with db.begin() as conn:
        assert await leases.acquire(conn, line, "a", 0.3) == 1
    await asyncio.sleep(0.5)
    assert await _claim(db, Fence(line, 1), cid) == []  # expired, even before a takeover
    async with db.begin() as conn:
        assert await leases.acquire(conn, line, "b", 5) == 2
    assert await _claim(db, Fence(line, 1), cid) == []  # superseded
    assert await _states(db, cid) == ["pending"] * 4
    claimed = await _claim(db, Fence(line, 2), cid)
    assert len(claimed) == 4 and await _states(db, cid) == ["sending"] * 4
    assert await _claim(db, Fence(line, 2), cid) == []  # a row is claimed once
    async with db.begin() as conn:
        await outbox.record(conn, [Result(r.id, "sent", None, "p", time.time())
                                   for r in claimed], Fence(line, 1))
    assert await _states(db, cid) == ["sending"] * 4  # the old holder's results are refused
    async with db.begin() as conn:
        assert await outbox.recover_in_flight(conn, line, fence=Fence(line, 1)) == 0
        await outbox.record(conn, [Result(claimed[0].id, "sent", None, "p", time.time())],
                            Fence(line, 2))
        assert await outbox.recover_in_flight(conn, line, fence=Fence(line, 2)) == 3
    assert await _states(db, cid) == ["sent"] + ["unknown"] * 3


async def test_a_claim_refuses_a_person_suppressed_just_before_it(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    db, directory = tenant.client.app[db_key], tenant.client.app[directory_key]
    phones = [f"+9053470{i:05d}" for i in range(4)]
    commercial, _ = await _scheduled(tenant, phones)
    informational, line = await _scheduled(tenant, phones, "informational")
    index = [directory.index(tenant.id, p) for p in phones]
    async with db.begin() as conn:
        await suppression.suppress(conn, tenant.id, index[1], "*", "manual", "test", None)
        await conn.execute(consent_state.update().where(
            consent_state.c.address_index == index[2]).values(status="revoked"))
        token = await leases.acquire(conn, line, "a", 5)
    fence = Fence(line, token)
    refused = {bytes(r.address_index): r.refused for r in await _claim(db, fence, commercial)}
    assert refused == {index[0]: False, index[1]: True, index[2]: True, index[3]: False}
    # A revoked consent stops commercial messages only; a suppression stops everything.
    refused = {bytes(r.address_index): r.refused
               for r in await _claim(db, fence, informational, commercial=False)}
    assert refused == {index[0]: False, index[1]: True, index[2]: False, index[3]: False}


async def test_a_lost_claim_answer_is_put_back_by_its_token(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    db = tenant.client.app[db_key]
    cid, line = await _scheduled(tenant, [f"+9053480{i:05d}" for i in range(3)])
    async with db.begin() as conn:
        token = await leases.acquire(conn, line, "a", 5)
    assert len(await _claim(db, Fence(line, token), cid, token=42)) == 3
    async with db.begin() as conn:
        assert await outbox.unclaim(conn, [cid], 41) == 0  # another claim's token
        assert await outbox.unclaim(conn, [cid], 42) == 3
    assert await _states(db, cid) == ["pending"] * 3


def _dispatcher(app):
    from dashboard.keys import channels_key, fields_key, watch_key
    return Dispatcher(app[db_key], app[fields_key], app[directory_key], app[channels_key],
                      app[watch_key])


async def _take(dispatcher: Dispatcher, line: Line):
    """The dispatcher's lease on `line`, once the app's own dispatcher has given it back."""
    deadline = time.monotonic() + 10
    while (lease := await dispatcher._hold(line)) is None:
        assert time.monotonic() < deadline, "the line was never given back"
        await asyncio.sleep(0.1)
    return lease


async def test_a_taken_line_keeps_its_24h_unique_recipient_cap(tenant):
    """The rolling cap is read back from the outbox by whoever takes the line (a restart, a
    peer): who got a message on the line in the last day still counts."""
    await tenant.unlock()
    phones = [f"+9053500{i:05d}" for i in range(6)]
    cid, line_id = await _scheduled(tenant, phones, "informational")
    async with tenant.client.app[db_key].begin() as conn:
        await conn.execute(sa.text("UPDATE campaigns SET state = 'running', send_at = NULL "
                                   "WHERE id = :id"), {"id": cid})
    deadline = time.monotonic() + 20
    while (c := await (await tenant.call("GET", f"/campaigns/{cid}")).json())["state"] \
            != "completed":
        assert time.monotonic() < deadline, c
        await asyncio.sleep(0.05)
    assert c["counts"]["sent"] == 6
    # The same line seen as a WhatsApp number at the lowest tier (250 people a day).
    line = Line(line_id, tenant.id, "whatsapp", "wa", 80.0, "active",
                {"messaging_tier": 0}, created_at=time.time() - 30 * 86400)
    dispatcher = _dispatcher(tenant.client.app)
    try:
        await _take(dispatcher, line)
        cap = dispatcher._throttle(line).rolling_cap
        assert cap.limit == 250 and len(cap) == 6
        directory = tenant.client.app[directory_key]  # counted by recipient, as sent
        assert all(directory.index(tenant.id, p) in cap._seen for p in phones)
    finally:
        await dispatcher.stop()


async def test_whatsapp_warmup_follows_the_line_age(tenant):
    """A new WhatsApp number starts at a tenth of the provider's maximum (1,000 msg/s) and
    reaches its configured rate after a week."""
    dispatcher = _dispatcher(tenant.client.app)
    now = time.time()
    fresh = Line("wa-new", tenant.id, "whatsapp", "wa", 1000.0, "active", created_at=now)
    week = Line("wa-old", tenant.id, "whatsapp", "wa", 1000.0, "active",
                created_at=now - 8 * 86400)
    assert dispatcher._throttle(fresh).effective_rate(time.monotonic()) == 100.0
    assert dispatcher._throttle(week).effective_rate(time.monotonic()) == 1000.0


async def test_no_send_starts_once_the_lease_may_have_expired(tenant):
    """Before each provider call the dispatcher checks its lease by its own clock: past the
    local deadline nothing is sent, and the claimed rows go back to pending (not unknown)."""
    await tenant.unlock()
    db = tenant.client.app[db_key]
    cid, line_id = await _scheduled(tenant, [f"+9053510{i:05d}" for i in range(5)],
                                    "informational")
    dispatcher = _dispatcher(tenant.client.app)
    try:
        async with db.connect() as conn:
            (line,) = await active_lines(conn, [line_id])
        lease = await _take(dispatcher, line)  # held before the campaign runs: ours alone
        async with db.begin() as conn:
            await conn.execute(sa.text("UPDATE campaigns SET state = 'running', send_at = NULL "
                                       "WHERE id = :id"), {"id": cid})
        lease.valid_until = 0.0  # e.g. renewals stalled: the database may expire it any time
        assert await dispatcher.pump(line_id)
        assert await _states(db, cid) == ["pending"] * 5
        async with db.connect() as conn:
            delivered = (await conn.execute(sa.select(sa.func.count()).select_from(
                sandbox_messages).where(sandbox_messages.c.line_id == line_id))).scalar()
        assert delivered == 0
    finally:
        await dispatcher.stop()


async def test_rows_written_back_to_pending_in_a_cancelled_campaign_are_skipped(tenant):
    """A round that gives claimed rows back (a rate limit, a lost lease, a claim taken ahead
    of a cancel) while the owner cancels: whichever commits first, no row is left pending in
    the cancelled campaign, where nothing would ever send or skip it."""
    from campaigns import service
    await tenant.unlock()
    db = tenant.client.app[db_key]
    for k, order in enumerate(("cancel first", "record first")):
        phones = [f"+905349{k}{i:05d}" for i in range(3)]
        cid, line = await _scheduled(tenant, phones)
        async with db.begin() as conn:
            await conn.execute(sa.text("UPDATE campaigns SET state = 'running', send_at = NULL "
                                       "WHERE id = :id"), {"id": cid})
            await conn.execute(sa.text("DELETE FROM line_leases WHERE line_id = :l"),
                               {"l": line})  # the app's dispatcher may have taken the line
            token = await leases.acquire(conn, line, "a", 30)
        claimed = await _claim(db, Fence(line, token), cid)
        assert len(claimed) == 3
        back, fence = [Result(r.id, "pending") for r in claimed], Fence(line, token)

        async def cancel(conn, cid=cid):
            await service.transition(conn, tenant.id, cid, "cancel")

        async def record(conn, back=back, fence=fence):
            await outbox.record(conn, back, fence)

        async def alone(write):
            async with db.begin() as conn:
                await write(conn)

        first, second = (cancel, record) if order == "cancel first" else (record, cancel)
        async with db.begin() as conn:  # the first one's transaction stays open meanwhile
            await first(conn)
            # A task of its own, as another request's: not inside this transaction.
            waiting = asyncio.create_task(alone(second), context=contextvars.Context())
            await asyncio.sleep(0.3)
        await waiting
        assert await _states(db, cid) == ["skipped"] * 3, order
        async with db.connect() as conn:
            reasons = {r[0] for r in await conn.execute(sa.select(outbox_table.c.reason).where(
                outbox_table.c.campaign_id == cid))}
        assert reasons == {"cancelled"}, order


async def test_a_claim_over_several_campaigns_takes_the_lowest_pending_rows_once(tenant):
    """A line running several campaigns claims their next rows in outbox order, as far as the
    limit, each row once (each campaign's rows are read in index order and merged)."""
    await tenant.unlock()
    db = tenant.client.app[db_key]
    first, line = await _scheduled(tenant, [f"+90532990{i:04d}" for i in range(5)])
    second, _ = await _scheduled(tenant, [f"+90532991{i:04d}" for i in range(4)])
    third, _ = await _scheduled(tenant, [f"+90532992{i:04d}" for i in range(3)])
    async with db.begin() as conn:
        token = await leases.acquire(conn, line, "holder", 30)
        every = [r[0] for r in await conn.execute(sa.select(outbox_table.c.id).where(
            outbox_table.c.campaign_id.in_([first, second, third])).order_by(
            outbox_table.c.id))]
    claimed = []
    for _ in range(6):
        async with db.begin() as conn:
            rows = await outbox.claim(conn, Fence(line, token), [third, first, second], set(),
                                      "MESAJ", 4, 12)
        assert [r.id for r in rows] == sorted(r.id for r in rows)
        claimed.append([r.id for r in rows])
    assert claimed == [every[0:4], every[4:8], every[8:12], [], [], []]
    assert set(await _states(db, first) + await _states(db, second)
               + await _states(db, third)) == {"sending"}
