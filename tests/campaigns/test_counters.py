"""Campaign counters (migration 0011): whatever changes the outbox, by whichever path, the
counters read through `outbox.counts` equal a count of the outbox rows themselves — before
and after folding, with folds running concurrently, and after rows are deleted."""
from __future__ import annotations

import asyncio
import random
import time

from conftest import ApiTenant
from test_pipeline import _campaign, _line, _list, _phones, _run, _state

from campaigns import audiences, outbox
from dashboard.keys import db_key
from store import raw

STATES = ("pending", "sending", "sent", "delivered", "read", "failed", "skipped", "unknown")
REASONS = (None, "no_consent", "suppressed", "cancelled", "interrupted", "")


async def _truth(conn, campaign_id: str) -> tuple[dict, dict]:
    """The counts straight from the outbox rows (what the counters must agree with)."""
    by_state = dict.fromkeys(outbox.COUNT_KEYS, 0)
    skipped: dict[str, int] = {}
    for state, reason, n in await raw.fetch(
            conn, "SELECT state, reason, count(*) FROM outbox WHERE campaign_id = ? "
                  "GROUP BY state, reason", (campaign_id,)):
        by_state[state] += n
        if state == "skipped":
            skipped[reason or "unknown"] = skipped.get(reason or "unknown", 0) + n
    return by_state, skipped


async def _agree(db, campaign_ids: list[str]) -> None:
    async with db.connect() as conn:
        counted = await outbox.counts_many(conn, campaign_ids)
        for cid in campaign_ids:
            assert counted[cid] == await _truth(conn, cid), cid


async def _waiting_moves(db) -> int:
    async with db.connect() as conn:
        return (await raw.fetch(conn, "SELECT count(*) FROM outbox_moves"))[0][0]


async def test_counters_follow_a_real_campaign_and_its_actions(tenant: ApiTenant):
    db = tenant.client.app[db_key]
    await tenant.unlock()
    line = await _line(tenant, 500)
    rows = [f"{p},Kişi {i},{'evet' if i % 3 else ''},İzmir" for i, p in enumerate(_phones(30))]
    list_id = await _list(tenant, rows)
    cid = await _campaign(tenant, line, list_id)
    await _agree(db, [cid])  # a draft has no outbox rows and no counts
    done = await _run(tenant, cid)
    assert done["counts"]["skipped"] == 10 and done["skipped_by_reason"] == {"no_consent": 10}
    assert done["counts"]["sent"] + done["counts"]["delivered"] + done["counts"]["read"] == 20
    await _agree(db, [cid])
    assert await _waiting_moves(db) > 0
    await audiences.fold_counters(db)
    assert await _waiting_moves(db) == 0
    await _agree(db, [cid])
    assert await _state(tenant, cid) == done
    stats = await (await tenant.call("GET", "/stats")).json()
    assert stats["messages"]["skipped"] == 10 and stats["waiting"] == 0
    assert stats["messages"]["pending"] == 30  # every row entered pending today
    # A deleted campaign (its outbox rows go by cascade) leaves no counts behind.
    async with db.begin() as conn:
        await raw.execute(conn, "DELETE FROM campaigns WHERE id = ?", (cid,))
    await _agree(db, [cid])
    await audiences.fold_counters(db)
    async with db.connect() as conn:
        assert (await raw.fetch(conn, "SELECT count(*) FROM campaign_counts WHERE "
                                      "campaign_id = ?", (cid,)))[0][0] == 0
        assert await outbox.counts(conn, cid) == (dict.fromkeys(outbox.COUNT_KEYS, 0), {})


