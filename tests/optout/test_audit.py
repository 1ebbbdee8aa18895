"""The audit log: appended in order, hash-chained, signed checkpoints; tampering is found,
also by someone who can write to the database (the key that verifies is not stored there)."""
import json
import os

import pytest
import sqlalchemy as sa

from crypto.audit_key import AuditKey
from crypto.master import MasterKey
from crypto.signing import sign, verify_key_of
from optout import audit
from store.tables import audit_checkpoints, audit_log


async def test_chain_verifies_and_names_the_first_tampered_entry(db):
    master = MasterKey(os.urandom(32))
    for i in range(5):
        await audit.write(db, "t1", "api_key:abc", "campaign.start", campaign_id=f"c{i}")
    assert await audit.checkpoint(db, master) == 5
    assert await audit.checkpoint(db, master) is None  # nothing new to sign
    await audit.write(db, None, "system", "retention.purge", contacts=2)
    public = AuditKey(master).public
    verdict = await audit.verify_chain(db, public)
    assert (verdict.entries, verdict.checkpoints, verdict.broken_at) == (6, 1, None)
    assert verdict.signed_through == 5

    async with db.begin() as conn:  # someone edits history
        await conn.execute(audit_log.update().where(audit_log.c.seq == 3).values(
            detail=json.dumps({"campaign_id": "forged"})))
    verdict = await audit.verify_chain(db, public)
    assert verdict.broken_at == 3 and "hash" in verdict.reason


async def test_deleted_entry_and_forged_checkpoint_are_found(db):
    master = MasterKey(os.urandom(32))
    for _ in range(3):
        await audit.write(db, "t1", "cli", "tenant.create")
    await audit.checkpoint(db, master)
    async with db.begin() as conn:
        await conn.execute(audit_checkpoints.update().values(signature=bytes(64)))
    public = AuditKey(master).public
    verdict = await audit.verify_chain(db, public)
    assert verdict.code == "checkpoint_forged" and "forged" in verdict.reason
    async with db.begin() as conn:
        await conn.execute(audit_checkpoints.delete())
        await conn.execute(audit_log.delete().where(audit_log.c.seq == 2))
    verdict = await audit.verify_chain(db, public)
    assert verdict.broken_at == 3 and "entry 2 is missing" in verdict.reason


async def test_api_actions_are_audited_without_personal_data(tenant):
    from dashboard.keys import db_key, master_key
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
    public = AuditKey(tenant.client.app[master_key]).public
    assert (await audit.verify_chain(tenant.client.app[db_key], public)).broken_at is None


# --- someone with write access to the database (issue 12 item 8) -----------------------------

async def _entries(db, n: int) -> None:
    for i in range(n):
        await audit.write(db, "t1", "api_key:abc", "campaign.start", campaign_id=f"c{i}")


async def _rewrite_history(db, seq: int) -> None:
    """What an attacker with database access does: edits an entry, recomputes every hash after
    it, and re-signs every checkpoint with a key of their own."""
    async with db.begin() as conn:
        await conn.execute(audit_log.update().where(audit_log.c.seq == seq).values(
            detail=json.dumps({"campaign_id": "forged"})))
        prev = audit.GENESIS
        for row in list(await conn.execute(sa.select(audit_log).order_by(audit_log.c.seq))):
            digest = audit.entry_hash(prev, row.seq, row.at, row.tenant_id, row.actor,
                                      row.action, row.detail)
            await conn.execute(audit_log.update().where(audit_log.c.seq == row.seq).values(
                prev_hash=prev, hash=digest))
            prev = digest
        seed = os.urandom(32)
        for mark in list(await conn.execute(sa.select(audit_checkpoints))):
            head = (await conn.execute(sa.select(audit_log.c.hash).where(
                audit_log.c.seq == mark.seq))).scalar()
            forged = audit.Mark(mark.entries, mark.seq, bytes(head), mark.at, b"")
            await conn.execute(audit_checkpoints.update().where(
                audit_checkpoints.c.seq == mark.seq).values(
                hash=bytes(head), signature=sign(seed, forged.message()),
                verify_key=verify_key_of(seed)))


async def test_audit_forgery_with_db_access_is_detected(db, tmp_path):
    master = MasterKey(os.urandom(32))
    public, journal = AuditKey(master).public, tmp_path / "audit.checkpoints"
    await _entries(db, 10)
    assert await audit.checkpoint(db, master, journal) == 10
    await _entries(db, 5)
    assert await audit.checkpoint(db, master, journal) == 15
    await _entries(db, 2)  # not signed yet: the last hour's entries

    # (c) the untouched log verifies, with and without the journal
    for lines in ([], audit.read_journal(journal)):
        verdict = await audit.verify_chain(db, public, lines)
        assert verdict.broken_at is None, verdict.reason
        assert (verdict.entries, verdict.checkpoints, verdict.signed_through) == (17, 2, 15)
    assert len(audit.read_journal(journal)) == 2

    # (a) a whole rewritten chain, re-signed with the attacker's own key
    await _rewrite_history(db, 3)
    verdict = await audit.verify_chain(db, public)
    assert (verdict.code, verdict.broken_at) == ("checkpoint_forged", 10)
    assert verdict.reason.startswith("checkpoint at entry 10 (signed ")
    assert "is forged" in verdict.reason


