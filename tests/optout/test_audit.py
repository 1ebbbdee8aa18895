"""The audit log: appended in order, hash-chained, signed checkpoints; tampering is found."""
import json
import os

import sqlalchemy as sa

from crypto.master import MasterKey
from optout import audit
from store.tables import audit_checkpoints, audit_log


async def test_chain_verifies_and_names_the_first_tampered_entry(db):
    master = MasterKey(os.urandom(32))
    for i in range(5):
        await audit.write(db, "t1", "api_key:abc", "campaign.start", campaign_id=f"c{i}")
    assert await audit.checkpoint(db, master) == 5
    assert await audit.checkpoint(db, master) is None  # nothing new to sign
    await audit.write(db, None, "system", "retention.purge", contacts=2)
    verdict = await audit.verify_chain(db)
    assert (verdict.entries, verdict.checkpoints, verdict.broken_at) == (6, 1, None)

    async with db.begin() as conn:  # someone edits history
        await conn.execute(audit_log.update().where(audit_log.c.seq == 3).values(
            detail=json.dumps({"campaign_id": "forged"})))
    verdict = await audit.verify_chain(db)
    assert verdict.broken_at == 3 and "hash" in verdict.reason


async def test_deleted_entry_and_forged_checkpoint_are_found(db):
    master = MasterKey(os.urandom(32))
    for _ in range(3):
        await audit.write(db, "t1", "cli", "tenant.create")
    await audit.checkpoint(db, master)
    async with db.begin() as conn:
        await conn.execute(audit_checkpoints.update().values(signature=bytes(64)))
    assert "signature" in (await audit.verify_chain(db)).reason
    async with db.begin() as conn:
        await conn.execute(audit_log.delete().where(audit_log.c.seq == 2))
    verdict = await audit.verify_chain(db)
    assert verdict.broken_at == 3 and "missing" in verdict.reason


async def test_api_actions_are_audited_without_personal_data(tenant):
    from dashboard.keys import db_key
    await tenant.unlock()
    await tenant.call("POST", "/contacts/import", data="telefon;ad\n05321110099;Hülya Ünal\n"
                      .encode(), headers={"Content-Type": "text/csv"})
    await tenant.call("POST", "/consents", json={
        "address": "05321110098", "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "Hülya'nın web formu"})
    await tenant.call("POST", "/suppressions", json={"address": "05321110097"})
    await tenant.call("GET", "/suppressions")
    await tenant.call("POST", "/vault/lock")
    async with tenant.client.app[db_key].connect() as conn:
        rows = list(await conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)))
    actions = [r.action for r in rows]
    assert actions[:1] == ["tenant.create"]
    assert {"vault.unlock", "contacts.import", "consent.record", "suppression.add",
            "suppression.export", "vault.lock"} <= set(actions)
    text = " ".join(r.detail + r.actor for r in rows)
    for number in ("05321110099", "5321110098", "5321110097"):
        assert number not in text
    assert "05321110099" not in text and "Hülya" not in text and tenant.key not in text
    assert (await audit.verify_chain(tenant.client.app[db_key])).broken_at is None
