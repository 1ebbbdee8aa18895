import pytest
import sqlalchemy as sa

from store.migrate import current_revision, head_revision, upgrade
from store.tables import metadata


async def test_upgrade_reaches_head_and_is_idempotent(db):
    assert await current_revision(db) == head_revision()
    assert await upgrade(db) == head_revision()


async def test_migrations_create_every_declared_table(db):
    async with db.connect() as conn:
        names = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    assert {t.name for t in metadata.sorted_tables} <= names


async def test_sqlite_pragmas(db):
    if db.dialect != "sqlite":
        pytest.skip("SQLite pragmas")
    async with db.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
    assert (mode, fks, sync) == ("wal", 1, 1)


async def test_failed_transaction_leaves_nothing(db):
    from store.tables import tenants
    row = dict(id="t1", name="x", created_at=1.0, public_key=b"p", wrapped_secret=b"w",
               wrapped_lookup_key=b"l", custody="passphrase")
    try:
        async with db.begin() as conn:
            await conn.execute(tenants.insert().values(**row))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    async with db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(tenants))).scalar() == 0


async def test_migrations_match_the_table_definitions(db):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def diff(sync):
        return compare_metadata(MigrationContext.configure(sync), metadata)

    async with db.connect() as conn:
        changes = await conn.run_sync(diff)
    # SQLite reflects some server defaults loosely; types/tables/columns/indexes must match.
    relevant = [c for c in changes if not (isinstance(c, list) or c[0] == "modify_default")]
    assert relevant == []


@pytest.mark.fresh_database
async def test_0002_backfills_settings_and_sandbox_line_for_existing_tenants(config):
    from alembic import command

    from store.engine import open_database
    from store.migrate import _alembic_config
    from store.tables import lines, tenant_settings, tenants

    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config.database_url)
    try:
        async with db.begin() as conn:
            await conn.run_sync(lambda s: command.upgrade(_alembic_config(s), "0001"))
            await conn.execute(tenants.insert().values(
                id="t-old", name="Eski Firma", created_at=1.0, public_key=b"p",
                wrapped_secret=b"w", wrapped_lookup_key=b"l"))
        await upgrade(db)
        async with db.connect() as conn:
            line = (await conn.execute(sa.select(lines))).one()
            settings = (await conn.execute(sa.select(tenant_settings))).one()
        assert (line.tenant_id, line.channel) == ("t-old", "sandbox")
        assert (settings.sender_name, settings.brand_names) == ("Eski Firma", ["Eski Firma"])
    finally:
        await db.close()


@pytest.mark.fresh_database
async def test_0011_0012_count_what_is_already_there(config):
    """Upgrading a database that already has campaigns and lists: the counters start from
    the rows themselves, and later changes move them (the triggers exist)."""
    from alembic import command

    from campaigns import outbox
    from store import raw
    from store.engine import open_database
    from store.migrate import _alembic_config

    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config.database_url)
    states = ["sent"] * 4 + ["delivered"] * 3 + ["pending"] * 2 + ["skipped"]
    try:
        async with db.begin() as conn:
            await conn.run_sync(lambda s: command.upgrade(_alembic_config(s), "0010"))
            await raw.execute(conn, "INSERT INTO tenants (id, name, created_at, public_key, "
                                    "wrapped_secret, wrapped_lookup_key) VALUES "
                                    "('t', 'Eski', 1, ?, ?, ?)", (b"p", b"w", b"l"))
            await raw.execute(conn, "INSERT INTO lines (id, tenant_id, channel, name, "
                                    "rate_per_second, created_at) VALUES "
                                    "('l', 't', 'sandbox', 'deneme', 1, 1)")
            await raw.execute(conn, "INSERT INTO contact_lists (id, tenant_id, name, created_at) "
                                    "VALUES ('list', 't', 'liste', 1)")
            await raw.execute(conn, "INSERT INTO campaigns (id, tenant_id, name, line_id, "
                                    "list_id, purpose, template_sealed, state, created_at) "
                                    "VALUES ('c', 't', 'k', 'l', 'list', 'commercial', ?, "
                                    "'paused', 1)", (b"x",))
            for i, state in enumerate(states):
                await raw.execute(conn, "INSERT INTO contacts (id, tenant_id, address_index, "
                                        "address_sealed, created_at, updated_at) VALUES "
                                        "(?, 't', ?, ?, 1, 1)", (f"p{i}", bytes([i]) * 16, b"s"))
                await raw.execute(conn, "INSERT INTO list_members (list_id, contact_id) "
                                        "VALUES ('list', ?)", (f"p{i}",))
                await raw.execute(conn, "INSERT INTO outbox (campaign_id, tenant_id, contact_id, "
                                        "state, reason, updated_at) VALUES "
                                        "('c', 't', ?, ?, ?, 1)",
                                  (f"p{i}", state, "no_consent" if state == "skipped" else None))
        await upgrade(db)
        async with db.connect() as conn:
            counts, skipped = await outbox.counts(conn, "c")
            members = (await raw.fetch(conn, "SELECT members FROM contact_lists"))[0][0]
        assert {k: v for k, v in counts.items() if v} == {"sent": 4, "delivered": 3,
                                                          "pending": 2, "skipped": 1}
        assert skipped == {"no_consent": 1} and members == len(states)
        async with db.begin() as conn:
            await raw.execute(conn, "UPDATE outbox SET state = 'read' WHERE state = 'delivered'")
            await raw.execute(conn, "DELETE FROM list_members WHERE contact_id = 'p0'")
        async with db.connect() as conn:
            counts, _ = await outbox.counts(conn, "c")
            assert (counts["delivered"], counts["read"]) == (0, 3)
            assert (await raw.fetch(conn, "SELECT count(*) FROM list_member_moves"))[0][0] == 1
    finally:
        await db.close()


