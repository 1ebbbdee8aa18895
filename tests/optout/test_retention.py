"""Retention purges what is past its period and nothing else."""
import time

import sqlalchemy as sa

from optout import ledger, retention, suppression
from optout.ledger import ConsentEvent
from optout.retention import YEAR, RetentionPolicy
from store.tables import consent_events, consent_state, contacts, suppressions, tenants

NOW = time.time()


async def _tenant(db) -> str:
    async with db.begin() as conn:
        await conn.execute(tenants.insert().values(
            id="t1", name="x", created_at=1.0, public_key=b"p", wrapped_secret=b"w",
            wrapped_lookup_key=b"l"))
    return "t1"


def _event(index: bytes, status: str, at: float) -> ConsentEvent:
    return ConsentEvent(address_index=index, consent_type="MESAJ", status=status, source="HS_WEB",
                        recipient_type="individual", evidence_sealed=b"sealed", occurred_at=at)


async def _count(conn, table) -> int:
    return (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar()


async def test_consent_records_go_three_years_after_the_consent_ended(db):
    tenant = await _tenant(db)
    old_end, recent_end, active = b"a" * 16, b"b" * 16, b"c" * 16
    async with db.begin() as conn:
        await ledger.record(conn, tenant, [
            _event(old_end, "granted", NOW - 6 * YEAR), _event(old_end, "revoked", NOW - 4 * YEAR),
            _event(recent_end, "granted", NOW - 6 * YEAR),
            _event(recent_end, "revoked", NOW - 2 * YEAR),
            _event(active, "granted", NOW - 10 * YEAR)])
        await suppression.suppress(conn, tenant, old_end, "MESAJ", "opted_out", "inbound", b"s")
        await conn.execute(contacts.insert(), [
            {"id": "erased", "tenant_id": tenant, "address_index": b"e" * 16, "address_sealed": b"",
             "created_at": 1.0, "updated_at": 1.0, "erased_at": NOW - 10},
            {"id": "kept", "tenant_id": tenant, "address_index": b"k" * 16,
             "address_sealed": b"x", "created_at": 1.0, "updated_at": 1.0, "erased_at": None}])
    async with db.begin() as conn:
        counts = await retention.purge(conn, NOW, RetentionPolicy())
    assert counts["consent_events"] == 2 and counts["consent_state"] == 1
    assert counts["contacts"] == 1
    async with db.connect() as conn:
        left = {bytes(r.address_index) for r in await conn.execute(sa.select(consent_state))}
        assert left == {recent_end, active}
        assert await _count(conn, consent_events) == 3
        assert await _count(conn, suppressions) == 1  # the opt-out itself is never purged
        ids = {r.id for r in await conn.execute(sa.select(contacts.c.id))}
        assert ids == {"kept"}
