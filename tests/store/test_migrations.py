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