@pytest.mark.fresh_database
async def test_0017_separates_the_pause_reasons(config):
    """The shared `spam_guard` reason and flag become `error_run` / `optout_rate` and an
    opt-out-only acknowledgement, cleared (re-armed) for existing campaigns."""
    from alembic import command

    from store import raw
    from store.engine import open_database
    from store.migrate import _alembic_config

    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config.database_url)
    reasons = {"a": "spam_guard: 5 of the first 200 recipients opted out",
               "b": "spam_guard: 50 send errors in a row", "c": "paused by owner"}
    try:
        async with db.begin() as conn:
            await conn.run_sync(lambda s: command.upgrade(_alembic_config(s), "0016"))
            await raw.execute(conn, "INSERT INTO tenants (id, name, created_at, public_key, "
                                    "wrapped_secret, wrapped_lookup_key) VALUES "
                                    "('t', 'Eski', 1, ?, ?, ?)", (b"p", b"w", b"l"))
            await raw.execute(conn, "INSERT INTO lines (id, tenant_id, channel, name, "
                                    "rate_per_second, created_at) VALUES "
                                    "('l', 't', 'sandbox', 'deneme', 1, 1)")
            await raw.execute(conn, "INSERT INTO contact_lists (id, tenant_id, name, created_at) "
                                    "VALUES ('list', 't', 'liste', 1)")
            for cid, reason in reasons.items():
                await raw.execute(conn, "INSERT INTO campaigns (id, tenant_id, name, line_id, "
                                        "list_id, purpose, template_sealed, state, state_reason, "
                                        "guard_acknowledged, created_at) VALUES (?, 't', 'k', "
                                        "'l', 'list', 'commercial', ?, 'paused', ?, ?, 1)",
                                  (cid, b"x", reason, True))
        await upgrade(db)
        async with db.connect() as conn:
            rows = {r[0]: (r[1], bool(r[2])) for r in await raw.fetch(
                conn, "SELECT id, state_reason, optout_acknowledged FROM campaigns")}
        assert rows == {"a": ("optout_rate: 5 of the first 200 recipients opted out", False),
                        "b": ("error_run: 50 send errors in a row", False),
                        "c": ("paused by owner", False)}
    finally:
        await db.close()


@pytest.mark.fresh_database
async def test_0034_keeps_only_digests_of_provider_ids(config):
    """Ids stored before 0034 (a WhatsApp id embeds the person's number) become digests; a
    digest already there is left alone."""
    import nacl.bindings
    from alembic import command

    from crypto.blind import provider_reference
    from store import raw
    from store.engine import open_database
    from store.migrate import _alembic_config

    wamid = "wamid.HBgMOTA1MzUwMDAwMDIxFQIAERgSQjY2"
    public, _ = nacl.bindings.crypto_box_keypair()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config.database_url)
    try:
        async with db.begin() as conn:
            await conn.run_sync(lambda s: command.upgrade(_alembic_config(s), "0030"))
            await raw.execute(conn, "INSERT INTO tenants (id, name, created_at, public_key, "
                                    "wrapped_secret, wrapped_lookup_key) VALUES "
                                    "('t', 'Eski', 1, ?, ?, ?)", (public, b"w", b"l"))
            await raw.execute(conn, "INSERT INTO lines (id, tenant_id, channel, name, "
                                    "rate_per_second, created_at) VALUES "
                                    "('l', 't', 'whatsapp', 'hat', 1, 1)")
            await raw.execute(conn, "INSERT INTO contact_lists (id, tenant_id, name, created_at) "
                                    "VALUES ('list', 't', 'liste', 1)")
            await raw.execute(conn, "INSERT INTO campaigns (id, tenant_id, name, line_id, "
                                    "list_id, purpose, template_sealed, state, created_at) "
                                    "VALUES ('c', 't', 'k', 'l', 'list', 'commercial', ?, "
                                    "'completed', 1)", (b"x",))
            await raw.execute(conn, "INSERT INTO outbox (campaign_id, tenant_id, contact_id, "
                                    "state, provider_id, updated_at) VALUES "
                                    "('c', 't', 'p1', 'sent', ?, 1), "
                                    "('c', 't', 'p2', 'sent', ?, 1), "
                                    "('c', 't', 'p3', 'pending', NULL, 1)",
                              (wamid, provider_reference("kept")))
            await raw.execute(conn, "INSERT INTO inbound_messages (id, tenant_id, line_id, "
                                    "provider_message_id, address_index, address_sealed, "
                                    "text_sealed, received_at) VALUES "
                                    "('i', 't', 'l', ?, ?, ?, ?, 1)",
                              (wamid, b"\x00" * 16, b"a", b"t"))
        await upgrade(db)
        async with db.connect() as conn:
            out = dict(await raw.fetch(conn, "SELECT contact_id, provider_id FROM outbox"))
            inbound = (await raw.fetch(conn, "SELECT provider_message_id FROM inbound_messages")
                       )[0][0]
    finally:
        await db.close()
    assert out == {"p1": provider_reference(wamid), "p2": provider_reference("kept"),
                   "p3": None}
    assert inbound == provider_reference(wamid)