async def test_counters_survive_random_changes_and_concurrent_folds(tenant: ApiTenant):
    """Random state and reason changes (one row or many per statement, NULL and empty reasons,
    deletes), interleaved with folds, some of them concurrent with the changes."""
    db = tenant.client.app[db_key]
    await tenant.unlock()
    line = await _line(tenant, 1)
    list_id = await _list(tenant, [f"{p},Kişi,evet,Ankara" for p in _phones(60)])
    ids = [await _campaign(tenant, line, list_id) for _ in range(2)]
    for cid in ids:  # outbox rows without the dispatcher touching them: pause at once
        assert (await tenant.call("POST", f"/campaigns/{cid}/start")).status == 200
        assert (await tenant.call("POST", f"/campaigns/{cid}/pause")).status == 200
    rng = random.Random(6563)

    async def change() -> None:
        async with db.begin() as conn:
            cid = rng.choice(ids)
            row_ids = [r[0] for r in await raw.fetch(
                conn, "SELECT id FROM outbox WHERE campaign_id = ?", (cid,))]
            if not row_ids:
                return
            pick = rng.sample(row_ids, rng.randint(1, min(15, len(row_ids))))
            if rng.random() < 0.05:
                await raw.execute(conn, f"DELETE FROM outbox WHERE id IN "
                                        f"({raw.marks(len(pick))})", tuple(pick))
            elif rng.random() < 0.2:  # a change that touches neither state nor reason
                await raw.execute(conn, f"UPDATE outbox SET updated_at = ? WHERE id IN "
                                        f"({raw.marks(len(pick))})", (time.time(), *pick))
            else:
                await raw.execute(conn, f"UPDATE outbox SET state = ?, reason = ? WHERE id IN "
                                        f"({raw.marks(len(pick))})",
                                  (rng.choice(STATES), rng.choice(REASONS), *pick))

    for round_ in range(8):
        for _ in range(10):
            await change()
        await _agree(db, ids)
        if round_ % 2:
            await asyncio.gather(audiences.fold_counters(db), change(),
                                 audiences.fold_counters(db), change())
        await _agree(db, ids)
    await audiences.fold_counters(db)
    assert await _waiting_moves(db) == 0
    await _agree(db, ids)


async def test_fold_batches_are_exact(tenant: ApiTenant):
    """A fold smaller than the waiting moves leaves the rest for the next one; the counts
    read in between are still exact."""
    db = tenant.client.app[db_key]
    await tenant.unlock()
    line = await _line(tenant, 1)
    list_id = await _list(tenant, [f"{p},Kişi,evet,Ankara" for p in _phones(25)])
    cid = await _campaign(tenant, line, list_id)
    assert (await tenant.call("POST", f"/campaigns/{cid}/start")).status == 200
    assert (await tenant.call("POST", f"/campaigns/{cid}/cancel")).status == 200
    while await _waiting_moves(db):
        async with db.begin() as conn:
            assert await outbox.fold(conn, limit=7) <= 7
        await _agree(db, [cid])
    assert (await _state(tenant, cid))["skipped_by_reason"].get("cancelled", 0) > 0


async def _list_sizes(t: ApiTenant) -> dict[str, int]:
    return {item["id"]: item["members"]
            for item in (await (await t.call("GET", "/lists")).json())["lists"]}


async def _member_truth(db, list_id: str) -> int:
    async with db.connect() as conn:
        return (await raw.fetch(conn, "SELECT count(*) FROM list_members WHERE list_id = ?",
                                (list_id,)))[0][0]


async def test_list_sizes_follow_imports_reimports_deletes_and_folds(tenant: ApiTenant):
    """GET /lists counts members from folded counters plus waiting moves: a re-import of the
    same people adds nobody, removed members go, and folding changes nothing seen."""
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    db = tenant.client.app[db_key]
    first = await _list(tenant, [f"{p},Kişi,evet,Ankara" for p in _phones(40)])
    other = await _list(tenant, [f"{p},Kişi,evet,Ankara" for p in _phones(15, start=30)])
    assert await _list_sizes(tenant) == {first: 40, other: 15}
    # The same file again, plus 5 new people: only the new ones are added.
    r = await tenant.call("POST", f"/contacts/import?list_id={first}", headers={
        "Content-Type": "text/csv"}, data=("phone,name\n" + "\n".join(
            f"{p},Kişi" for p in _phones(45)) + "\n").encode())
    assert r.status == 200, await r.text()
    assert (await _list_sizes(tenant))[first] == 45 == await _member_truth(db, first)
    await audiences.fold_counters(db)
    assert await _list_sizes(tenant) == {first: 45, other: 15}
    async with db.begin() as conn:  # people leave lists (contacts deleted: cascade)
        await raw.execute(conn, "DELETE FROM contacts WHERE id IN (SELECT contact_id FROM "
                                "list_members WHERE list_id = ? ORDER BY contact_id LIMIT 12)",
                          (other,))
    sizes = await _list_sizes(tenant)
    assert sizes == {first: await _member_truth(db, first), other: 3}
    async with db.begin() as conn:
        assert 0 < await audiences.fold_members(conn, limit=3) <= 3
    assert await _list_sizes(tenant) == sizes
    await audiences.fold_counters(db)
    assert await _list_sizes(tenant) == sizes
    async with db.connect() as conn:
        assert (await raw.fetch(conn, "SELECT count(*) FROM list_member_moves"))[0][0] == 0

