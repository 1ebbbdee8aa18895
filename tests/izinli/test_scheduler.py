"""No tenant input can stop the service: send_at is range-checked at the edge, and a bad row
already stored fails alone at start instead of stopping the server for every tenant."""
from __future__ import annotations

import asyncio
import math
import time

import sqlalchemy as sa
from conftest import PASSPHRASE, ApiTenant

import accounts
from dashboard.keys import db_key, keyring_key, master_key
from izinli.app import create_app
from izinli.scheduler import INVALID_SEND_AT, Timers, guarded
from optout.retention import RetentionPolicy
from store.tables import campaigns, tenants

YEAR = 365 * 86400


async def _new_campaign(t: ApiTenant, **extra):
    line = (await (await t.call("GET", "/lines")).json())["lines"][0]["id"]
    list_id = (await (await t.call("POST", "/lists", json={"name": "l"})).json())["id"]
    await t.call("POST", f"/contacts/import?list_id={list_id}",  # an empty list never starts
                 data=b"telefon,consent\n05321110001,evet\n",
                 headers={"Content-Type": "text/csv"})
    return await t.call("POST", "/campaigns", json={
        "name": "c", "line_id": line, "list_id": list_id, "template": "Merhaba", **extra})


async def _stored(db, campaign_id: str):
    async with db.connect() as conn:
        return (await conn.execute(sa.select(campaigns.c.state, campaigns.c.state_reason).where(
            campaigns.c.id == campaign_id))).one()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def test_far_future_send_at_is_400_and_start_survives_bad_rows(
        client, tenant, config, aiohttp_client, database_url):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    now = time.time()
    for bad in (1e308, -1e308, now + 2 * YEAR, now - 3600, _iso(now + 2 * YEAR),
                "10000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", True, {"at": 1}, 10 ** 30):
        r = await _new_campaign(tenant, send_at=bad)
        body = await r.json()
        assert r.status == 400, (bad, body)
        assert body["error"]["code"] in ("invalid_field", "invalid_number"), body
        assert "send_at" in body["error"]["message"]
    for raw in (b'-Infinity', b'NaN', b'1e400'):  # not JSON numbers, or beyond a double
        r = await _new_campaign(tenant, send_at=0)  # a valid request shape, then the raw one
        assert r.status == 400
        line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
        r = await tenant.call("POST", "/campaigns", data=b'{"name": "c", "line_id": "' +
                              line.encode() + b'", "list_id": "x", "template": "t", '
                              b'"send_at": ' + raw + b"}",
                              headers={"Content-Type": "application/json"})
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_number"
    assert (await (await tenant.call("GET", "/campaigns")).json())["campaigns"] == []
    ok = await _new_campaign(tenant, send_at=_iso(now + 86400))
    assert ok.status == 201, await ok.text()

    # Rows stored before the check existed: written straight into the table.
    bad_values = [1e308, 253402300800.0, 253402300799.0]  # overflow, year 10000, year 9999
    if database_url.startswith("postgresql"):
        bad_values += [float("nan"), float("inf")]  # SQLite keeps NaN as NULL
    db = client.app[db_key]
    bad_ids = []
    for value in bad_values:
        cid = (await (await _new_campaign(tenant)).json())["id"]
        async with db.begin() as conn:
            await conn.execute(campaigns.update().where(campaigns.c.id == cid).values(
                state="scheduled", send_at=value))
        bad_ids.append(cid)
    # And another business whose unattended-custody key row is damaged.
    other, _ = await accounts.create_tenant(db, client.app[master_key], "Başka", PASSPHRASE,
                                            kdf="min")
    async with db.begin() as conn:
        await conn.execute(tenants.update().where(tenants.c.id == other).values(
            custody="service", service_wrapped_secret=b"damaged"))
    good = (await ok.json())["id"]
    assert (await (await tenant.call("POST", f"/campaigns/{good}/start")).json())[
        "state"] == "scheduled"
    await client.close()

    # The server starts, for everyone; each bad campaign is failed with a reason.
    restarted = await aiohttp_client(create_app(config))
    again = ApiTenant(restarted, tenant.id, tenant.key)
    assert (await restarted.get("/healthz")).status == 200
    for cid in bad_ids:
        c = await (await again.call("GET", f"/campaigns/{cid}")).json()
        assert (c["state"], c["state_reason"]) == ("failed", INVALID_SEND_AT), c
        assert c["send_at"] is None or math.isfinite(c["send_at"])  # JSON has no NaN
    assert (await (await again.call("GET", f"/campaigns/{good}")).json())["state"] == "scheduled"
    assert not restarted.app[keyring_key].is_unlocked(other)

    # A draft holding an absurd send_at, started later through the API, fails the same way.
    await again.unlock()  # its list is imported: the number index is the tenant's (issue 17)
    draft = (await (await _new_campaign(again)).json())["id"]
    async with restarted.app[db_key].begin() as conn:
        await conn.execute(campaigns.update().where(campaigns.c.id == draft).values(
            send_at=1e308))
    r = await again.call("POST", f"/campaigns/{draft}/start")
    assert r.status == 200, await r.text()
    for _ in range(50):
        if (await _stored(restarted.app[db_key], draft)).state == "failed":
            break
        await asyncio.sleep(0.05)
    assert tuple(await _stored(restarted.app[db_key], draft)) == ("failed", INVALID_SEND_AT)


async def test_a_failing_timer_logs_its_type_and_runs_again(caplog):
    runs = []

    async def job():
        runs.append(1)
        raise RuntimeError("+905321112233 should never reach the log")
    safe = guarded(job)
    await safe()
    await safe()
    assert len(runs) == 2
    assert "+905321112233" not in caplog.text
    assert [r.error for r in caplog.records if r.message == "timer failed"] == ["RuntimeError"] * 2


async def test_deadline_alerts_reach_every_tenant_when_one_fails(db):
    told = []

    class Alerts:
        async def campaign_event(self, tenant_id, campaign_id, kind, detail):
            if tenant_id == "t1":
                raise ConnectionError("operator chat unreachable")
            told.append(tenant_id)

    async def at_risk():
        return {"t1": 3, "t2": 1}
    timers = Timers(db, None, RetentionPolicy(3, 3, 30), iys_risk=at_risk, alerts=Alerts())
    await timers.warn_deadlines()
    assert told == ["t2"]


async def test_one_tenants_failing_erasure_does_not_hold_up_the_others():
    from optout.subjects import ErasureFinisher

    class Keyring:
        def unlocked_ids(self):
            return ["t1", "t2"]

    class Fields:
        keyring = Keyring()

    class Finisher(ErasureFinisher):
        async def finish(self, tenant_id):
            if tenant_id == "t1":
                raise ValueError("damaged row")
            return 4
    assert await Finisher(None, Fields(), None).finish_unlocked() == 4