async def test_truncation_after_a_checkpoint_names_the_cut_entries(db, tmp_path):
    master = MasterKey(os.urandom(32))
    public, journal = AuditKey(master).public, tmp_path / "audit.checkpoints"
    await _entries(db, 5)
    await audit.checkpoint(db, master, journal)
    await _entries(db, 5)
    await audit.checkpoint(db, master, journal)

    # (b) the tail that a checkpoint covers is cut off
    async with db.begin() as conn:
        await conn.execute(audit_log.delete().where(audit_log.c.seq > 7))
    verdict = await audit.verify_chain(db, public)
    assert (verdict.code, verdict.broken_at, verdict.entries) == ("truncated", 8, 7)
    assert verdict.reason.startswith("entries 8–10 missing after the end of the log: it ends "
                                     "at entry 7 but checkpoint at entry 10 (signed ")
    assert verdict.reason.endswith("covers 10 entries")

    # ...and the checkpoints with it: the database alone cannot tell, the journal can
    async with db.begin() as conn:
        await conn.execute(audit_checkpoints.delete().where(audit_checkpoints.c.seq > 7))
    assert (await audit.verify_chain(db, public)).broken_at is None
    verdict = await audit.verify_chain(db, public, audit.read_journal(journal))
    assert (verdict.code, verdict.broken_at) == ("truncated", 8)
    assert "audit.checkpoints line 2 (signed " in verdict.reason


async def test_rewrite_without_touching_checkpoints_is_found_by_a_genuine_one(db, tmp_path):
    master = MasterKey(os.urandom(32))
    await _entries(db, 4)
    await audit.checkpoint(db, master, tmp_path / "j")
    async with db.begin() as conn:  # delete every checkpoint, then rewrite the chain
        await conn.execute(audit_checkpoints.delete())
    await _rewrite_history(db, 2)
    public = AuditKey(master).public
    assert (await audit.verify_chain(db, public)).broken_at is None  # the DB alone: no trace
    verdict = await audit.verify_chain(db, public, audit.read_journal(tmp_path / "j"))
    assert (verdict.code, verdict.broken_at) == ("checkpoint_mismatch", 4)
    assert "j line 1 (signed " in verdict.reason


async def test_a_damaged_or_foreign_journal_line_is_reported_forged(db, tmp_path):
    master, other = MasterKey(os.urandom(32)), MasterKey(os.urandom(32))
    journal = tmp_path / "audit.checkpoints"
    await _entries(db, 2)
    await audit.checkpoint(db, other, journal)  # a checkpoint signed by another installation
    async with db.begin() as conn:
        await conn.execute(audit_checkpoints.delete())
    verdict = await audit.verify_chain(db, AuditKey(master).public, audit.read_journal(journal))
    assert verdict.code == "checkpoint_forged" and "audit.checkpoints line 1" in verdict.reason
    journal.write_text("not json\n")
    verdict = await audit.verify_chain(db, AuditKey(master).public, audit.read_journal(journal))
    assert verdict.code == "checkpoint_forged" and "audit.checkpoints line 1" in verdict.reason


async def test_legacy_checkpoints_are_not_trusted_and_a_new_one_replaces_them(db):
    master = MasterKey(os.urandom(32))
    await _entries(db, 3)
    head = (await audit.verify_chain(db, AuditKey(master).public)).entries
    async with db.begin() as conn:  # as migration 0019 leaves them: entries NULL
        digest = (await conn.execute(sa.select(audit_log.c.hash).where(
            audit_log.c.seq == head))).scalar()
        await conn.execute(audit_checkpoints.insert().values(
            seq=head, at=1.0, hash=digest, signature=bytes(64), verify_key=bytes(32)))
    verdict = await audit.verify_chain(db, AuditKey(master).public)
    assert (verdict.broken_at, verdict.legacy, verdict.checkpoints) == (None, 1, 0)
    assert verdict.signed_through == 0
    assert await audit.checkpoint(db, master) == 3  # the legacy row at the head gives way
    verdict = await audit.verify_chain(db, AuditKey(master).public)
    assert (verdict.broken_at, verdict.legacy, verdict.checkpoints) == (None, 0, 1)


@pytest.mark.fresh_database
async def test_upgrade_distrusts_old_checkpoints_and_first_start_signs_the_chain(
        config, aiohttp_client):
    from alembic import command

    from dashboard.keys import db_key, master_key
    from izinli import audit_files
    from izinli.app import create_app
    from store.engine import open_database
    from store.migrate import _alembic_config, upgrade

    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config.database_url)
    try:
        async with db.begin() as conn:  # as the code before migration 0019 left things
            await conn.run_sync(lambda s: command.upgrade(_alembic_config(s), "0018"))
        await _entries(db, 3)
        async with db.begin() as conn:
            digest = (await conn.execute(sa.select(audit_log.c.hash).where(
                audit_log.c.seq == 2))).scalar()
            await conn.execute(audit_checkpoints.insert().values(
                seq=2, at=1.0, hash=digest, signature=bytes(64), verify_key=bytes(32)))
            await conn.execute(sa.text("INSERT INTO operator_keys (name, wrapped_seed, "
                                       "verify_key) VALUES ('audit', :w, :v)"),
                               {"w": b"wrapped", "v": bytes(32)})
        await upgrade(db)
        async with db.connect() as conn:
            names = await conn.run_sync(lambda s: set(sa.inspect(s).get_table_names()))
            legacy = (await conn.execute(sa.select(audit_checkpoints.c.entries))).all()
        assert "operator_keys" not in names and legacy == [(None,)]
    finally:
        await db.close()

    client = await aiohttp_client(create_app(config))
    public = AuditKey(client.app[master_key]).public
    verdict = await audit.verify_chain(client.app[db_key], public)
    assert (verdict.broken_at, verdict.entries, verdict.checkpoints, verdict.legacy,
            verdict.signed_through) == (None, 3, 1, 1, 3)
    assert audit_files.public_key_path(config).read_text().strip() == public.hex()
    journal = audit.read_journal(audit_files.journal_path(config))
    assert [(m.entries, m.seq) for m in journal] == [(3, 3)]
